"""Two simulators on one Redis, as two app processes run them: one set of objects, one
webhook queue, and requests that stay correct when they arrive at the same time."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import stripe

from portal.stripe_simulator import Simulator
from tests.stripe_simulator.conftest import (
    Inbox,
    close,
    on,
    onboarded_account,
    sdk_client,
    simulator_settings,
)


@pytest.fixture
def pair(redis_url: str) -> Iterator[tuple[Simulator, Simulator, Inbox]]:
    """Simulators A and B sharing a Redis namespace; only A delivers webhooks."""
    prefix = f"stripe-sim-pair-{uuid.uuid4().hex[:8]}:"
    inbox = Inbox()
    first = Simulator.from_url(redis_url, simulator_settings(), key_prefix=prefix).start()
    first.control.deliver_to(inbox)
    second = Simulator.from_url(redis_url, simulator_settings(), key_prefix=prefix,
                                deliver_webhooks=False).start()
    yield first, second, inbox
    first.control.reset()
    first.stop()
    second.stop()


@pytest.fixture
def clients(pair: tuple[Simulator, Simulator, Inbox],
            ) -> Iterator[tuple[stripe.StripeClient, stripe.StripeClient]]:
    transports = [stripe.RequestsClient(timeout=10), stripe.RequestsClient(timeout=10)]
    yield sdk_client(pair[0], transports[0]), sdk_client(pair[1], transports[1])
    for transport in transports:
        close(transport)


def test_what_one_creates_the_other_serves(pair: tuple[Simulator, Simulator, Inbox],
                                           clients: tuple[stripe.StripeClient,
                                                          stripe.StripeClient]) -> None:
    first, _, inbox = pair
    client_a, client_b = clients
    account = onboarded_account(client_a, first)
    assert client_b.v1.accounts.retrieve(account).charges_enabled is True
    intent = client_b.v1.payment_intents.create(params={
        "amount": 1200, "currency": "eur", "allowed_payment_method_types": ["card"]},
        options=on(account))
    paid = client_a.v1.payment_intents.confirm(intent.id,
                                               params={"payment_method": "pm_card_visa"},
                                               options=on(account))
    assert paid.status == "succeeded"
    # Events made through B are delivered by A's worker: the queue is shared.
    events = inbox.wait_for(lambda found: "payment_intent.succeeded" in
                            [event["type"] for event in found], account)
    assert "payment_intent.created" in [event["type"] for event in events]
    # Control of one is control of both.
    first.control.fail_next("GET /v1/payment_intents/*", "rate_limit")
    with pytest.raises(stripe.RateLimitError):
        client_b.v1.payment_intents.retrieve(intent.id, options=on(account))


def in_parallel(count: int, work: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # the test asserts on what each caller got
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_with_one_idempotency_key_make_one_intent(
        pair: tuple[Simulator, Simulator, Inbox],
        clients: tuple[stripe.StripeClient, stripe.StripeClient]) -> None:
    first, second, _ = pair
    account = onboarded_account(clients[0], first)

    def create(index: int) -> str:
        transport = stripe.RequestsClient(timeout=10)
        try:
            client = sdk_client((first, second)[index % 2], transport)
            return client.v1.payment_intents.create(params={
                "amount": 1000, "currency": "eur", "allowed_payment_method_types": ["card"]},
                options=on(account, "donation-same")).id
        finally:
            close(transport)

    ids = in_parallel(8, create)
    assert len(set(ids)) == 1
    assert all(isinstance(found, str) and found.startswith("pi_") for found in ids)


def test_concurrent_refunds_never_refund_more_than_the_charge(
        pair: tuple[Simulator, Simulator, Inbox],
        clients: tuple[stripe.StripeClient, stripe.StripeClient]) -> None:
    first, second, _ = pair
    client_a, client_b = clients
    account = onboarded_account(client_a, first)
    intent = client_a.v1.payment_intents.create(params={
        "amount": 1000, "currency": "eur", "allowed_payment_method_types": ["card"],
        "confirm": True, "payment_method": "pm_card_visa"}, options=on(account))
    charge_id = str(intent.latest_charge)

    def refund(index: int) -> int:
        transport = stripe.RequestsClient(timeout=10)
        try:
            client = sdk_client((first, second)[index % 2], transport)
            return client.v1.refunds.create(params={"charge": charge_id, "amount": 300},
                                            options=on(account)).amount
        finally:
            close(transport)

    results = in_parallel(5, refund)
    refused = [result for result in results if isinstance(result, stripe.InvalidRequestError)]
    assert sorted(result for result in results if isinstance(result, int)) == [300, 300, 300]
    assert [error.code for error in refused] == ["amount_too_large"] * 2
    charge = client_b.v1.charges.retrieve(charge_id, options=on(account))
    assert charge.amount_refunded == 900
