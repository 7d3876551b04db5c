"""Webhook delivery: events signed as Stripe signs them, queued in Redis, posted by a worker.

The queue is shared by every process on the same Redis: whichever worker claims a
delivery sends it. Controls (also in Redis) duplicate, delay, shuffle or hold deliveries;
held deliveries wait until they are released, in any order, or delivered by the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import redis
from redis.typing import EncodableT

from portal.stripe_simulator.store import Store, new_id

log = logging.getLogger(__name__)

#: ``deliver(body, headers) -> HTTP status``: how tests receive events in-process.
DeliverCallable = Callable[[bytes, dict[str, str]], int]

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
URL_TIMEOUT_SECONDS = 10
LOG_LENGTH = 2000
IDLE_POLL_SECONDS = 0.25

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #ids == 0 then return false end
redis.call('ZREM', KEYS[1], ids[1])
redis.call('INCR', KEYS[2])
return ids[1]
"""

_TAKE_SHUFFLED = """
local deadline = redis.call('GET', KEYS[2])
if not deadline or tonumber(deadline) > tonumber(ARGV[1]) then return {} end
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('INCRBY', KEYS[3], #ids)
return ids
"""


def development_webhook_secret(secret_key: str) -> str:
    """The signing secret used when none is configured: derived from the app's secret key.

    ``whsec_`` followed by the hex HMAC-SHA256 of ``stripe-simulator-webhooks`` keyed with
    ``SECRET_KEY``: each installation has its own, and nobody can forge events without
    knowing the key.
    """
    digest = hmac.new(secret_key.encode(), b"stripe-simulator-webhooks", hashlib.sha256)
    return "whsec_" + digest.hexdigest()


