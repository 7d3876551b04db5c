"""Injected failures (402, 429, 500, a hung request) as the payments service's callers see
them: the portal's own exceptions, or nothing at all when a retry recovers."""

from __future__ import annotations

import json
import time
import urllib.request
from urllib.parse import urlencode

import pytest
import stripe

from portal.services import payments
from portal.stripe_simulator import Simulator
from tests.stripe_simulator.conftest import on

pytestmark = pytest.mark.usefixtures("payments_context")


def onboarded(simulator: Simulator) -> str:
    account = payments.create_connected_account(country="DE", email=None,
                                                idempotency_key=f"org-{time.time_ns()}")
    simulator.control.complete_onboarding(account.id)
    return account.id


def donate(account: str, key: str | None = None) -> payments.Payment:
    return payments.create_payment_intent(account, amount=1500, currency="EUR",
                                          metadata={"donation_id": "don_1"},
                                          idempotency_key=key or f"don-{time.time_ns()}")


def test_an_injected_402_is_a_card_declined(running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    running_simulator.control.fail_next("POST /v1/payment_intents", "card_declined")
    with pytest.raises(payments.CardDeclined) as caught:
        donate(account)
    assert caught.value.status_code == 402
    assert caught.value.decline_code == "generic_decline"
    # The failure was used up.
    assert donate(account).status == "requires_payment_method"


def test_an_injected_429_is_rate_limited(running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    running_simulator.control.fail_next("POST /v1/payment_intents", "rate_limit")
    with pytest.raises(payments.StripeRateLimited):
        donate(account)


def test_server_errors_are_retried_with_the_same_idempotency_key(
        running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    running_simulator.control.fail_next("POST /v1/payment_intents", "api_error")
    payment = donate(account, key="don-retried")
    # The retry created the intent; asking again with the key gives the same one.
    assert donate(account, key="don-retried").id == payment.id
    assert running_simulator.control.faults() == []


def test_server_errors_beyond_the_retries_make_stripe_unavailable(
        running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    running_simulator.control.fail_next("POST /v1/payment_intents", "api_error", count=2)
    with pytest.raises(payments.StripeUnavailable):
        donate(account)


def test_a_hung_request_times_out_and_is_retried(running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    payment = donate(account)
    running_simulator.control.fail_next("GET /v1/payment_intents/*", "timeout", seconds=2)
    started = time.monotonic()
    assert payments.retrieve_payment_intent(account, payment.id).id == payment.id
    assert time.monotonic() - started >= 1.0


def test_hung_requests_beyond_the_retries_make_stripe_unavailable(
        running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    payment = donate(account)
    running_simulator.control.fail_next("GET /v1/payment_intents/*", "timeout", count=2,
                                        seconds=2)
    with pytest.raises(payments.StripeUnavailable):
        payments.retrieve_payment_intent(account, payment.id)


def test_faults_match_their_endpoint_only(running_simulator: Simulator) -> None:
    account = onboarded(running_simulator)
    running_simulator.control.fail_next("POST /v1/refunds", "rate_limit")
    assert donate(account).status == "requires_payment_method"
    assert len(running_simulator.control.faults()) == 1


def test_faults_over_http(running_simulator: Simulator, client: stripe.StripeClient,
                          account: str) -> None:
    request = urllib.request.Request(
        f"{running_simulator.url}/_simulator/faults",
        data=urlencode({"endpoint": "GET /v1/events", "kind": "rate_limit",
                        "count": "2"}).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        fault = json.loads(response.read())
    assert (fault["kind"], fault["count"]) == ("rate_limit", 2)
    for _ in range(2):
        with pytest.raises(stripe.RateLimitError) as caught:
            client.v1.events.list(options=on(account))
        assert caught.value.http_status == 429
    assert client.v1.events.list(options=on(account)).data
