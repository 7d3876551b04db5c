"""PaymentIntents on a connected account, through the official SDK over HTTP: creation,
confirmation with test cards, fees, idempotency and Stripe's errors."""

from __future__ import annotations

import re

import pytest
import stripe

from portal.stripe_simulator import FeeSchedule, Simulator
from tests.stripe_simulator.conftest import (
    Inbox,
    on,
    onboarded_account,
    sdk_client,
    simulator_settings,
)


def new_intent(client: stripe.StripeClient, account: str, amount: int = 2000,
               key: str | None = None, receipt_email: str | None = None,
               description: str | None = None) -> stripe.PaymentIntent:
    params: stripe.params.PaymentIntentCreateParams = {
        "amount": amount, "currency": "eur", "automatic_payment_methods": {"enabled": True},
        "metadata": {"donation_id": "don_123"},
    }
    if receipt_email:
        params["receipt_email"] = receipt_email
    if description:
        params["description"] = description
    return client.v1.payment_intents.create(params=params, options=on(account, key))


def pay(client: stripe.StripeClient, account: str, intent_id: str,
        method: str = "pm_card_visa") -> stripe.PaymentIntent:
    return client.v1.payment_intents.confirm(
        intent_id, params={"payment_method": method, "return_url": "https://portal.test/done"},
        options=on(account))


def test_a_payment_intent_is_created_on_the_connected_account(
        client: stripe.StripeClient, account: str) -> None:
    intent = new_intent(client, account, receipt_email="donor@example.org",
                        description="Gift to Harbour Lights")
    assert re.fullmatch(r"pi_[A-Za-z0-9]{24}", intent.id)
    assert re.fullmatch(rf"{intent.id}_secret_[A-Za-z0-9]{{25}}", str(intent.client_secret))
    assert (intent.object, intent.status, intent.livemode) == (
        "payment_intent", "requires_payment_method", False)
    assert (intent.amount, intent.currency) == (2000, "eur")
    assert intent.metadata["donation_id"] == "don_123"
    assert intent.automatic_payment_methods is not None
    assert intent.automatic_payment_methods.enabled is True
    assert intent.receipt_email == "donor@example.org"
    assert intent.description == "Gift to Harbour Lights"
    fetched = client.v1.payment_intents.retrieve(intent.id, options=on(account))
    assert fetched.id == intent.id


def test_another_account_cannot_see_the_payment_intent(
        client: stripe.StripeClient, simulator: Simulator, account: str) -> None:
    intent = new_intent(client, account)
    other = onboarded_account(client, simulator)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.retrieve(intent.id, options=on(other))
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve(intent.id)


def test_4242_succeeds_with_a_charge_whose_balance_transaction_carries_the_fee(
        client: stripe.StripeClient, account: str) -> None:
    intent = pay(client, account, new_intent(client, account, 2000).id)
    assert intent.status == "succeeded"
    assert intent.amount_received == 2000
    charge = client.v1.charges.retrieve(str(intent.latest_charge), options=on(account),
                                        params={"expand": ["balance_transaction"]})
    assert (charge.status, charge.paid, charge.amount, charge.payment_intent) == (
        "succeeded", True, 2000, intent.id)
    assert charge.metadata["donation_id"] == "don_123"
    transaction = charge.balance_transaction
    assert isinstance(transaction, stripe.BalanceTransaction)
    # 1.5 % of €20.00 is €0.30, plus €0.25.
    assert (transaction.amount, transaction.fee, transaction.net) == (2000, 55, 1945)
    assert transaction.fee_details[0].type == "stripe_fee"
    again = client.v1.balance_transactions.retrieve(transaction.id, options=on(account))
    assert (again.source, again.net) == (charge.id, 1945)


def test_nested_expansion_reaches_the_balance_transaction(
        client: stripe.StripeClient, account: str) -> None:
    intent = pay(client, account, new_intent(client, account, 1000).id)
    expanded = client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["latest_charge.balance_transaction"]},
        options=on(account))
    charge = expanded.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert isinstance(charge.balance_transaction, stripe.BalanceTransaction)
    assert charge.balance_transaction.fee == 40


def test_the_fee_schedule_is_a_setting(redis_url: str, inbox: Inbox,
                                       http_client: stripe.HTTPClient) -> None:
    costly = Simulator.from_url(
        redis_url, simulator_settings(fees=FeeSchedule(basis_points=290, fixed=30)),
        key_prefix="stripe-sim-fees-test:").start()
    try:
        client = sdk_client(costly, http_client)
        account = onboarded_account(client, costly)
        intent = pay(client, account, new_intent(client, account, 10_000).id)
        charge = client.v1.charges.retrieve(str(intent.latest_charge), options=on(account),
                                            params={"expand": ["balance_transaction"]})
        assert isinstance(charge.balance_transaction, stripe.BalanceTransaction)
        assert charge.balance_transaction.fee == 320
    finally:
        costly.control.reset()
        costly.stop()


