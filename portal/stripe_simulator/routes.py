"""The simulator's WSGI app: Stripe's URLs, authentication, ``Stripe-Account``, idempotency,
injected failures, and answers in Stripe's JSON shapes. ``/_simulator/…`` is the control API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from portal.stripe_simulator import billing, charges
from portal.stripe_simulator.cards import FeeSchedule
from portal.stripe_simulator.errors import (
    StripeError,
    api_error,
    idempotency_conflict,
    lock_timeout,
    rate_limited,
)
from portal.stripe_simulator.forms import Params, decode_form, parse_pairs
from portal.stripe_simulator.objects import API_VERSION, Changes, RequestInfo
from portal.stripe_simulator.store import IDEMPOTENCY_SECONDS, Fault, Store, random_text
from portal.stripe_simulator.webhooks import DeliveryQueue

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from portal.stripe_simulator.control import Control

log = logging.getLogger(__name__)

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    #: Changes state: runs under the account's lock and honours idempotency keys.
    writes: bool


def _confirm(changes: Changes, fees: FeeSchedule, params: Params,
             intent: str) -> dict[str, Any]:
    outcome = charges.confirm_payment_intent(changes, fees, intent, params)
    billing.settle_invoice(changes, outcome)
    if outcome.error is not None:
        raise outcome.error
    return outcome.intent


def _operations() -> dict[str, Operation]:
    """Each endpoint's handler: ``handler(changes, fees, params, **url_values)``."""
    def reading(function: Callable[..., dict[str, Any]]) -> Operation:
        return Operation(lambda changes, fees, params, **values: _read(function, changes,
                                                                       params, values), False)

    return {
        "create_account": Operation(
            lambda changes, fees, params: charges.create_account(changes, params), True),
        "retrieve_account": reading(charges.retrieve_account),
        "create_account_link": Operation(
            lambda changes, fees, params: charges.create_account_link(changes, params), True),
        "create_payment_intent": Operation(charges.create_payment_intent, True),
        "retrieve_payment_intent": reading(charges.retrieve_payment_intent),
        "confirm_payment_intent": Operation(_confirm, True),
        "cancel_payment_intent": Operation(
            lambda changes, fees, params, intent: charges.cancel_payment_intent(
                changes, intent, params), True),
        "retrieve_payment_method": reading(charges.retrieve_payment_method),
        "retrieve_charge": reading(charges.retrieve_charge),
        "retrieve_balance_transaction": reading(charges.retrieve_balance_transaction),
        "create_refund": Operation(
            lambda changes, fees, params: charges.create_refund(changes, params), True),
        "retrieve_refund": reading(charges.retrieve_refund),
        "list_refunds": Operation(
            lambda changes, fees, params: charges.list_refunds(changes, params), False),
        "retrieve_dispute": reading(charges.retrieve_dispute),
        "retrieve_event": reading(charges.retrieve_event),
        "list_events": Operation(
            lambda changes, fees, params: charges.list_events(changes, params), False),
        "create_customer": Operation(
            lambda changes, fees, params: billing.create_customer(changes, params), True),
        "retrieve_customer": reading(billing.retrieve_customer),
        "create_product": Operation(
            lambda changes, fees, params: billing.create_product(changes, params), True),
        "retrieve_product": reading(billing.retrieve_product),
        "create_price": Operation(
            lambda changes, fees, params: billing.create_price(changes, params), True),
        "retrieve_price": reading(billing.retrieve_price),
        "create_subscription": Operation(billing.create_subscription, True),
        "retrieve_subscription": reading(billing.retrieve_subscription),
        "cancel_subscription": Operation(
            lambda changes, fees, params, subscription: billing.cancel_subscription(
                changes, subscription, params), True),
        "retrieve_invoice": reading(billing.retrieve_invoice),
        "retrieve_invoice_payment": reading(billing.retrieve_invoice_payment),
        "list_invoice_payments": Operation(
            lambda changes, fees, params: billing.list_invoice_payments(changes, params),
            False),
    }


def _read(function: Callable[..., dict[str, Any]], changes: Changes, params: Params,
          values: dict[str, str]) -> dict[str, Any]:
    params.allow("expand")
    return function(changes, *values.values())


