"""Webhook delivery: Stripe's signatures, retries with backoff, and the delivery controls
(duplicates, delays, shuffling, holding) from Python and over HTTP."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
import stripe
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal.stripe_simulator import Simulator
from tests.stripe_simulator.conftest import (
    WEBHOOK_SECRET,
    Inbox,
    on,
    onboarded_account,
    sdk_client,
    simulator_settings,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def quiet(simulator: Simulator, inbox: Inbox) -> None:
    """Wait for deliveries of earlier changes (the account's onboarding), then forget them."""
    simulator.control.wait_for_webhooks()
    inbox.clear()


def new_customers(client: stripe.StripeClient, account: str, count: int) -> list[str]:
    return [client.v1.customers.create(params={"email": f"donor{number}@example.org"},
                                       options=on(account)).id
            for number in range(count)]


def customer_ids(events: Iterable[dict[str, Any]]) -> list[str]:
    return [event["data"]["object"]["id"] for event in events
            if event["type"] == "customer.created"]


def test_deliveries_are_signed_as_stripe_signs_them(client: stripe.StripeClient,
                                                    simulator: Simulator, inbox: Inbox,
                                                    account: str) -> None:
    quiet(simulator, inbox)
    [customer] = new_customers(client, account, 1)
    inbox.wait_for_type("customer.created", account)
    body, headers = inbox.received[0]
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Stripe-Signature"].startswith("t=")
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WEBHOOK_SECRET,
                                           tolerance=300)
    assert (event.type, event.account) == ("customer.created", account)
    assert event.data.object["id"] == customer

    tampered = body.replace(customer.encode(), b"cus_" + b"x" * 24)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, headers["Stripe-Signature"], WEBHOOK_SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")


def test_failed_deliveries_are_retried_with_backoff(client: stripe.StripeClient,
                                                    simulator: Simulator, inbox: Inbox,
                                                    account: str) -> None:
    quiet(simulator, inbox)
    inbox.answer_next_with(500, 503)
    new_customers(client, account, 1)
    events = inbox.wait_for(lambda found: len(found) == 3, account)
    assert len({event["id"] for event in events}) == 1
    attempts = [attempt for attempt in simulator.control.delivery_attempts()
                if attempt.event_id == events[0]["id"]]
    assert [(attempt.attempt, attempt.status) for attempt in attempts] == [
        (1, 500), (2, 503), (3, 200)]
    # 20 ms, then 40 ms.
    assert attempts[2].at - attempts[0].at >= 0.06


def test_deliveries_are_given_up_after_the_last_attempt(client: stripe.StripeClient,
                                                        simulator: Simulator, inbox: Inbox,
                                                        account: str) -> None:
    quiet(simulator, inbox)
    inbox.answer_next_with(500, 500, 500)
    new_customers(client, account, 1)
    [event, *_] = inbox.wait_for(lambda found: len(found) == 3, account)
    simulator.control.wait_for_webhooks()
    time.sleep(0.2)
    assert len(inbox.events(account)) == 3
    assert [attempt.succeeded for attempt in simulator.control.delivery_attempts()
            if attempt.event_id == event["id"]] == [False, False, False]


def test_each_event_can_be_delivered_several_times(client: stripe.StripeClient,
                                                   simulator: Simulator, inbox: Inbox,
                                                   account: str) -> None:
    quiet(simulator, inbox)
    simulator.control.configure_webhooks(duplicate=3)
    [customer] = new_customers(client, account, 1)
    events = inbox.wait_for(lambda found: len(found) == 3, account)
    assert customer_ids(events) == [customer] * 3
    assert len({event["id"] for event in events}) == 1
    for body, headers in inbox.received:
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WEBHOOK_SECRET)


def test_deliveries_can_be_delayed(client: stripe.StripeClient, simulator: Simulator,
                                   inbox: Inbox, account: str) -> None:
    quiet(simulator, inbox)
    simulator.control.configure_webhooks(delay_ms=400)
    started = time.monotonic()
    new_customers(client, account, 1)
    time.sleep(0.2)
    assert inbox.events(account) == []
    inbox.wait_for_type("customer.created", account)
    assert time.monotonic() - started >= 0.4