@pytest.mark.parametrize(("method", "code", "decline_code"), [
    ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
])
def test_declined_cards_answer_402_and_leave_the_intent_waiting_for_another_card(
        client: stripe.StripeClient, inbox: Inbox, account: str, method: str, code: str,
        decline_code: str) -> None:
    intent = new_intent(client, account)
    with pytest.raises(stripe.CardError) as caught:
        pay(client, account, intent.id, method)
    assert caught.value.http_status == 402
    assert caught.value.code == code
    body = caught.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["decline_code"] == decline_code
    assert body["error"]["type"] == "card_error"
    assert body["error"]["payment_intent"]["id"] == intent.id
    after = client.v1.payment_intents.retrieve(intent.id, options=on(account))
    assert after.status == "requires_payment_method"
    assert after.last_payment_error is not None
    assert after.last_payment_error.decline_code == decline_code
    failed = client.v1.charges.retrieve(str(after.latest_charge), options=on(account))
    assert (failed.status, failed.balance_transaction) == ("failed", None)
    inbox.wait_for_type("payment_intent.payment_failed", account)
    # Another card can still pay it.
    assert pay(client, account, intent.id).status == "succeeded"


def test_a_succeeded_intent_cannot_be_confirmed_again(client: stripe.StripeClient,
                                                      account: str) -> None:
    intent = pay(client, account, new_intent(client, account).id)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        pay(client, account, intent.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_automatic_payment_methods_need_a_return_url(client: stripe.StripeClient,
                                                     account: str) -> None:
    intent = new_intent(client, account)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"},
                                          options=on(account))
    assert caught.value.param == "return_url"


def test_amounts_below_stripes_minimum_are_refused(client: stripe.StripeClient,
                                                   account: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        new_intent(client, account, amount=49)
    assert (caught.value.code, caught.value.param) == ("amount_too_small", "amount")


def test_unknown_parameters_are_refused(client: stripe.StripeClient, account: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.raw_request("post", "/v1/payment_intents", amount=500, currency="eur",
                           colour="red", stripe_account=account)
    assert caught.value.code == "parameter_unknown"


def test_an_account_that_has_not_finished_onboarding_cannot_take_payments(
        client: stripe.StripeClient) -> None:
    fresh = client.v1.accounts.create(params={
        "type": "express", "capabilities": {"card_payments": {"requested": True}}})
    with pytest.raises(stripe.InvalidRequestError, match="onboarding"):
        new_intent(client, fresh.id)


def test_the_same_idempotency_key_replays_the_first_answer(client: stripe.StripeClient,
                                                           account: str) -> None:
    first = new_intent(client, account, key="donation-don_123")
    second = new_intent(client, account, key="donation-don_123")
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    other = new_intent(client, account, key="donation-don_124")
    assert other.id != first.id


def test_the_same_idempotency_key_with_other_parameters_is_an_idempotency_error(
        client: stripe.StripeClient, account: str) -> None:
    new_intent(client, account, 2000, key="donation-don_200")
    with pytest.raises(stripe.IdempotencyError) as caught:
        new_intent(client, account, 3000, key="donation-don_200")
    assert caught.value.http_status == 400
    body = caught.value.json_body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "idempotency_error"


def test_a_declined_confirmation_is_replayed_for_its_idempotency_key(
        client: stripe.StripeClient, account: str) -> None:
    intent = new_intent(client, account)
    params: stripe.params.PaymentIntentConfirmParams = {
        "payment_method": "pm_card_visa_chargeDeclined", "return_url": "https://portal.test/"}
    for _ in range(2):
        with pytest.raises(stripe.CardError):
            client.v1.payment_intents.confirm(intent.id, params=params,
                                              options=on(account, "confirm-1"))
    after = client.v1.payment_intents.retrieve(intent.id, options=on(account))
    # One attempt, not two: the second answer was the first one's replay.
    events = client.v1.events.list(params={"type": "charge.failed"}, options=on(account))
    assert [event.data.object["id"] for event in events.data] == [after.latest_charge]


def test_a_canceled_intent_emits_its_event(client: stripe.StripeClient, inbox: Inbox,
                                           account: str) -> None:
    intent = new_intent(client, account)
    canceled = client.v1.payment_intents.cancel(
        intent.id, params={"cancellation_reason": "abandoned"}, options=on(account))
    assert canceled.status == "canceled"
    inbox.wait_for_type("payment_intent.canceled", account)


def test_every_change_is_an_event_of_the_account(client: stripe.StripeClient,
                                                 account: str) -> None:
    intent = pay(client, account, new_intent(client, account).id)
    events = client.v1.events.list(options=on(account))
    types = [event.type for event in events.data]
    assert types[:3] == ["payment_intent.succeeded", "charge.succeeded",
                         "payment_intent.created"]
    succeeded = client.v1.events.retrieve(events.data[0].id, options=on(account))
    assert succeeded.account == account
    assert succeeded.data.object["id"] == intent.id
    assert re.fullmatch(r"evt_[A-Za-z0-9]{24}", succeeded.id)


def test_requests_without_a_test_key_are_refused(simulator: Simulator,
                                                 http_client: stripe.HTTPClient) -> None:
    live = stripe.StripeClient("sk_live_nope", base_addresses={"api": simulator.url},
                               http_client=http_client)
    with pytest.raises(stripe.AuthenticationError):
        live.v1.events.list()


def test_an_unknown_connected_account_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.PermissionError):
        client.v1.events.list(options=on("acct_doesnotexist000000000000"))
