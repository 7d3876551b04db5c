"""Fixtures: a Stripe simulator on the run's Redis, the real SDK talking to it over HTTP,
an inbox that receives its webhooks, and an app whose payments service uses it.

The simulator lives for the whole run (under a key prefix of its own); each test starts
with no injected failures, default webhook delivery and an empty inbox, and works on
connected accounts it creates itself.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
from flask import Flask

from portal import create_app
from portal.stripe_simulator import Simulator, SimulatorSettings, development_webhook_secret

TEST_SECRET_KEY = "test-secret-key-not-for-production"
WEBHOOK_SECRET = development_webhook_secret(TEST_SECRET_KEY)


class Inbox:
    """Receives webhooks as ``deliver(body, headers) -> status``; can be told to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self._answers: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.received.append((body, dict(headers)))
            return self._answers.pop(0) if self._answers else 200

    def answer_next_with(self, *statuses: int) -> None:
        """The next deliveries get these statuses (then 200 again)."""
        with self._lock:
            self._answers.extend(statuses)

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self._answers.clear()

    def events(self, account: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [json.loads(body) for body, _ in self.received]
        return [event for event in bodies if account is None or event.get("account") == account]

    def types(self, account: str | None = None) -> list[str]:
        return [event["type"] for event in self.events(account)]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool],
                 account: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events(account)
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"webhooks never arrived; got {[e['type'] for e in events]}")
            time.sleep(0.02)

    def wait_for_type(self, event_type: str, account: str | None = None, count: int = 1,
                      timeout: float = 10.0) -> list[dict[str, Any]]:
        events = self.wait_for(
            lambda found: sum(event["type"] == event_type for event in found) >= count,
            account, timeout)
        return [event for event in events if event["type"] == event_type]


def simulator_settings(**overrides: Any) -> SimulatorSettings:
    values: dict[str, Any] = {
        "webhook_secret": WEBHOOK_SECRET,
        # Never reached: tests receive webhooks through an inbox callable.
        "webhook_url": "http://127.0.0.1:9/webhooks/stripe",
        "webhook_attempts": 3,
        "webhook_backoff_ms": 20,
    }
    values.update(overrides)
    return SimulatorSettings(**values)


@pytest.fixture(scope="session")
def session_inbox() -> Inbox:
    return Inbox()


@pytest.fixture(scope="session")
def running_simulator(redis_url: str, session_inbox: Inbox) -> Iterator[Simulator]:
    simulator = Simulator.from_url(redis_url, simulator_settings(),
                                   key_prefix=f"stripe-sim-test-{uuid.uuid4().hex[:8]}:")
    simulator.start()
    simulator.control.deliver_to(session_inbox)
    yield simulator
    simulator.control.reset()
    simulator.stop()


@pytest.fixture
def inbox(running_simulator: Simulator, session_inbox: Inbox) -> Iterator[Inbox]:
    yield session_inbox
    _settle(running_simulator)
    session_inbox.clear()


@pytest.fixture
def simulator(running_simulator: Simulator, inbox: Inbox) -> Iterator[Simulator]:
    """The run's simulator, with default controls for this test."""
    _settle(running_simulator)
    inbox.clear()
    yield running_simulator
    _settle(running_simulator)


def _settle(simulator: Simulator) -> None:
    """Let deliveries in flight finish, then forget faults and delivery settings."""
    simulator.control.clear_faults()
    simulator.control.configure_webhooks(hold=False, shuffle=False, duplicate=1, delay_ms=0)
    simulator.control.release_held()
    simulator.control.wait_for_webhooks(timeout=10)
    simulator.queue.clear()


def sdk_client(simulator: Simulator, http_client: stripe.HTTPClient, *,
               retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_simulator",
        base_addresses={"api": simulator.url, "connect": simulator.url},
        max_network_retries=retries,
        http_client=http_client,
    )


@pytest.fixture
def http_client() -> Iterator[stripe.HTTPClient]:
    """The SDK's HTTP client, closed after the test (no socket is left to the collector)."""
    client = stripe.RequestsClient(timeout=5.0)
    yield client
    close(client)


def close(http_client: stripe.HTTPClient) -> None:
    http_client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def client(simulator: Simulator, http_client: stripe.HTTPClient) -> stripe.StripeClient:
    """The official SDK, pointed at the simulator (no retries: tests see every answer)."""
    return sdk_client(simulator, http_client)


def onboarded_account(client: stripe.StripeClient, simulator: Simulator) -> str:
    account = client.v1.accounts.create(params={
        "type": "express", "country": "DE", "email": "treasurer@example.org",
        "capabilities": {"card_payments": {"requested": True},
                         "transfers": {"requested": True}},
    })
    simulator.control.complete_onboarding(account.id)
    return account.id


@pytest.fixture
def account(client: stripe.StripeClient, simulator: Simulator) -> str:
    """A connected account that has completed onboarding, new for each test."""
    return onboarded_account(client, simulator)


def on(account: str, idempotency_key: str | None = None) -> stripe.RequestOptions:
    options: stripe.RequestOptions = {"stripe_account": account}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


@pytest.fixture(scope="session")
def payments_app(app_config: dict[str, Any], running_simulator: Simulator) -> Flask:
    """An app whose payments service talks to the run's simulator, with short timeouts."""
    return create_app({
        **app_config,
        "SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_API_BASE": running_simulator.url,
        "STRIPE_TIMEOUT_SECONDS": 1.0,
        "STRIPE_MAX_NETWORK_RETRIES": 1,
    })


@pytest.fixture
def payments_context(payments_app: Flask, simulator: Simulator) -> Iterator[Flask]:
    with payments_app.app_context():
        yield payments_app
