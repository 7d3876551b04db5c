"""Objects as Stripe renders them: loading within an account, expansion, events, and one
unit of work per request that writes its objects, events and deliveries atomically.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import stripe

from portal.stripe_simulator.errors import invalid_request, no_such
from portal.stripe_simulator.store import Store, new_id, now
from portal.stripe_simulator.webhooks import DeliveryQueue

API_VERSION = stripe.api_version

#: Fields holding the id of another object, which ``expand[]`` replaces by the object.
EXPANDABLE: dict[str, frozenset[str]] = {
    "payment_intent": frozenset({"latest_charge", "customer", "payment_method"}),
    "charge": frozenset({"balance_transaction", "payment_intent", "customer"}),
    "refund": frozenset({"balance_transaction", "charge", "payment_intent"}),
    "dispute": frozenset({"charge", "payment_intent"}),
    "subscription": frozenset({"latest_invoice", "customer", "default_payment_method"}),
    "invoice": frozenset({"customer", "default_payment_method"}),
    "invoice_payment": frozenset({"invoice", "payment.payment_intent", "payment.charge"}),
    "price": frozenset({"product"}),
    "balance_transaction": frozenset({"source"}),
    "customer": frozenset({"invoice_settings.default_payment_method"}),
}

#: Fields Stripe leaves out unless asked for with ``expand[]`` ("includable" fields).
INCLUDABLE: dict[str, frozenset[str]] = {
    "charge": frozenset({"refunds"}),
    "invoice": frozenset({"confirmation_secret", "payments"}),
}


def public(value: Any) -> Any:
    """A deep copy without the simulator's own ``_`` fields."""
    if isinstance(value, dict):
        return {key: public(item) for key, item in value.items() if not key.startswith("_")}
    if isinstance(value, list):
        return [public(item) for item in value]
    return value


def _cannot_expand(name: str) -> Exception:
    return invalid_request(f"This property cannot be expanded ({name}).", param="expand")


def list_object(url: str, data: list[dict[str, Any]], has_more: bool = False,
                ) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


@dataclass
class RequestInfo:
    """Who asked: the connected account (``None``: the platform) and the request's ids."""

    account: str | None
    request_id: str | None = None
    idempotency_key: str | None = None
    base_url: str = ""


