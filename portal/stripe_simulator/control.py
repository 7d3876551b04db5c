"""The control API: steer the simulator from Python or over HTTP under ``/_simulator/``.

It injects failures, shapes webhook delivery (duplicates, delays, shuffling, holding), and
performs what happens outside Stripe's API: a person completing onboarding, a cardholder
disputing a charge, a month passing for a subscription.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from portal.stripe_simulator import billing, charges
from portal.stripe_simulator.cards import BY_NUMBER, FeeSchedule, normalise_number
from portal.stripe_simulator.errors import StripeError, invalid_request, no_such
from portal.stripe_simulator.forms import Params, decode_form, parse_pairs
from portal.stripe_simulator.objects import Changes, RequestInfo
from portal.stripe_simulator.store import Fault, Store, now
from portal.stripe_simulator.webhooks import (
    DeliverCallable,
    DeliveryAttempt,
    DeliveryQueue,
    DeliverySettings,
    DeliveryWorker,
)

CONTROL = Map([
    Rule("/_simulator/faults", methods=["GET"], endpoint="faults"),
    Rule("/_simulator/faults", methods=["POST"], endpoint="add_fault"),
    Rule("/_simulator/faults", methods=["DELETE"], endpoint="clear_faults"),
    Rule("/_simulator/webhooks", methods=["GET"], endpoint="webhooks"),
    Rule("/_simulator/webhooks", methods=["POST"], endpoint="configure_webhooks"),
    Rule("/_simulator/webhooks/release", methods=["POST"], endpoint="release_held"),
    Rule("/_simulator/webhooks/attempts", methods=["GET"], endpoint="attempts"),
    Rule("/_simulator/accounts/<account>/complete_onboarding", methods=["POST"],
         endpoint="complete_onboarding"),
    Rule("/_simulator/charges/<charge>/dispute", methods=["POST"], endpoint="open_dispute"),
    Rule("/_simulator/disputes/<dispute>/close", methods=["POST"], endpoint="close_dispute"),
    Rule("/_simulator/subscriptions/<subscription>/advance", methods=["POST"],
         endpoint="advance_subscription"),
    Rule("/_simulator/reset", methods=["POST"], endpoint="reset"),
    Rule("/_simulator/onboarding/<token>", methods=["GET"], endpoint="onboarding_page"),
    Rule("/_simulator/onboarding/<token>", methods=["POST"], endpoint="finish_onboarding"),
], strict_slashes=False)


class Control:
    """Everything a test (or a person) can make the simulator do besides the API."""

    def __init__(self, store: Store, queue: DeliveryQueue, worker: DeliveryWorker,
                 fees: FeeSchedule) -> None:
        self.store = store
        self.queue = queue
        self.worker = worker
        self.fees = fees

    # ------------------------------------------------------------------ failures

    def fail_next(self, endpoint: str, kind: str, count: int = 1, *,
                  seconds: float = 0.0) -> Fault:
        """Answer the next ``count`` requests to ``endpoint`` with a failure.

        ``endpoint``: ``"POST /v1/payment_intents"``, wildcards allowed
        (``"POST /v1/payment_intents/*/confirm"``, ``"* /v1/*"``). ``kind``:
        ``rate_limit`` (429), ``api_error`` (500), ``card_declined`` (402) or ``timeout``
        (no answer for ``seconds``, then a 500). The request is not carried out.
        """
        return self.store.add_fault(endpoint, kind, count, seconds)

    def faults(self) -> list[Fault]:
        return self.store.faults()

    def clear_faults(self) -> None:
        self.store.clear_faults()

    # ------------------------------------------------------------------ webhooks

    def configure_webhooks(self, **settings: Any) -> DeliverySettings:
        """Change delivery for every process: ``duplicate``, ``delay_ms``, ``shuffle``,
        ``shuffle_window_ms``, ``shuffle_seed``, ``hold`` (see ``DeliverySettings``)."""
        return self.queue.configure(**settings)

    def webhook_settings(self) -> DeliverySettings:
        return self.queue.settings()

    def deliver_to(self, deliver: DeliverCallable | None = None, *,
                   url: str | None = None) -> None:
        """Post this process's deliveries to ``deliver(body, headers) -> status`` (or a URL)."""
        self.worker.target.deliver = deliver
        if url is not None:
            self.worker.target.url = url

    def held_events(self) -> list[dict[str, str]]:
        """Held deliveries, oldest first: ``{"delivery", "event", "type"}``."""
        result = []
        for delivery_id, event_id in self.queue.held():
            event = self.store.read(event_id)
            result.append({"delivery": delivery_id, "event": event_id,
                           "type": str(event["type"]) if event else ""})
        return result

    def release_held(self, order: str | Sequence[str] = "emitted",
                     seed: int | None = None) -> int:
        """Hand held deliveries to the delivery workers in this order; returns how many.

        ``order``: ``"emitted"``, ``"reverse"``, ``"shuffle"`` (``seed`` makes it
        repeatable), or a list of event ids (only those, in that order)."""
        return self.queue.release(order, seed)

    def deliver_held(self, order: str | Sequence[str] = "emitted", *,
                     deliver: DeliverCallable | None = None,
                     seed: int | None = None) -> list[DeliveryAttempt]:
        """Deliver held events now, in the calling thread, in this order.

        A failed delivery goes back on hold (at the end), so it can be tried again.
        """
        attempts = []
        for delivery_id in self.queue.take_held(order, seed):
            attempt = self.worker.attempt(delivery_id, deliver=deliver, hold_on_failure=True)
            if attempt is not None:
                attempts.append(attempt)
        return attempts

    def delivery_attempts(self) -> list[DeliveryAttempt]:
        """Every delivery attempt so far (the most recent two thousand), oldest first."""
        return self.queue.attempts()

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Block until no delivery is due, being shuffled or in flight (held ones aside)."""
        deadline = time.monotonic() + timeout
        while not self.queue.idle():
            if time.monotonic() > deadline:
                raise TimeoutError("webhook deliveries still pending")
            time.sleep(0.02)

    # ------------------------------------------------------------------ outside the API

    def _changing(self, object_id: str, kind: str,
                  change: Callable[[Changes], dict[str, Any]]) -> dict[str, Any]:
        found = self.store.read(object_id)
        if found is None or found.get("object") != kind:
            raise no_such(kind, object_id)
        owner = found.get("_account") if kind != "account" else None
        lock = self.store.lock(owner)
        if not lock.acquire():
            raise invalid_request("The simulator is busy; try again.", status=429)
        try:
            changes = Changes(self.store, self.queue, RequestInfo(owner))
            result = change(changes)
            rendered = changes.render(result)
            changes.commit()
            return rendered
        finally:
            lock.release()

    def complete_onboarding(self, account_id: str) -> dict[str, Any]:
        """What the account holder finishing Stripe's onboarding does; emits account.updated."""
        return self._changing(account_id, "account",
                              lambda changes: charges.complete_onboarding(changes, account_id))

    def open_dispute(self, charge_id: str, *, amount: int | None = None,
                     reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder disputes the charge: ``charge.dispute.created`` (and the funds go)."""
        return self._changing(charge_id, "charge", lambda changes: charges.open_dispute(
            changes, self.fees, charge_id, amount=amount, reason=reason))

    def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        """The dispute is decided, ``won`` or ``lost``: ``charge.dispute.closed``."""
        return self._changing(dispute_id, "dispute", lambda changes: charges.close_dispute(
            changes, dispute_id, outcome))

    def advance_subscription(self, subscription_id: str, *,
                             card_number: str | None = None) -> dict[str, Any]:
        """One billing period passes: the next invoice is made and paid with the saved card,
        or with ``card_number`` (a test card) to simulate a renewal that is declined.
        Returns the new invoice."""
        method = None
        if card_number is not None:
            card = BY_NUMBER.get(normalise_number(card_number))
            if card is None:
                raise invalid_request(f"{card_number} is not one of Stripe's test cards.",
                                      param="card_number")
            method = card.token
        return self._changing(subscription_id, "subscription",
                              lambda changes: billing.advance_subscription(
                                  changes, self.fees, subscription_id, method))

    def reset(self) -> None:
        """Forget everything: objects, events, deliveries, faults and settings."""
        self.store.reset()

    # ------------------------------------------------------------------ over HTTP

    def respond(self, request: Request) -> Response:
        try:
            endpoint, values = CONTROL.bind_to_environ(request.environ).match()
        except HTTPException:
            return _json(404, {"error": {"type": "invalid_request_error",
                                         "message": f"No control endpoint {request.method} "
                                                    f"{request.path}"}})
        pairs = parse_pairs(request.query_string.decode())
        if request.method in {"POST", "DELETE"}:
            pairs += parse_pairs(request.get_data(as_text=True))
        try:
            params = Params(decode_form(pairs))
            if endpoint in {"onboarding_page", "finish_onboarding"}:
                return self._onboarding(request, str(values["token"]))
            return _json(200, self._control(str(endpoint), params, values))
        except StripeError as error:
            return _json(error.status, error.body())
        except (ValueError, TypeError) as error:
            return _json(400, invalid_request(str(error)).body())

    def _control(self, endpoint: str, params: Params, values: Mapping[str, Any]) -> Any:
        handler: Callable[[Params, Mapping[str, Any]], Any] = getattr(self, f"_http_{endpoint}")
        return handler(params, values)

    def _http_faults(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow()
        return {"faults": [asdict(fault) for fault in self.faults()]}

    def _http_add_fault(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow("endpoint", "kind", "count", "seconds")
        fault = self.fail_next(params.required_text("endpoint"), params.required_text("kind"),
                               params.integer("count", minimum=1) or 1,
                               seconds=float(params.text("seconds") or 0))
        return asdict(fault)

    def _http_clear_faults(self, params: Params, values: Mapping[str, Any]) -> Any:
        self.clear_faults()
        return {"faults": []}

    def _http_webhooks(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow()
        return {"settings": asdict(self.webhook_settings()), "held": self.held_events(),
                "idle": self.queue.idle()}

    def _http_configure_webhooks(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow("duplicate", "delay_ms", "shuffle", "shuffle_window_ms", "shuffle_seed",
                     "hold")
        changes: dict[str, Any] = {}
        for name in ("duplicate", "delay_ms", "shuffle_window_ms", "shuffle_seed"):
            if params.has(name):
                changes[name] = params.integer(name)
        for name in ("shuffle", "hold"):
            if params.has(name):
                changes[name] = params.boolean(name)
        return {"settings": asdict(self.configure_webhooks(**changes))}

    def _http_release_held(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow("order", "events", "seed")
        order: str | list[str] = params.strings("events") or params.text("order") or "emitted"
        return {"released": self.release_held(order, params.integer("seed"))}

    def _http_attempts(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow()
        return {"attempts": [asdict(attempt) for attempt in self.delivery_attempts()]}

    def _http_complete_onboarding(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow()
        return self.complete_onboarding(values["account"])

    def _http_open_dispute(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow("amount", "reason")
        reason = params.text("reason", choices=("fraudulent", "duplicate",
                                                "product_not_received", "subscription_canceled",
                                                "general"))
        return self.open_dispute(values["charge"], amount=params.integer("amount"),
                                 reason=reason or "fraudulent")

    def _http_close_dispute(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow("outcome")
        return self.close_dispute(values["dispute"],
                                  params.required_text("outcome", choices=("won", "lost")))

    def _http_advance_subscription(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow("card_number")
        return self.advance_subscription(values["subscription"],
                                         card_number=params.text("card_number"))

    def _http_reset(self, params: Params, values: Mapping[str, Any]) -> Any:
        params.allow()
        self.reset()
        return {"reset": True}

    # ------------------------------------------------------------------ hosted onboarding

    def _onboarding(self, request: Request, token: str) -> Response:
        key = self.store.key("onboarding", token)
        raw = self.store.redis.get(key)
        if raw is None:
            return Response(_page("Link not found",
                                  "<p>This onboarding link does not exist.</p>"),
                            status=404, mimetype="text/html")
        link = json.loads(raw)
        if link["used"] or link["expires_at"] < now():
            # Stripe sends the visitor to refresh_url, where the platform makes a new link.
            return redirect(link["refresh_url"], code=302)
        if request.method == "POST":
            self.complete_onboarding(link["account"])
            link["used"] = True
            self.store.redis.set(key, json.dumps(link), keepttl=True)
            return redirect(link["return_url"], code=303)
        account = self.store.read(link["account"]) or {}
        name = (account.get("business_profile") or {}).get("name") or link["account"]
        body = (
            f"<p>You are setting up payments for <strong>{html.escape(str(name))}</strong> "
            f"(<code>{html.escape(link['account'])}</code>).</p>"
            "<p>This is the Stripe simulator: no details are needed. Completing onboarding "
            "lets the account take test payments.</p>"
            '<form method="post"><button type="submit">Complete onboarding</button></form>'
            f'<p><a href="{html.escape(link["refresh_url"])}">Leave without finishing</a></p>'
        )
        return Response(_page("Stripe onboarding (simulator)", body), mimetype="text/html")


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.6rem 1.2rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, indent=2, ensure_ascii=False), status=status,
                    mimetype="application/json")