def test_deliveries_can_be_shuffled(client: stripe.StripeClient, simulator: Simulator,
                                    inbox: Inbox, account: str) -> None:
    quiet(simulator, inbox)
    simulator.control.configure_webhooks(shuffle=True, shuffle_window_ms=1500,
                                         shuffle_seed=7)
    created = new_customers(client, account, 6)
    events = inbox.wait_for(lambda found: len(found) == 6, account)
    expected = list(created)
    random.Random(7).shuffle(expected)
    assert customer_ids(events) == expected
    assert expected != created


def test_held_events_wait_until_released_in_any_order(client: stripe.StripeClient,
                                                      simulator: Simulator, inbox: Inbox,
                                                      account: str) -> None:
    quiet(simulator, inbox)
    simulator.control.configure_webhooks(hold=True)
    created = new_customers(client, account, 3)
    held = simulator.control.held_events()
    assert [entry["type"] for entry in held] == ["customer.created"] * 3
    time.sleep(0.3)
    assert inbox.events(account) == []

    assert simulator.control.release_held("reverse") == 3
    events = inbox.wait_for(lambda found: len(found) == 3, account)
    assert customer_ids(events) == created[::-1]


def test_held_events_can_be_delivered_by_the_caller(client: stripe.StripeClient,
                                                    simulator: Simulator, inbox: Inbox,
                                                    account: str) -> None:
    quiet(simulator, inbox)
    simulator.control.configure_webhooks(hold=True)
    created = new_customers(client, account, 3)
    ids = [entry["event"] for entry in simulator.control.held_events()]
    received: list[str] = []
    answers = iter([200, 500, 200])

    def deliver(body: bytes, headers: dict[str, str]) -> int:
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WEBHOOK_SECRET)
        received.append(json.loads(body)["data"]["object"]["id"])
        return next(answers)

    attempts = simulator.control.deliver_held([ids[2], ids[0], ids[1]], deliver=deliver)
    assert received == [created[2], created[0], created[1]]
    assert [attempt.status for attempt in attempts] == [200, 500, 200]
    # The failed one is held again, for another try.
    assert [entry["event"] for entry in simulator.control.held_events()] == [ids[0]]
    assert inbox.events(account) == []


def test_the_delivery_controls_over_http(client: stripe.StripeClient, simulator: Simulator,
                                         inbox: Inbox, account: str) -> None:
    quiet(simulator, inbox)
    settings = post(f"{simulator.url}/_simulator/webhooks", {"hold": "true"})
    assert settings["settings"]["hold"] is True
    created = new_customers(client, account, 2)
    state = get(f"{simulator.url}/_simulator/webhooks")
    events = [entry["event"] for entry in state["held"]]
    assert len(events) == 2
    released = post(f"{simulator.url}/_simulator/webhooks/release",
                    {"events[0]": events[1], "events[1]": events[0]})
    assert released == {"released": 2}
    assert customer_ids(inbox.wait_for(lambda found: len(found) == 2, account)) == \
        created[::-1]
    attempts = get(f"{simulator.url}/_simulator/webhooks/attempts")["attempts"]
    assert {attempt["event_id"] for attempt in attempts} >= set(events)


class Receiver:
    """A real HTTP endpoint that records what is posted to it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[tuple[bytes, str]] = []

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        self.bodies.append((request.get_data(), request.headers.get("Stripe-Signature", "")))
        return Response("ok", status=self.status)(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}/webhooks/stripe"
    server.shutdown()
    server.server_close()


def test_events_are_posted_to_the_webhook_url(redis_url: str, receiver: tuple[Receiver, str],
                                              http_client: stripe.HTTPClient) -> None:
    endpoint, url = receiver
    simulator = Simulator.from_url(redis_url, simulator_settings(webhook_url=url),
                                   key_prefix=f"stripe-sim-url-{uuid.uuid4().hex[:8]}:").start()
    try:
        client = sdk_client(simulator, http_client)
        account = onboarded_account(client, simulator)
        simulator.control.wait_for_webhooks()
        assert len(endpoint.bodies) == 1
        body, signature = endpoint.bodies[0]
        event = stripe.Webhook.construct_event(body, signature, WEBHOOK_SECRET)
        assert (event.type, event.account) == ("account.updated", account)
    finally:
        simulator.control.reset()
        simulator.stop()


def post(url: str, form: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=urlencode(form).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        found: dict[str, Any] = json.loads(response.read())
        return found


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url) as response:
        found: dict[str, Any] = json.loads(response.read())
        return found