API = Map([
    Rule("/v1/accounts", methods=["POST"], endpoint="create_account"),
    Rule("/v1/accounts/<account>", methods=["GET"], endpoint="retrieve_account"),
    Rule("/v1/account_links", methods=["POST"], endpoint="create_account_link"),
    Rule("/v1/payment_intents", methods=["POST"], endpoint="create_payment_intent"),
    Rule("/v1/payment_intents/<intent>", methods=["GET"], endpoint="retrieve_payment_intent"),
    Rule("/v1/payment_intents/<intent>/confirm", methods=["POST"],
         endpoint="confirm_payment_intent"),
    Rule("/v1/payment_intents/<intent>/cancel", methods=["POST"],
         endpoint="cancel_payment_intent"),
    Rule("/v1/payment_methods/<method>", methods=["GET"], endpoint="retrieve_payment_method"),
    Rule("/v1/charges/<charge>", methods=["GET"], endpoint="retrieve_charge"),
    Rule("/v1/balance_transactions/<transaction>", methods=["GET"],
         endpoint="retrieve_balance_transaction"),
    Rule("/v1/refunds", methods=["POST"], endpoint="create_refund"),
    Rule("/v1/refunds", methods=["GET"], endpoint="list_refunds"),
    Rule("/v1/refunds/<refund>", methods=["GET"], endpoint="retrieve_refund"),
    Rule("/v1/disputes/<dispute>", methods=["GET"], endpoint="retrieve_dispute"),
    Rule("/v1/events", methods=["GET"], endpoint="list_events"),
    Rule("/v1/events/<event>", methods=["GET"], endpoint="retrieve_event"),
    Rule("/v1/customers", methods=["POST"], endpoint="create_customer"),
    Rule("/v1/customers/<customer>", methods=["GET"], endpoint="retrieve_customer"),
    Rule("/v1/products", methods=["POST"], endpoint="create_product"),
    Rule("/v1/products/<product>", methods=["GET"], endpoint="retrieve_product"),
    Rule("/v1/prices", methods=["POST"], endpoint="create_price"),
    Rule("/v1/prices/<price>", methods=["GET"], endpoint="retrieve_price"),
    Rule("/v1/subscriptions", methods=["POST"], endpoint="create_subscription"),
    Rule("/v1/subscriptions/<subscription>", methods=["GET"],
         endpoint="retrieve_subscription"),
    Rule("/v1/subscriptions/<subscription>", methods=["DELETE"],
         endpoint="cancel_subscription"),
    Rule("/v1/invoices/<invoice>", methods=["GET"], endpoint="retrieve_invoice"),
    Rule("/v1/invoice_payments", methods=["GET"], endpoint="list_invoice_payments"),
    Rule("/v1/invoice_payments/<payment>", methods=["GET"],
         endpoint="retrieve_invoice_payment"),
], strict_slashes=False)