@dataclass
class Changes:
    """The objects one request reads and writes; ``commit`` writes them in one transaction."""

    store: Store
    queue: DeliveryQueue
    request: RequestInfo
    _objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    _dirty: list[str] = field(default_factory=list)
    _indexes: list[tuple[str, str]] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)
    _extra: list[tuple[str, str, int | None]] = field(default_factory=list)

    @property
    def account(self) -> str | None:
        return self.request.account

    # ------------------------------------------------------------------ reading

    def find(self, object_id: str) -> dict[str, Any] | None:
        if object_id in self._objects:
            return copy.deepcopy(self._objects[object_id])
        return self.store.read(object_id)

    def load(self, kind: str, object_id: str, param: str = "id",
             account: str | bool | None = False) -> dict[str, Any]:
        """The object, if it is of this kind and belongs to the request's account."""
        owner = self.account if account is False else account
        found = self.find(object_id) if object_id else None
        if found is None or found.get("object") != kind or found.get("_account") != owner:
            raise no_such(kind, object_id, param)
        return found

    def find_many(self, object_ids: list[str]) -> list[dict[str, Any]]:
        pending = [object_id for object_id in object_ids if object_id in self._objects]
        stored = {obj["id"]: obj for obj in self.store.read_many(
            [object_id for object_id in object_ids if object_id not in self._objects])}
        stored.update({object_id: copy.deepcopy(self._objects[object_id])
                       for object_id in pending})
        return [stored[object_id] for object_id in object_ids if object_id in stored]

    def index(self, name: str) -> list[str]:
        pending = [object_id for index, object_id in self._indexes if index == name]
        return [*self.store.index(name), *pending]

    # ------------------------------------------------------------------ writing

    def create(self, kind: str, prefix: str, fields: dict[str, Any],
               account: str | bool | None = False) -> dict[str, Any]:
        owner = self.account if account is False else account
        created: dict[str, Any] = {"id": new_id(prefix), "object": kind}
        created.update(fields)
        created.setdefault("created", now())
        created.setdefault("livemode", False)
        created["_account"] = owner
        self.put(created)
        return created

    def put(self, obj: dict[str, Any]) -> None:
        self._objects[obj["id"]] = copy.deepcopy(obj)
        if obj["id"] not in self._dirty:
            self._dirty.append(obj["id"])

    def add_to_index(self, name: str, object_id: str) -> None:
        self._indexes.append((name, object_id))

    def set_value(self, key: str, value: str, seconds: int | None = None) -> None:
        """A raw value (an idempotent result, an onboarding link) written with the objects."""
        self._extra.append((key, value, seconds))

    def emit(self, event_type: str, obj: dict[str, Any],
             previous_attributes: dict[str, Any] | None = None, *,
             account: str | None = None) -> dict[str, Any]:
        """Create the event for a change of ``obj``; it is delivered once committed.

        The event belongs to the object's connected account, or to ``account`` for
        changes of the connected account itself (``account.updated``).
        """
        owner = account or obj.get("_account")
        data: dict[str, Any] = {"object": public(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event: dict[str, Any] = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": self.request.request_id,
                        "idempotency_key": self.request.idempotency_key},
            "type": event_type,
            "_account": owner,
        }
        if owner is not None:
            event = {"id": event["id"], "object": "event", "account": owner,
                     **{key: value for key, value in event.items()
                        if key not in {"id", "object"}}}
        self._events.append(event)
        return event

    def commit(self) -> None:
        settings = self.queue.settings() if self._events else None
        pipe = self.store.redis.pipeline(transaction=True)
        for object_id in self._dirty:
            pipe.set(self.store.key("obj", object_id), json.dumps(self._objects[object_id]))
        for name, object_id in self._indexes:
            pipe.rpush(self.store.key("idx", name), object_id)
        for event in self._events:
            pipe.set(self.store.key("obj", event["id"]), json.dumps(event))
            pipe.rpush(self.store.key("idx", f"events:{event['_account'] or 'platform'}"),
                       event["id"])
        for key, value, seconds in self._extra:
            pipe.set(key, value, ex=seconds)
        if settings is not None:
            self.queue.enqueue(pipe, [event["id"] for event in self._events], settings)
        pipe.execute()
        self._dirty.clear()
        self._indexes.clear()
        self._events.clear()
        self._extra.clear()

    # ------------------------------------------------------------------ rendering

    def render(self, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
        """The object as the API answers it, with ``expand[]`` paths applied."""
        rendered = copy.deepcopy(obj)
        for path in expand or []:
            self._expand(rendered, path.split("."))
        return public(rendered)  # type: ignore[no-any-return]

    def _expand(self, obj: dict[str, Any], parts: list[str]) -> None:
        if not parts:
            return
        if obj.get("object") == "list":
            if parts[0] != "data":
                raise _cannot_expand(parts[0])
            for item in obj["data"]:
                self._expand(item, parts[1:])
            return
        kind = str(obj.get("object"))
        known = EXPANDABLE.get(kind, frozenset()) | INCLUDABLE.get(kind, frozenset())
        length = next((length for length in range(len(parts), 0, -1)
                       if ".".join(parts[:length]) in known), 0)
        if not length:
            raise _cannot_expand(parts[0])
        holder = obj
        for part in parts[:length - 1]:
            holder = holder[part]
        name = parts[length - 1]
        if ".".join(parts[:length]) in INCLUDABLE.get(kind, frozenset()):
            holder[name] = self._include(obj, name)
        elif isinstance(holder.get(name), str):
            found = self.find(holder[name])
            if found is None or found.get("_account") != obj.get("_account"):
                raise no_such(holder[name].split("_")[0], holder[name], "expand")
            holder[name] = found
        if isinstance(holder.get(name), dict):
            self._expand(holder[name], parts[length:])

    def _include(self, obj: dict[str, Any], name: str) -> Any:
        object_id = obj["id"]
        if obj["object"] == "charge" and name == "refunds":
            # Newest first; the index keeps creation order, also within one second.
            refunds = self.find_many(self.index(f"charge-refunds:{object_id}"))[::-1]
            return list_object(f"/v1/charges/{object_id}/refunds", refunds)
        if obj["object"] == "invoice" and name == "payments":
            payments = self.find_many(self.index(f"invoice-payments:{object_id}"))
            return list_object(f"/v1/invoices/{object_id}/payments", payments)
        # The invoice's confirmation secret: the client secret of its PaymentIntent.
        intent_id = obj.get("_payment_intent")
        intent = self.find(intent_id) if intent_id else None
        if intent is None:
            return None
        return {"client_secret": intent["client_secret"], "type": "payment_intent"}
