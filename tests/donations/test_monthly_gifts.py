"""Monthly gifts: a subscription on the organisation's account, every paid invoice its own
entry in the ledger and its own receipt, and the signed link in each receipt that stops
the gift."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from portal.models import Organisation
from portal.services import donations, ledger, payments, stripe_accounts
from tests.donations.conftest import Donor, Webhooks, donation, messages_to, send_receipts


def gifts_of(org_id: str) -> list[ledger.Entry]:
    return [entry for entry in ledger.iter_entries(org_id) if entry.type == "donation_received"]


def cancel_link(text: str) -> str:
    found = re.search(r"http://portal\.test(/donations/cancel/[^\s<\"]+)", text)
    assert found, "the receipt has no link to stop the gift"
    return found.group(1)


def test_each_month_is_its_own_entry_and_receipt_until_the_donor_stops_it(
    app: Flask, client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks, outbox_folder: Path,
) -> None:
    org = connected_org(name="Monthly Meals")
    account = stripe_accounts.stripe_status(org.id).account_id
    assert account is not None
    donation_id = donor.give(org, frequency="monthly", amount="1000", show_name=True)
    assert "every month" in client.get(f"/donations/{donation_id}/pay").get_data(as_text=True)
    assert donor.pay(donation_id).status_code == 303
    assert set(webhooks.deliver()) == {200}
    gift = donation(donation_id)
    assert (gift.status, gift.frequency) == ("active", "monthly")
    assert gift.subscription_id is not None
    [first] = gifts_of(org.id)
    assert (first.amount, first.metadata["frequency"]) == (1000, "monthly")
    assert first.metadata["stripe_payment_intent_id"] == gift.payment_intent_id
    assert "Monthly gift active" in donor.thanks(donation_id)

    webhooks.simulator.control.advance_subscription(gift.subscription_id)
    assert set(webhooks.deliver()) == {200}
    first_again, second = gifts_of(org.id)
    assert first_again == first
    assert second.amount == 1000
    assert second.metadata["stripe_payment_intent_id"] != first.metadata[
        "stripe_payment_intent_id"]
    assert [entry.type for entry in ledger.iter_entries(org.id)] == [
        "donation_received", "fee", "donation_received", "fee"]

    # A renewal the bank refuses writes nothing, and the gift carries on.
    webhooks.simulator.control.advance_subscription(gift.subscription_id,
                                                    card_number="4000 0000 0000 0002")
    assert set(webhooks.deliver()) == {200}
    assert len(gifts_of(org.id)) == 2
    assert donation(donation_id).status == "active"

    assert send_receipts(app) >= 2
    mails = messages_to(outbox_folder, donor.email)
    assert len(mails) == 2
    texts = []
    for mail in mails:
        body = mail.get_body(("plain",))
        assert body is not None
        texts.append(body.get_content())
    # One receipt per payment, each naming its own entry.
    assert [sum(entry.entry_id in text for text in texts) for entry in (first, second)] == [1, 1]
    assert all("monthly gift" in mail["Subject"] for mail in mails)

    link = cancel_link(texts[-1])
    confirm = client.get(link)
    assert confirm.status_code == 200
    page = confirm.get_data(as_text=True)
    assert "Stop this monthly gift?" in page and "€10.00" in page
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token is not None
    stopped = client.post(link, data={"csrf_token": token.group(1)})
    assert stopped.status_code == 200
    assert "Your monthly gift is stopped" in stopped.get_data(as_text=True)
    assert donation(donation_id).status == "canceled"
    assert payments.retrieve_subscription(account, gift.subscription_id).status == "canceled"
    assert set(webhooks.deliver()) == {200}  # customer.subscription.deleted
    again = client.get(link).get_data(as_text=True)
    assert "already stopped" in again
    assert len(gifts_of(org.id)) == 2  # payments already made stay


def test_a_cancel_link_must_be_genuine(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
) -> None:
    org = connected_org()
    one_time = donor.give(org)
    forged = client.get("/donations/cancel/not-a-real-token")
    assert forged.status_code == 400
    assert "This link is not valid" in forged.get_data(as_text=True)
    token = donations.cancel_token(one_time, org.id)
    assert client.get(f"/donations/cancel/{token}").status_code == 404
    assert donation(one_time).status == "pending"
