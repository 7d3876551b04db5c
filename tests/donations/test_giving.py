"""A gift from the donation page to the public ledger, over HTTP through the Stripe
simulator: the form, the test-card payment, Stripe's webhooks, the ledger entries, the
thanks page with its receipt, the PDF and the email."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.ids import new_id
from portal.models import DonationPayment, Fund, Organisation
from portal.services import ledger
from tests.donations.conftest import (
    DECLINED_CARD,
    NO_FUNDS_CARD,
    Donor,
    Webhooks,
    donation,
    messages_to,
    send_receipts,
)


def entries_of(org_id: str) -> list[ledger.Entry]:
    return list(ledger.iter_entries(org_id))


def pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "receipt.pdf"
    path.write_bytes(content)
    return subprocess.run(["pdftotext", str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def test_a_gift_goes_from_the_page_to_the_ledger_and_back_to_the_donor(
    app: Flask, client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks, outbox_folder: Path, tmp_path: Path,
) -> None:
    org = connected_org(name="Riverside Food Bank")
    page = client.get(f"/orgs/{org.slug}/donate")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Give to Riverside Food Bank" in html
    assert "Test mode." in html
    assert "€25.00" in html  # a preset amount, formatted for people

    donation_id = donor.give(org, amount="other", other_amount="40", cover_fees=True,
                             show_name=True)
    pay_page = client.get(f"/donations/{donation_id}/pay")
    text = pay_page.get_data(as_text=True)
    # 40.00 grossed up for 1.5 % + 0.25: 40.87 leaves 40.87 - 0.61 - 0.25 = 40.01 ≥ 40.
    assert "€40.86" in text or "€40.87" in text
    assert "Card fee you cover" in text
    assert pay_page.headers["Cache-Control"] == "no-store"

    paid = donor.pay(donation_id)
    assert paid.status_code == 303
    assert paid.headers["Location"].endswith(f"/donations/{donation_id}/thanks")
    waiting = donor.thanks(donation_id)
    assert "Waiting for Stripe to confirm your payment" in waiting
    assert 'hx-trigger="every 2s"' in waiting
    assert '<meta http-equiv="refresh"' in waiting
    assert entries_of(org.id) == []

    assert set(webhooks.deliver()) == {200}
    gift, fee = entries_of(org.id)
    charged = donation(donation_id).amount
    assert (gift.type, gift.amount, gift.currency) == ("donation_received", charged, "EUR")
    assert gift.metadata["donor_name"] == "Ada Donor"
    assert gift.metadata["donation_id"] == donation_id
    assert gift.metadata["stripe_payment_intent_id"].startswith("pi_")
    assert gift.metadata["fee_covered_by_donor"] == charged - 4000
    assert donor.email not in str(gift.metadata)
    assert (fee.type, fee.amount) == ("fee", -((charged * 150 + 5000) // 10000 + 25))
    assert fee.metadata["category"] == "payment-fees"
    assert charged + fee.amount >= 4000  # the whole gift arrived
    assert ledger.verify_chain(org.id).valid

    done = client.get(f"/donations/{donation_id}/thanks")
    html = done.get_data(as_text=True)
    assert "hx-trigger" not in html  # polling stops
    assert "Waiting for Stripe" not in html
    for shown in (gift.entry_id, gift.entry_hash, "Riverside Food Bank", donation_id,
                  f"/orgs/{org.slug}/entries/{gift.entry_id}",
                  f"amply-verify proof --org {org.slug} --entry {gift.entry_id}",
                  f"amply-verify proof --file {gift.entry_id}.tlog-proof"):
        assert shown in html
    fragment = client.get(f"/donations/{donation_id}/thanks", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="receipt"')

    entry_page = client.get(f"/orgs/{org.slug}/entries/{gift.entry_id}")
    assert entry_page.status_code == 200
    assert "Ada Donor" in entry_page.get_data(as_text=True)

    pdf = client.get(f"/donations/{donation_id}/receipt.pdf")
    assert pdf.status_code == 200
    assert pdf.mimetype == "application/pdf"
    text = pdf_text(pdf.data, tmp_path)
    assert "Donation receipt" in text
    assert "Riverside Food Bank" in text
    assert gift.entry_id in text
    assert gift.entry_hash[7:30] in text.replace("\n", "").replace(" ", "")

    assert send_receipts(app) >= 1
    [message] = messages_to(outbox_folder, donor.email)
    assert "Riverside Food Bank" in message["Subject"]
    body = message.get_body(("plain",))
    assert body is not None
    plain = body.get_content()
    assert gift.entry_id in plain and gift.entry_hash in plain
    assert f"/donations/{donation_id}/thanks" in plain
    html_part = message.get_body(("html",))
    assert html_part is not None and gift.entry_hash in html_part.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert gift.entry_id in pdf_text(attachment.get_content(), tmp_path)
    # Sent once, however often the job is asked for.
    payment = db.session.get(DonationPayment, gift.metadata["stripe_payment_intent_id"],
                             populate_existing=True)
    assert payment is not None and payment.receipt_sent_at is not None


def test_an_anonymous_gift_says_anonymous_in_public(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    donation_id = donor.give(org, message="Keep going!")  # show_name unticked
    donor.pay(donation_id)
    webhooks.deliver()
    [gift, _] = entries_of(org.id)
    assert gift.metadata["donor_name"] == "Anonymous"
    assert "message" not in gift.metadata  # kept private unless the donor publishes it
    public = client.get(f"/orgs/{org.slug}/entries/{gift.entry_id}").get_data(as_text=True)
    assert "Anonymous" in public
    assert donor.name not in public
    assert "Keep going!" not in public
    assert donor.email not in client.get(f"/orgs/{org.slug}/ledger.json").get_data(
        as_text=True)
    # The donor's own receipt still names them.
    assert donor.name in donor.thanks(donation_id)


def test_the_donor_message_is_escaped_everywhere(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    donation_id = donor.give(org, message=attack, show_message=True, show_name=True)
    donor.pay(donation_id)
    webhooks.deliver()
    [gift, _] = entries_of(org.id)
    assert gift.metadata["message"] == attack  # stored as written, never as markup
    for path in (f"/donations/{donation_id}/thanks",
                 f"/orgs/{org.slug}/entries/{gift.entry_id}"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_a_restricted_fund_receives_its_money(
    app: Flask, client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    fund = Fund(id=new_id("fund"), organisation_id=org.id, name="Winter Shelter",
                type="restricted", description="Beds and blankets for the winter.")
    db.session.add(fund)
    db.session.commit()
    page = client.get(f"/orgs/{org.slug}/funds/{fund.id}/donate").get_data(as_text=True)
    assert "Winter Shelter" in page and "Beds and blankets" in page
    donation_id = donor.give(org, fund.id)
    donor.pay(donation_id)
    webhooks.deliver()
    gift, fee = entries_of(org.id)
    assert gift.metadata["fund_id"] == fee.metadata["fund_id"] == fund.id
    assert "restricted" in donor.thanks(donation_id)
    assert client.get(f"/orgs/{org.slug}/funds/fund_{'0' * 24}/donate").status_code == 404


@pytest.mark.parametrize(("card", "reason"), [
    (DECLINED_CARD, "Your card was declined"),
    (NO_FUNDS_CARD, "insufficient funds"),
])
def test_a_refused_card_tells_the_donor_why_and_writes_nothing(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks, card: str, reason: str,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    refused = donor.pay(donation_id, card)
    assert refused.status_code == 402
    assert reason in refused.get_data(as_text=True)
    assert set(webhooks.deliver()) == {200}
    assert entries_of(org.id) == []
    assert donation(donation_id).status == "failed"
    thanks = donor.thanks(donation_id)
    assert reason in thanks
    assert "Try again" in thanks and "hx-trigger" not in thanks
    # Another card pays the same donation.
    assert donor.pay(donation_id).status_code == 303
    webhooks.deliver()
    assert [entry.type for entry in entries_of(org.id)] == ["donation_received", "fee"]
    assert donation(donation_id).status == "succeeded"


def test_the_card_form_answers_htmx_with_its_own_block(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    page = client.get(f"/donations/{donation_id}/pay").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token is not None
    declined = client.post(f"/donations/{donation_id}/pay", headers={"HX-Request": "true"},
                           data={"csrf_token": token.group(1), "card_number": DECLINED_CARD})
    assert declined.status_code == 402
    fragment = declined.get_data(as_text=True)
    assert fragment.lstrip().startswith('<form id="pay_form"')
    assert 'aria-describedby="card_number-hint card_number-error"' in fragment
    paid = client.post(f"/donations/{donation_id}/pay", headers={"HX-Request": "true"},
                       data={"csrf_token": token.group(1), "card_number": "4242424242424242"})
    assert paid.status_code == 200
    assert paid.headers["HX-Redirect"] == f"/donations/{donation_id}/thanks"


def test_a_paid_donation_cannot_be_paid_again(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    webhooks: Webhooks,
) -> None:
    org = connected_org()
    donation_id = donor.give(org)
    donor.pay(donation_id)
    again = client.get(f"/donations/{donation_id}/pay")
    assert again.status_code == 303
    assert again.headers["Location"].endswith(f"/donations/{donation_id}/thanks")
    webhooks.deliver()
    assert len(entries_of(org.id)) == 2


def test_the_receipt_email_speaks_the_donors_language(
    app: Flask, client: FlaskClient, connected_org: Callable[..., Organisation],
    webhooks: Webhooks, outbox_folder: Path,
) -> None:
    org = connected_org(name="Tafel Nord")
    donor = Donor(client, "erika@donors.example.org", "Erika Spenderin")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9"
    try:
        assert "25,00\xa0€" in client.get(f"/orgs/{org.slug}/donate").get_data(as_text=True)
        donation_id = donor.give(org)
        donor.pay(donation_id)
    finally:
        del client.environ_base["HTTP_ACCEPT_LANGUAGE"]
    webhooks.deliver()
    assert donation(donation_id).locale == "de"
    send_receipts(app)
    [message] = messages_to(outbox_folder, donor.email)
    assert "25,00\xa0€" in message["Subject"]
    body = message.get_body(("plain",))
    assert body is not None and "Amount paid:         25,00\xa0€" in body.get_content()
