"""Refunds (partial and full) and disputes (opened and closed by the control API)."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlencode

import pytest
import stripe

from portal.stripe_simulator import Simulator, StripeError
from tests.stripe_simulator.conftest import Inbox, on


def paid_charge(client: stripe.StripeClient, account: str, amount: int = 1000) -> str:
    intent = client.v1.payment_intents.create(params={
        "amount": amount, "currency": "eur", "payment_method": "pm_card_visa",
        "confirm": True, "return_url": "https://portal.test/done",
        "metadata": {"donation_id": "don_9"}}, options=on(account))
    assert intent.status == "succeeded"
    return str(intent.latest_charge)


def test_partial_then_full_refunds(client: stripe.StripeClient, inbox: Inbox,
                                   account: str) -> None:
    charge_id = paid_charge(client, account, 1000)
    first = client.v1.refunds.create(params={"charge": charge_id, "amount": 300,
                                             "reason": "requested_by_customer"},
                                     options=on(account))
    assert (first.object, first.amount, first.status, first.charge) == (
        "refund", 300, "succeeded", charge_id)
    transaction = client.v1.balance_transactions.retrieve(str(first.balance_transaction),
                                                          options=on(account))
    assert (transaction.type, transaction.amount, transaction.fee) == ("refund", -300, 0)

    charge = client.v1.charges.retrieve(charge_id, options=on(account))
    assert (charge.amount_refunded, charge.refunded) == (300, False)

    rest = client.v1.refunds.create(params={"charge": charge_id}, options=on(account))
    assert rest.amount == 700
    charge = client.v1.charges.retrieve(charge_id, params={"expand": ["refunds"]},
                                        options=on(account))
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    assert charge.refunds is not None
    assert [refund.id for refund in charge.refunds.data] == [rest.id, first.id]

    refunded = inbox.wait_for_type("charge.refunded", account, count=2)
    assert [event["data"]["object"]["amount_refunded"] for event in refunded] == [300, 1000]
    assert refunded[1]["data"]["previous_attributes"] == {"amount_refunded": 300,
                                                          "refunded": False}
    assert len(inbox.wait_for_type("refund.created", account, count=2)) == 2

    listed = client.v1.refunds.list(params={"charge": charge_id}, options=on(account))
    assert {refund.id for refund in listed.data} == {first.id, rest.id}


def test_more_than_what_is_left_cannot_be_refunded(client: stripe.StripeClient,
                                                    account: str) -> None:
    charge_id = paid_charge(client, account, 1000)
    client.v1.refunds.create(params={"charge": charge_id, "amount": 800}, options=on(account))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"charge": charge_id, "amount": 300},
                                 options=on(account))
    assert (caught.value.code, caught.value.param) == ("amount_too_large", "amount")
    client.v1.refunds.create(params={"charge": charge_id}, options=on(account))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"charge": charge_id}, options=on(account))
    assert caught.value.code == "charge_already_refunded"


def test_a_refund_by_payment_intent(client: stripe.StripeClient, account: str) -> None:
    charge_id = paid_charge(client, account)
    charge = client.v1.charges.retrieve(charge_id, options=on(account))
    refund = client.v1.refunds.create(params={"payment_intent": str(charge.payment_intent)},
                                      options=on(account))
    assert (refund.charge, refund.amount) == (charge_id, 1000)


def test_a_dispute_withdraws_the_amount_and_a_fee_and_can_be_won(
        client: stripe.StripeClient, simulator: Simulator, inbox: Inbox, account: str) -> None:
    charge_id = paid_charge(client, account, 5000)
    opened = simulator.control.open_dispute(charge_id)
    assert opened["status"] == "needs_response"
    dispute = client.v1.disputes.retrieve(opened["id"], options=on(account))
    assert (dispute.charge, dispute.amount, dispute.reason) == (charge_id, 5000, "fraudulent")
    [withdrawal] = dispute.balance_transactions
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-5000, 2000, -7000)
    assert client.v1.charges.retrieve(charge_id, options=on(account)).disputed is True
    [created] = inbox.wait_for_type("charge.dispute.created", account)
    assert created["data"]["object"]["id"] == dispute.id

    simulator.control.close_dispute(dispute.id, "won")
    won = client.v1.disputes.retrieve(dispute.id, options=on(account))
    assert won.status == "won"
    assert [line.amount for line in won.balance_transactions] == [-5000, 5000]
    [closed] = inbox.wait_for_type("charge.dispute.closed", account)
    assert closed["data"]["object"]["status"] == "won"
    assert closed["data"]["previous_attributes"] == {"status": "needs_response"}
    inbox.wait_for_type("charge.dispute.funds_reinstated", account)


def test_a_lost_dispute_over_http(client: stripe.StripeClient, simulator: Simulator,
                                  inbox: Inbox, account: str) -> None:
    charge_id = paid_charge(client, account, 2500)
    dispute = post_json(f"{simulator.url}/_simulator/charges/{charge_id}/dispute",
                        {"reason": "product_not_received"})
    assert dispute["reason"] == "product_not_received"
    closed = post_json(f"{simulator.url}/_simulator/disputes/{dispute['id']}/close",
                       {"outcome": "lost"})
    assert closed["status"] == "lost"
    [event] = inbox.wait_for_type("charge.dispute.closed", account)
    assert event["data"]["object"]["status"] == "lost"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"charge": charge_id}, options=on(account))
    assert caught.value.code == "charge_disputed"


def test_a_charge_is_disputed_once(client: stripe.StripeClient, simulator: Simulator,
                                   account: str) -> None:
    charge_id = paid_charge(client, account)
    simulator.control.open_dispute(charge_id)
    with pytest.raises(StripeError, match="already disputed"):
        simulator.control.open_dispute(charge_id)


def post_json(url: str, form: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(url, data=urlencode(form).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        found: dict[str, object] = json.loads(response.read())
        return found