def signature_header(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, exactly Stripe's scheme."""
    moment = int(time.time()) if timestamp is None else timestamp
    signed = f"{moment}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


@dataclass(frozen=True)
class DeliverySettings:
    """How events are delivered; shared by every process through Redis."""

    #: Each event is delivered this many times (Stripe may deliver an event more than once).
    duplicate: int = 1
    #: Each delivery waits this long before its first attempt.
    delay_ms: int = 0
    #: Deliveries made within one window are sent in a shuffled order.
    shuffle: bool = False
    shuffle_window_ms: int = 300
    #: With a seed, the shuffled order of a batch of the same size is always the same.
    shuffle_seed: int | None = None
    #: Deliveries are kept until released or delivered by the caller.
    hold: bool = False

    def encoded(self) -> dict[EncodableT, EncodableT]:
        return {key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def decoded(cls, raw: dict[str, str]) -> DeliverySettings:
        known = {field.name for field in fields(cls)}
        return cls(**{key: json.loads(value) for key, value in raw.items() if key in known})


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: str
    event_id: str
    event_type: str
    attempt: int
    #: The HTTP status the endpoint answered with; ``None`` when it could not be reached.
    status: int | None
    error: str | None
    at: float

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class DeliveryQueue:
    """Deliveries in Redis: due (a sorted set by time), held, or waiting to be shuffled."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._claim = self.redis.register_script(_CLAIM)
        self._take_shuffled = self.redis.register_script(_TAKE_SHUFFLED)

    def key(self, *parts: str) -> str:
        return self.store.key("wh", *parts)

    # ------------------------------------------------------------------ settings

    def settings(self) -> DeliverySettings:
        raw = cast(dict[str, str], self.redis.hgetall(self.key("settings")))
        return DeliverySettings.decoded(raw)

    def configure(self, **changes: Any) -> DeliverySettings:
        settings = DeliverySettings(**{**asdict(self.settings()), **changes})
        if settings.duplicate < 1:
            raise ValueError("duplicate must be at least 1")
        if settings.delay_ms < 0 or settings.shuffle_window_ms < 0:
            raise ValueError("delays must not be negative")
        self.redis.hset(self.key("settings"), mapping=settings.encoded())
        return settings

    # ------------------------------------------------------------------ enqueueing

    def enqueue(self, pipe: redis.client.Pipeline, event_ids: Sequence[str],
                settings: DeliverySettings) -> None:
        """Queue deliveries of new events, inside the transaction that creates them."""
        moment = _now_ms()
        position = 0
        for event_id in event_ids:
            for _ in range(settings.duplicate):
                delivery_id = new_id("whd", 16)
                # Fractions of a millisecond keep the events of one change in their order.
                position += 1
                pipe.set(self.key("delivery", delivery_id),
                         json.dumps({"event_id": event_id, "attempt": 0}))
                if settings.hold:
                    pipe.rpush(self.key("held"), delivery_id)
                elif settings.shuffle:
                    pipe.rpush(self.key("shuffle"), delivery_id)
                    pipe.set(self.key("shuffle-deadline"),
                             moment + settings.delay_ms + settings.shuffle_window_ms, nx=True)
                else:
                    pipe.zadd(self.key("due"),
                              {delivery_id: moment + settings.delay_ms + position / 1000})
        if event_ids and not settings.hold:
            pipe.lpush(self.key("wake"), "1")
            pipe.ltrim(self.key("wake"), 0, 0)

    def promote_shuffled(self) -> None:
        """When a shuffle window has closed, make its deliveries due in a shuffled order."""
        ids = cast(list[str], self._take_shuffled(
            keys=[self.key("shuffle"), self.key("shuffle-deadline"), self.key("inflight")],
            args=[_now_ms()]))
        if not ids:
            return
        seed = self.settings().shuffle_seed
        shuffler = random.Random(seed) if seed is not None else random.SystemRandom()
        shuffler.shuffle(ids)
        self._make_due(ids)
        self.redis.decrby(self.key("inflight"), len(ids))

    def _make_due(self, delivery_ids: Sequence[str]) -> None:
        moment = _now_ms()
        if delivery_ids:
            pipe = self.redis.pipeline()
            pipe.zadd(self.key("due"), {delivery_id: moment + position
                                        for position, delivery_id in enumerate(delivery_ids)})
            pipe.lpush(self.key("wake"), "1")
            pipe.ltrim(self.key("wake"), 0, 0)
            pipe.execute()

    def claim(self) -> str | None:
        """Take the earliest due delivery, or ``None``; only one worker gets each."""
        claimed = self._claim(keys=[self.key("due"), self.key("inflight")], args=[_now_ms()])
        return cast(str | None, claimed)

    def next_due_in(self) -> float | None:
        """Seconds until the next delivery is due (or a shuffle window closes)."""
        waits: list[float] = []
        first = cast(list[tuple[str, float]],
                     self.redis.zrange(self.key("due"), 0, 0, withscores=True))
        if first:
            waits.append((first[0][1] - _now_ms()) / 1000)
        deadline = self.redis.get(self.key("shuffle-deadline"))
        if deadline is not None:
            waits.append((int(deadline) - _now_ms()) / 1000)
        return max(0.0, min(waits)) if waits else None

    def wait_for_work(self, seconds: float) -> None:
        self.redis.blpop([self.key("wake")], timeout=max(0.01, seconds))

    # ------------------------------------------------------------------ one delivery

    def record(self, delivery_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("delivery", delivery_id))
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def event_body(self, event_id: str) -> tuple[bytes, str] | None:
        event = self.store.read(event_id)
        if event is None:
            return None
        public = {key: value for key, value in event.items() if not key.startswith("_")}
        return json.dumps(public, indent=2, ensure_ascii=False).encode(), str(event["type"])

    def finish(self, delivery_id: str, attempt: DeliveryAttempt, retry_at_ms: int | None,
               *, held: bool = False) -> None:
        """Log an attempt; retry later, put back on hold, or forget the delivery."""
        pipe = self.redis.pipeline()
        pipe.rpush(self.key("log"), json.dumps(asdict(attempt)))
        pipe.ltrim(self.key("log"), -LOG_LENGTH, -1)
        if held:
            pipe.set(self.key("delivery", delivery_id),
                     json.dumps({"event_id": attempt.event_id, "attempt": attempt.attempt}))
            pipe.rpush(self.key("held"), delivery_id)
        elif retry_at_ms is not None:
            pipe.set(self.key("delivery", delivery_id),
                     json.dumps({"event_id": attempt.event_id, "attempt": attempt.attempt}))
            pipe.zadd(self.key("due"), {delivery_id: retry_at_ms})
        else:
            pipe.delete(self.key("delivery", delivery_id))
        pipe.execute()

    def done_with_claim(self) -> None:
        self.redis.decr(self.key("inflight"))

    # ------------------------------------------------------------------ held deliveries

    def held(self) -> list[tuple[str, str]]:
        """Held deliveries in the order they were made: ``(delivery_id, event_id)``."""
        ids = cast(list[str], self.redis.lrange(self.key("held"), 0, -1))
        result = []
        for delivery_id in ids:
            record = self.record(delivery_id)
            if record is not None:
                result.append((delivery_id, str(record["event_id"])))
        return result

    def take_held(self, order: str | Sequence[str] = "emitted",
                  seed: int | None = None) -> list[str]:
        """Remove held deliveries and return their ids in the asked order.

        ``order`` is ``"emitted"``, ``"reverse"``, ``"shuffle"`` or a list of event ids:
        then only those events' deliveries are taken, in that order.
        """
        with self.redis.lock(self.key("held-lock"), timeout=10, blocking_timeout=10):
            held = self.held()
            if isinstance(order, str):
                chosen = [delivery_id for delivery_id, _ in held]
                if order == "reverse":
                    chosen.reverse()
                elif order == "shuffle":
                    shuffler = random.Random(seed) if seed is not None else random.SystemRandom()
                    shuffler.shuffle(chosen)
                elif order != "emitted":
                    raise ValueError("order must be emitted, reverse, shuffle or event ids")
            else:
                by_event: dict[str, list[str]] = {}
                for delivery_id, event_id in held:
                    by_event.setdefault(event_id, []).append(delivery_id)
                missing = [event_id for event_id in order if event_id not in by_event]
                if missing:
                    raise ValueError(f"not held: {', '.join(missing)}")
                chosen = [delivery_id for event_id in dict.fromkeys(order)
                          for delivery_id in by_event[event_id]]
            pipe = self.redis.pipeline()
            for delivery_id in chosen:
                pipe.lrem(self.key("held"), 1, delivery_id)
            pipe.execute()
            return chosen

    def release(self, order: str | Sequence[str] = "emitted", seed: int | None = None) -> int:
        """Hand held deliveries to the workers, due one after another in the asked order."""
        chosen = self.take_held(order, seed)
        self._make_due(chosen)
        return len(chosen)

    # ------------------------------------------------------------------ observing

    def attempts(self) -> list[DeliveryAttempt]:
        raw = cast(list[str], self.redis.lrange(self.key("log"), 0, -1))
        return [DeliveryAttempt(**json.loads(item)) for item in raw]

    def idle(self) -> bool:
        pipe = self.redis.pipeline()
        pipe.zcard(self.key("due"))
        pipe.llen(self.key("shuffle"))
        pipe.get(self.key("inflight"))
        due, shuffling, inflight = pipe.execute()
        return int(due) == 0 and int(shuffling) == 0 and int(inflight or 0) <= 0

    def clear(self) -> None:
        """Forget queued and held deliveries, the log and the settings."""
        pattern = self.key("") + "*"
        keys = list(self.redis.scan_iter(match=pattern, count=500))
        if keys:
            self.redis.delete(*keys)


@dataclass
class DeliveryTarget:
    """Where a worker posts events: a Python callable if set, else the URL."""

    url: str
    deliver: DeliverCallable | None = None


class DeliveryWorker:
    """A daemon thread that posts due deliveries, retrying failures with backoff."""

    def __init__(self, queue: DeliveryQueue, target: DeliveryTarget, secret: str, *,
                 attempts: int, backoff_ms: int) -> None:
        self.queue = queue
        self.target = target
        self.secret = secret
        self.attempts = attempts
        self.backoff_ms = backoff_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stripe-simulator-webhooks",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=IDLE_POLL_SECONDS * 4)

    def _run(self) -> None:
        outage = False
        while not self._stop.is_set():
            try:
                self.queue.promote_shuffled()
                outage = False
                delivery_id = self.queue.claim()
                if delivery_id is None:
                    wait = self.queue.next_due_in()
                    self.queue.wait_for_work(min(wait if wait is not None else IDLE_POLL_SECONDS,
                                                 IDLE_POLL_SECONDS))
                    continue
                try:
                    self.attempt(delivery_id)
                finally:
                    self.queue.done_with_claim()
            except redis.RedisError:
                if self._stop.is_set():
                    return
                if not outage:
                    log.warning("webhook delivery paused: Redis is unreachable", exc_info=True)
                    outage = True
                self._stop.wait(0.5)
            except Exception:  # one broken delivery must not stop all the others
                log.exception("webhook worker failed; continuing")
                self._stop.wait(0.5)

    def post(self, body: bytes, headers: dict[str, str],
             deliver: DeliverCallable | None = None) -> int:
        """Send one body; answer the endpoint's HTTP status (exceptions propagate)."""
        transport = deliver or self.target.deliver
        if transport is not None:
            return int(transport(body, headers))
        if not self.target.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s): {self.target.url!r}")
        # The scheme is checked above: only http(s) URLs from the settings are opened.
        request = urllib.request.Request(self.target.url, data=body,  # noqa: S310
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=URL_TIMEOUT_SECONDS) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as error:
            status = int(error.code)
            error.close()
            return status

    def attempt(self, delivery_id: str, *, deliver: DeliverCallable | None = None,
                hold_on_failure: bool = False) -> DeliveryAttempt | None:
        """Make one delivery attempt; schedule a retry (or re-hold) if it fails."""
        record = self.queue.record(delivery_id)
        if record is None:
            return None
        event_id = str(record["event_id"])
        number = int(record["attempt"]) + 1
        found = self.queue.event_body(event_id)
        if found is None:
            self.queue.finish(delivery_id, DeliveryAttempt(
                delivery_id, event_id, "", number, None, "event no longer exists",
                time.time()), None)
            return None
        body, event_type = found
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signature_header(body, self.secret),
        }
        status: int | None = None
        error: str | None = None
        try:
            status = self.post(body, headers, deliver)
        except Exception as exc:  # an unreachable endpoint is retried like a failing one
            error = f"{type(exc).__name__}: {exc}"
        result = DeliveryAttempt(delivery_id, event_id, event_type, number, status, error,
                                 time.time())
        retry_at: int | None = None
        if not result.succeeded and not hold_on_failure:
            if number < self.attempts:
                retry_at = _now_ms() + self.backoff_ms * 2 ** (number - 1)
            else:
                log.warning("webhook %s (%s) given up after %d attempts: %s", event_id,
                            event_type, number, error or status)
        self.queue.finish(delivery_id, result, retry_at,
                          held=hold_on_failure and not result.succeeded)
        return result


def _now_ms() -> int:
    return int(time.time() * 1000)
