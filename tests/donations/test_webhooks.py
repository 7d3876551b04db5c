"""``POST /webhooks/stripe``: Stripe's signature (any change to the body, the signature or
the timestamp is refused and writes nothing), known accounts only, each event applied once,
and the same final state whatever order succeeded, refunded and dispute events come in."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from portal.extensions import db
from portal.models import DonationPayment, Organisation, StripeEvent
from portal.services import donations, ledger, payments, stripe_accounts
from portal.stripe_simulator import signature_header
from tests.donations.conftest import (
    DECLINED_CARD,
    GOOD_CARD,
    Webhooks,
    donation,
    post_webhook,
)
from tests.stripe_simulator.conftest import WEBHOOK_SECRET


def give(org: Organisation, *, amount: int = 5000, card: str = GOOD_CARD) -> str:
    """A one-time gift made through the services (the pages are tested elsewhere)."""
    general = donations.donation_options(org.id).funds[0].id
    donation_id = donations.start_donation(donations.DonorChoices(
        organisation_id=org.id, fund_id=general, gift=amount, currency="EUR",
        frequency="one_time", cover_fees=False, donor_name="Grace Giver",
        donor_email="grace@donors.example.org", show_name=True))
    with contextlib.suppress(payments.CardDeclined):  # a refused card is part of the story
        donations.pay_with_test_card(donation_id, card, "http://portal.test/thanks")
    return donation_id


def events_of(org_id: str) -> list[StripeEvent]:
    return list(db.session.scalars(sa.select(StripeEvent)
                                   .where(StripeEvent.organisation_id == org_id)))


def state_of(org_id: str, donation_id: str) -> dict[str, Any]:
    """Everything the webhooks decide, in a form that does not depend on arrival order."""
    entries = sorted((entry.type, entry.amount, entry.currency)
                     for entry in ledger.iter_entries(org_id))
    payment = db.session.scalars(sa.select(DonationPayment).where(
        DonationPayment.donation_id == donation_id).execution_options(
        populate_existing=True)).one()
    verified = ledger.verify_chain(org_id)
    return {"entries": entries, "donation": donation(donation_id).status,
            "payment": (payment.status, payment.amount_refunded, payment.dispute_status),
            "balances": ledger.balances(org_id), "valid": verified.valid}


# --------------------------------------------------------------------------- signatures


def signed_event(webhooks: Webhooks, org: Organisation) -> tuple[bytes, str]:
    """The body and signature of a real ``payment_intent.succeeded`` of ``org``."""
    give(org)
    [(_, body, headers)] = [found for found in webhooks.collect()
                            if found[0] == "payment_intent.succeeded"]
    return body, headers["Stripe-Signature"]


def nothing_written(org: Organisation) -> bool:
    return events_of(org.id) == [] and list(ledger.iter_entries(org.id)) == []


@st.composite
def tampering(draw: st.DrawFn, body: bytes, header: str) -> tuple[bytes, str]:
    stamp, signature = (part.split("=", 1)[1] for part in header.split(","))
    part = draw(st.sampled_from(["body", "signature", "timestamp"]))
    if part == "body":
        at = draw(st.integers(0, len(body)))
        cut = draw(st.integers(0, 4))
        changed = body[:at] + draw(st.binary(max_size=4)) + body[at + cut:]
        assume(changed != body)
        return changed, header
    if part == "signature":
        forged = draw(st.one_of(
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
            st.text(alphabet="0123456789abcdefABCDEF=-_ ", max_size=80)))
        assume(forged != signature)
        return body, f"t={stamp},v1={forged}"
    moved = draw(st.integers(-10**6, 10**6).filter(lambda delta: delta != 0))
    return body, f"t={int(stamp) + moved},v1={signature}"


def test_any_change_to_body_signature_or_timestamp_is_refused_and_writes_nothing(
    client: FlaskClient, connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    body, header = signed_event(webhooks, org)

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(st.data())
    def check(data: st.DataObject) -> None:
        changed_body, changed_header = data.draw(tampering(body, header))
        response = client.post("/webhooks/stripe", data=changed_body,
                               headers={"Stripe-Signature": changed_header,
                                        "Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.get_json()["received"] is False
        assert nothing_written(org)

    check()
    for missing in ({}, {"Stripe-Signature": ""}, {"Stripe-Signature": "t=1"}):
        assert client.post("/webhooks/stripe", data=body, headers=missing).status_code == 400
    assert nothing_written(org)
    # The untouched delivery is accepted: the refusals above were the tampering's doing.
    accepted = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
    assert accepted.status_code == 200
    assert [entry.type for entry in ledger.iter_entries(org.id)] == ["donation_received", "fee"]


def test_timestamps_more_than_five_minutes_away_are_refused(
    client: FlaskClient, connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    body, _ = signed_event(webhooks, org)
    now = int(time.time())
    for moment in (now - 301, now + 301, now + 3600):
        header = signature_header(body, WEBHOOK_SECRET, timestamp=moment)
        refused = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
        assert refused.status_code == 400, moment
    assert nothing_written(org)
    wrong_secret = signature_header(body, "whsec_not_ours", timestamp=now)
    assert client.post("/webhooks/stripe", data=body,
                       headers={"Stripe-Signature": wrong_secret}).status_code == 400
    assert nothing_written(org)
    recent = signature_header(body, WEBHOOK_SECRET, timestamp=now - 290)
    assert client.post("/webhooks/stripe", data=body,
                       headers={"Stripe-Signature": recent}).status_code == 200


def test_events_of_unknown_accounts_are_refused_and_platform_events_ignored(
    client: FlaskClient, connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    body, _ = signed_event(webhooks, org)
    event = json.loads(body)
    stranger = json.dumps({**event, "id": "evt_stranger", "account": "acct_nobodyknows"}).encode()
    refused = post_webhook(client, stranger, {
        "Stripe-Signature": signature_header(stranger, WEBHOOK_SECRET)})
    assert refused.status_code == 400
    assert "acct_nobodyknows" in refused.get_json()["error"]
    platform = json.dumps({**event, "id": "evt_platform", "account": None}).encode()
    ignored = post_webhook(client, platform, {
        "Stripe-Signature": signature_header(platform, WEBHOOK_SECRET)})
    assert ignored.status_code == 200
    assert ignored.get_json()["outcome"].startswith("ignored")
    assert nothing_written(org)


def test_each_event_is_applied_once_and_other_kinds_are_ignored(
    client: FlaskClient, connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    give(org)
    collected = webhooks.collect()
    outcomes: dict[str, list[str]] = {}
    for kind, body, headers in collected * 3:
        response = post_webhook(client, body, headers)
        assert response.status_code == 200
        outcomes.setdefault(kind, []).append(response.get_json()["outcome"])
    assert outcomes["payment_intent.succeeded"] == ["recorded", "duplicate", "duplicate"]
    assert outcomes["payment_intent.created"] == ["ignored", "duplicate", "duplicate"]
    assert [entry.type for entry in ledger.iter_entries(org.id)] == ["donation_received", "fee"]
    recorded = {event.type: event.outcome for event in events_of(org.id)}
    assert recorded["charge.succeeded"] == "ignored"
    assert len(events_of(org.id)) == len(collected)
    assert all(event.processed_at is not None for event in events_of(org.id))


def test_a_failure_reported_after_the_success_changes_nothing(
    client: FlaskClient, connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    donation_id = give(org, card=DECLINED_CARD)
    assert donation(donation_id).status == "failed"
    donations.pay_with_test_card(donation_id, GOOD_CARD, "http://portal.test/thanks")
    assert set(webhooks.deliver("reverse")) == {200}  # success first, then the failure
    assert donation(donation_id).status == "succeeded"
    assert [entry.type for entry in ledger.iter_entries(org.id)] == ["donation_received", "fee"]


def test_account_updates_keep_the_onboarding_status(
    client: FlaskClient, create_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = create_org()
    stripe_accounts.connect_stripe(org.id, "http://portal.test/back", "http://portal.test/again")
    status = stripe_accounts.stripe_status(org.id)
    assert status.connected and not status.charges_enabled
    assert status.account_id is not None
    webhooks.simulator.control.complete_onboarding(status.account_id)
    assert stripe_accounts.stripe_status(org.id).charges_enabled is False
    assert set(webhooks.deliver()) == {200}
    updated = stripe_accounts.stripe_status(org.id)
    assert (updated.charges_enabled, updated.payouts_enabled, updated.details_submitted) == (
        True, True, True)
    assert donations.donate_state(org.id).can_donate


# --------------------------------------------------------------------------- every order

SCENARIO = ("payment_intent.succeeded", "charge.refunded", "charge.dispute.created",
            "charge.dispute.closed")
EXPECTED_ENTRIES = sorted([
    ("donation_received", 5000, "EUR"), ("fee", -100, "EUR"),  # 1.5 % + 0.25
    ("refund_issued", -1000, "EUR"),
    ("dispute_opened", -4000, "EUR"), ("fee", -2000, "EUR"),  # the dispute fee
    ("dispute_won", 4000, "EUR"),
])


@pytest.mark.parametrize("order", list(itertools.permutations(SCENARIO)),
                         ids=lambda order: "-".join(kind.split(".")[-1] for kind in order))
def test_succeeded_refunded_and_dispute_events_end_the_same_in_every_order(
    client: FlaskClient, connected_org: Callable[..., Organisation], webhooks: Webhooks,
    order: tuple[str, ...],
) -> None:
    org = connected_org()
    account = stripe_accounts.stripe_status(org.id).account_id
    assert account is not None
    donation_id = give(org, amount=5000)
    intent = payments.retrieve_payment_intent(account, donation(donation_id).payment_intent_id
                                              or "")
    assert intent.charge_id is not None
    payments.create_refund(account, payment_intent_id=intent.id, amount=1000,
                           idempotency_key=f"test-refund-{donation_id}")
    dispute = webhooks.simulator.control.open_dispute(intent.charge_id, amount=4000)
    webhooks.simulator.control.close_dispute(dispute["id"], "won")

    by_type = {kind: [event for event in webhooks.held() if event["type"] == kind]
               for kind in SCENARIO}
    assert all(len(found) == 1 for found in by_type.values()), by_type
    collected = webhooks.collect([by_type[kind][0]["event"] for kind in order])
    for _, body, headers in collected + collected:  # and every event twice
        assert post_webhook(client, body, headers).status_code == 200
    assert state_of(org.id, donation_id) == {
        "entries": EXPECTED_ENTRIES, "donation": "partially_refunded",
        "payment": ("partially_refunded", 1000, "won"),
        "balances": {"EUR": 5000 - 100 - 1000 - 4000 - 2000 + 4000}, "valid": True,
    }