class SimulatorApp:
    """The WSGI application serving Stripe's API and the control API."""

    def __init__(self, store: Store, queue: DeliveryQueue, fees: FeeSchedule,
                 control: Control) -> None:
        self.store = store
        self.queue = queue
        self.fees = fees
        self.control = control
        self.operations = _operations()

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/_simulator/"):
            response = self.control.respond(request)
        else:
            response = self.api(request)
        return response(environ, start_response)

    # ------------------------------------------------------------------ Stripe's API

    def api(self, request: Request) -> Response:
        request_id = f"req_{random_text(14)}"
        version = request.headers.get("Stripe-Version") or API_VERSION
        try:
            endpoint, values = API.bind_to_environ(request.environ).match()
        except HTTPException:
            return self._error(StripeError(
                404, "invalid_request_error",
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://docs.stripe.com or we can help at https://support.stripe.com/."),
                request_id, version)
        try:
            self._authenticate(request)
            account = request.headers.get("Stripe-Account") or None
            if account is not None:
                found = self.store.read(account)
                if found is None or found.get("object") != "account":
                    raise StripeError(
                        403, "invalid_request_error",
                        "The provided key does not have access to account "
                        f"'{account}' (or that account does not exist). Application access "
                        "may have been revoked.", code="account_invalid")
            fault = self.store.take_fault(request.method, request.path)
            if fault is not None:
                return self._error(self._fault(fault), request_id, version)
            operation = self.operations[str(endpoint)]
            params = self._params(request)
            info = RequestInfo(account, request_id, None, request.host_url.rstrip("/"))
            if not operation.writes:
                changes = Changes(self.store, self.queue, info)
                result = operation.handler(changes, self.fees, params, **values)
                return self._json(200, changes.render(result, params.expand()), request_id,
                                  version)
            return self._write(request, operation, params, values, info, version)
        except StripeError as error:
            return self._error(error, request_id, version)
        except Exception:
            log.exception("stripe simulator failed on %s %s", request.method, request.path)
            return self._error(api_error(), request_id, version)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        key = header[7:] if header.startswith("Bearer ") else ""
        if not key and request.authorization is not None:
            key = request.authorization.username or ""
        if not key:
            raise StripeError(401, "invalid_request_error",
                              "You did not provide an API key. You need to provide your API "
                              "key in the Authorization header, using Bearer auth.")
        if not key.startswith(("sk_test_", "rk_test_")):
            raise StripeError(401, "invalid_request_error",
                              f"Invalid API Key provided: {key[:8]}****; the simulator "
                              "accepts test mode keys (sk_test_…) only.")

    def _params(self, request: Request) -> Params:
        pairs = parse_pairs(request.query_string.decode())
        if request.method in {"POST", "DELETE"}:
            pairs += parse_pairs(request.get_data(as_text=True))
        return Params(decode_form(pairs))

    def _fault(self, fault: Fault) -> StripeError:
        if fault.kind == "rate_limit":
            return rate_limited()
        if fault.kind == "card_declined":
            return StripeError(402, "card_error", "Your card was declined.",
                               code="card_declined", decline_code="generic_decline")
        if fault.kind == "timeout":
            time.sleep(fault.seconds)
        return api_error()

    def _write(self, request: Request, operation: Operation, params: Params,
               values: Mapping[str, Any], info: RequestInfo, version: str) -> Response:
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        info.idempotency_key = key
        fingerprint = hashlib.sha256(json.dumps(
            [request.method, request.path, sorted(parse_pairs(request.get_data(as_text=True)))],
        ).encode()).hexdigest()
        lock = self.store.lock(info.account)
        if not lock.acquire():
            raise lock_timeout()
        try:
            if key:
                record = self.store.idempotent_result(info.account, key)
                if record is not None:
                    if record["fingerprint"] != fingerprint:
                        raise idempotency_conflict(key)
                    response = self._raw(record["status"], record["body"], info.request_id or "",
                                         version)
                    response.headers["Idempotent-Replayed"] = "true"
                    response.headers["Original-Request"] = record["request_id"]
                    return response
            changes = Changes(self.store, self.queue, info)
            try:
                result = operation.handler(changes, self.fees, params, **values)
                status, body = 200, changes.render(result, params.expand())
            except StripeError as error:
                if not error.commit:
                    raise
                status, body = error.status, error.body()
            text = json.dumps(body, indent=2, ensure_ascii=False)
            if key:
                changes.set_value(self.store.idempotency_key(info.account, key), json.dumps({
                    "fingerprint": fingerprint, "status": status, "body": text,
                    "request_id": info.request_id,
                }), seconds=IDEMPOTENCY_SECONDS)
            changes.commit()
            response = self._raw(status, text, info.request_id or "", version)
            if key:
                response.headers["Idempotency-Key"] = key
            return response
        finally:
            lock.release()

    # ------------------------------------------------------------------ answers

    def _json(self, status: int, body: dict[str, Any], request_id: str,
              version: str) -> Response:
        return self._raw(status, json.dumps(body, indent=2, ensure_ascii=False), request_id,
                         version)

    def _raw(self, status: int, text: str, request_id: str, version: str) -> Response:
        response = Response(text, status=status, mimetype="application/json")
        response.headers["Request-Id"] = request_id
        response.headers["Stripe-Version"] = version
        return response

    def _error(self, error: StripeError, request_id: str, version: str) -> Response:
        response = self._json(error.status, error.body(), request_id, version)
        if error.should_retry is not None:
            response.headers["Stripe-Should-Retry"] = "true" if error.should_retry else "false"
        return response

