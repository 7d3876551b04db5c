"""A running simulator: the WSGI app served on 127.0.0.1 in a daemon thread, plus the
webhook worker. ``running_simulator`` keeps one per process and Redis namespace.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import redis
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal.stripe_simulator.cards import FeeSchedule
from portal.stripe_simulator.control import Control
from portal.stripe_simulator.routes import SimulatorApp
from portal.stripe_simulator.store import Store
from portal.stripe_simulator.webhooks import DeliveryQueue, DeliveryTarget, DeliveryWorker

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "stripe-sim:"


@dataclass(frozen=True)
class SimulatorSettings:
    """How one simulator prices charges and delivers webhooks."""

    webhook_secret: str
    webhook_url: str
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    webhook_attempts: int = 5
    webhook_backoff_ms: int = 1000


class _QuietHandler(WSGIRequestHandler):
    """No access log line per API call; errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class Simulator:
    """Stripe's API on ``self.url``, state in Redis under ``key_prefix``.

    ``control`` steers it (failures, webhook delivery, disputes, subscription periods).
    Without ``deliver_webhooks`` no worker runs here; events are still queued in Redis for
    the workers of other processes (or ``control.deliver_held``).
    """

    def __init__(self, redis_client: redis.Redis, settings: SimulatorSettings, *,
                 key_prefix: str = DEFAULT_PREFIX, deliver_webhooks: bool = True) -> None:
        self.settings = settings
        self.store = Store(redis_client, key_prefix)
        self.queue = DeliveryQueue(self.store)
        self.worker = DeliveryWorker(self.queue, DeliveryTarget(settings.webhook_url),
                                     settings.webhook_secret,
                                     attempts=settings.webhook_attempts,
                                     backoff_ms=settings.webhook_backoff_ms)
        self.control = Control(self.store, self.queue, self.worker, settings.fees)
        self.app = SimulatorApp(self.store, self.queue, settings.fees, self.control)
        self.deliver_webhooks = deliver_webhooks
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @classmethod
    def from_url(cls, redis_url: str, settings: SimulatorSettings, **options: Any,
                 ) -> Simulator:
        return cls(redis.Redis.from_url(redis_url, decode_responses=True), settings, **options)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        """Serve on ``host`` (a free port unless ``port`` is given) and start delivering."""
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.url = f"http://{host}:{self._server.server_port}"
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.1),
                                        name="stripe-simulator", daemon=True)
        self._thread.start()
        if self.deliver_webhooks:
            self.worker.start()
        log.info("Stripe simulator serving on %s", self.url)
        return self

    def stop(self) -> None:
        self.worker.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.redis.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


_lock = threading.Lock()
_running: dict[tuple[str, str], tuple[int, Simulator]] = {}


def running_simulator(redis_url: str, settings: SimulatorSettings,
                      key_prefix: str = DEFAULT_PREFIX) -> Simulator:
    """This process's simulator for that Redis, started on first use.

    One per process: every app in the process shares it, and it keeps the settings of
    the first. A forked child starts its own (threads do not survive a fork).
    """
    key = (redis_url, key_prefix)
    with _lock:
        found = _running.get(key)
        if found is not None and found[0] == os.getpid() and found[1].running:
            return found[1]
        simulator = Simulator.from_url(redis_url, settings, key_prefix=key_prefix).start()
        _running[key] = (os.getpid(), simulator)
        return simulator
