"""When Stripe fails (the simulator answering 402, 429 or 500, or not answering at all), the
donor is told plainly, nothing is charged twice, and the pending donation is kept: the
next try continues it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from portal.models import Organisation
from portal.services import ledger, payments, stripe_accounts
from tests.donations.conftest import Donor, Webhooks, donation, form_token


def intent_of(org: Organisation, donation_id: str) -> payments.Payment:
    account = stripe_accounts.stripe_status(org.id).account_id
    intent_id = donation(donation_id).payment_intent_id
    assert account is not None and intent_id is not None
    return payments.retrieve_payment_intent(account, intent_id)


@pytest.mark.parametrize(("kind", "count", "status", "message"), [
    # The SDK does not retry a plain 429; it retries a 500 once (STRIPE_MAX_NETWORK_RETRIES).
    ("rate_limit", 1, 429, "Stripe is busy right now. Please try again in a moment."),
    ("api_error", 2, 503, "Stripe could not be reached. Please try again in a few minutes."),
])
def test_when_stripe_fails_to_make_the_payment_the_donation_waits_for_a_retry(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks, kind: str, count: int, status: int, message: str,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    webhooks.simulator.control.fail_next("POST /v1/payment_intents", kind, count=count)
    failed = client.get(f"/donations/{donation_id}/pay")
    assert failed.status_code == status
    html = failed.get_data(as_text=True)
    assert message in html
    assert "Nothing has been charged, and your donation is kept" in html
    assert f'href="/donations/{donation_id}/pay">try again</a>' in html
    assert donation(donation_id).status == "pending"
    assert donation(donation_id).payment_intent_id is None

    retried = client.get(f"/donations/{donation_id}/pay")
    assert retried.status_code == 200
    first = donation(donation_id).payment_intent_id
    client.get(f"/donations/{donation_id}/pay")  # a reload asks Stripe for nothing new
    assert donation(donation_id).payment_intent_id == first
    assert donor.pay(donation_id).status_code == 303
    webhooks.deliver()
    assert [entry.type for entry in ledger.iter_entries(org.id)] == ["donation_received", "fee"]


def test_a_confirmation_that_times_out_charges_nothing_and_can_be_tried_again(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    page = client.get(f"/donations/{donation_id}/pay").get_data(as_text=True)
    # The app waits one second for an answer, and retries once.
    webhooks.simulator.control.fail_next("POST /v1/payment_intents/*/confirm", "timeout",
                                         count=2, seconds=1.5)
    timed_out = client.post(f"/donations/{donation_id}/pay", data={
        "csrf_token": form_token(page), "card_number": "4242 4242 4242 4242"})
    assert timed_out.status_code == 503
    assert "Stripe could not be reached" in timed_out.get_data(as_text=True)
    assert intent_of(org, donation_id).status == "requires_payment_method"
    assert donation(donation_id).status == "pending"
    webhooks.deliver()
    assert list(ledger.iter_entries(org.id)) == []

    assert donor.pay(donation_id).status_code == 303
    paid = intent_of(org, donation_id)
    assert (paid.status, paid.amount) == ("succeeded", 2500)
    webhooks.deliver()
    gifts = [entry for entry in ledger.iter_entries(org.id)
             if entry.type == "donation_received"]
    assert [(gift.amount, gift.metadata["stripe_payment_intent_id"]) for gift in gifts] == [
        (2500, paid.id)]


def test_a_card_error_from_stripe_is_shown_to_the_donor(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    page = client.get(f"/donations/{donation_id}/pay").get_data(as_text=True)
    webhooks.simulator.control.fail_next("POST /v1/payment_intents/*/confirm",
                                         "card_declined")
    refused = client.post(f"/donations/{donation_id}/pay", data={
        "csrf_token": form_token(page), "card_number": "4242 4242 4242 4242"})
    assert refused.status_code == 402
    assert "Your card was declined" in refused.get_data(as_text=True)
    assert donation(donation_id).status == "failed"
    assert list(ledger.iter_entries(org.id)) == []


def test_a_webhook_that_cannot_reach_stripe_is_refused_and_applied_on_redelivery(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    donor.pay(donation_id)
    succeeded = webhooks.ids("payment_intent.succeeded")
    webhooks.simulator.control.fail_next("GET /v1/payment_intents/*", "api_error", count=2)
    assert webhooks.deliver(succeeded) == [503]
    assert list(ledger.iter_entries(org.id)) == []
    assert donation(donation_id).status == "pending"
    # Stripe delivers it again (a failed delivery goes back on hold here).
    assert webhooks.deliver(succeeded) == [200]
    assert [entry.type for entry in ledger.iter_entries(org.id)] == ["donation_received", "fee"]
    assert donation(donation_id).status == "succeeded"
