"""The simulator's state in Redis: objects, indexes, idempotency records, locks, faults.

Every key starts with the store's prefix (``stripe-sim:`` by default), so the simulator
shares the portal's Redis without touching anything else in it, and several processes
that each run a simulator see one consistent set of objects.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis
from redis.lock import Lock

ALPHABET = string.ascii_letters + string.digits
IDEMPOTENCY_SECONDS = 24 * 3600
LOCK_SECONDS = 30
LOCK_WAIT_SECONDS = 10


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like Stripe's: ``pi_3MtwBwLkdIwHu7ix28a3tqPa``."""
    return f"{prefix}_{random_text(length)}"


def random_text(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Fault:
    """Answer the next ``count`` requests matching ``endpoint`` with a failure.

    ``endpoint`` is ``"METHOD /path"`` with shell-style wildcards, for example
    ``"POST /v1/payment_intents/*/confirm"`` or ``"* /v1/*"``. ``kind`` is
    ``rate_limit`` (429), ``api_error`` (500), ``card_declined`` (402) or ``timeout``
    (the answer is held back for ``seconds``, longer than the client waits, then a 500).
    """

    id: str
    endpoint: str
    kind: str
    count: int
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return fnmatch.fnmatchcase(f"{method.upper()} {path}", self.endpoint)


FAULT_KINDS = ("rate_limit", "api_error", "card_declined", "timeout")


class Store:
    """Objects are JSON documents under ``<prefix>obj:<id>``; owners in their ``_account``."""

    def __init__(self, client: redis.Redis, prefix: str = "stripe-sim:") -> None:
        self.redis = client
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # ------------------------------------------------------------------ objects

    def read(self, object_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("obj", object_id))
        if raw is None:
            return None
        return cast(dict[str, Any], json.loads(raw))

    def read_many(self, object_ids: list[str]) -> list[dict[str, Any]]:
        if not object_ids:
            return []
        raws = self.redis.mget([self.key("obj", object_id) for object_id in object_ids])
        return [json.loads(raw) for raw in raws if raw is not None]

    def index(self, name: str) -> list[str]:
        return cast(list[str], self.redis.lrange(self.key("idx", name), 0, -1))

    def lock(self, scope: str | None) -> Lock:
        """Requests that change objects of one account take turns, across processes."""
        return Lock(self.redis, self.key("lock", scope or "platform"), timeout=LOCK_SECONDS,
                    blocking_timeout=LOCK_WAIT_SECONDS)

    # ------------------------------------------------------------------ idempotency

    def idempotent_result(self, scope: str | None, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("idem", scope or "platform", key))
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def idempotency_key(self, scope: str | None, key: str) -> str:
        return self.key("idem", scope or "platform", key)

    # ------------------------------------------------------------------ faults

    def add_fault(self, endpoint: str, kind: str, count: int, seconds: float = 0.0) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(new_id("fault", 12), endpoint, kind, count, seconds)
        pipe = self.redis.pipeline()
        pipe.hset(self.key("faults"), fault.id, json.dumps(asdict(fault)))
        pipe.set(self.key("fault", fault.id), count)
        pipe.execute()
        return fault

    def faults(self) -> list[Fault]:
        raw = cast(dict[str, str], self.redis.hgetall(self.key("faults")))
        return [Fault(**json.loads(value)) for value in raw.values()]

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, if it has uses left (one is used up)."""
        for fault in self.faults():
            if not fault.matches(method, path):
                continue
            left = int(self.redis.decr(self.key("fault", fault.id)))
            if left <= 0:
                pipe = self.redis.pipeline()
                pipe.hdel(self.key("faults"), fault.id)
                pipe.delete(self.key("fault", fault.id))
                pipe.execute()
            if left >= 0:
                return fault
        return None

    def clear_faults(self) -> None:
        ids = cast(list[str], self.redis.hkeys(self.key("faults")))
        pipe = self.redis.pipeline()
        pipe.delete(self.key("faults"))
        for fault_id in ids:
            pipe.delete(self.key("fault", fault_id))
        pipe.execute()

    # ------------------------------------------------------------------ everything

    def keys(self) -> Iterator[str]:
        pattern = self.prefix.replace("[", "\\[").replace("*", "\\*") + "*"
        yield from cast(Iterator[str], self.redis.scan_iter(match=pattern, count=500))

    def reset(self) -> None:
        """Forget every object, event, delivery and control setting under the prefix."""
        batch: list[str] = []
        for key in self.keys():
            batch.append(key)
            if len(batch) >= 500:
                self.redis.delete(*batch)
                batch = []
        if batch:
            self.redis.delete(*batch)
