"""A webhook storm on real commits: 100 payments, each of their events delivered 1 to 10
times, shuffled, by 16 senders at once. Exactly one gift and one fee per payment, never a
5xx, and a chain that still verifies."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Donation, DonationPayment, Organisation
from portal.services import ledger, tenancy
from portal.stripe_simulator import Simulator
from tests.conftest import run_in_threads
from tests.donations.conftest import Webhooks, connect, forget_receipt_jobs
from tests.donations.test_webhooks import give

PAYMENTS = 100
SENDERS = 16


@pytest.fixture
def storm_org(committed_donations_app: Flask, create_org: Callable[..., Organisation],
              held: Simulator, superuser_engine: sa.Engine) -> Iterator[Organisation]:
    org: Organisation = create_org(name="Storm Relief")
    connect(org.id, held)
    held.control.deliver_held(deliver=lambda body, headers: 200)
    yield org
    # The ledger is append-only, so the organisation stays, suspended; the rest goes.
    with superuser_engine.begin() as connection:
        for table in ("stripe_events", "donation_payments", "donations",
                      "organisation_stripe_accounts"):
            connection.execute(sa.text(f"DELETE FROM {table} WHERE organisation_id = :org"),
                               {"org": org.id})
        connection.execute(sa.text("UPDATE organisations SET status = 'suspended'"
                                   " WHERE id = :org"), {"org": org.id})


@pytest.mark.slow
def test_a_webhook_storm_records_each_payment_exactly_once(
    committed_donations_app: Flask, storm_org: Organisation, held: Simulator,
) -> None:
    org_id = storm_org.id
    donation_ids = [give(storm_org, amount=1000 + number) for number in range(PAYMENTS)]
    events = Webhooks(held, committed_donations_app.test_client()).collect()
    assert Counter(kind for kind, _, _ in events)["payment_intent.succeeded"] == PAYMENTS
    shuffler = random.Random(20261121)
    deliveries = [(body, headers) for _, body, headers in events
                  for _ in range(shuffler.randint(1, 10))]
    shuffler.shuffle(deliveries)
    statuses: list[int] = []

    def send(index: int) -> None:
        client: FlaskClient = committed_donations_app.test_client()
        for body, headers in deliveries[index::SENDERS]:
            statuses.append(client.post("/webhooks/stripe", data=body,
                                        headers=headers).status_code)

    try:
        assert run_in_threads(committed_donations_app, SENDERS, send) == []
    finally:
        forget_receipt_jobs(set(donation_ids))
    assert len(statuses) == len(deliveries)
    assert {status for status in statuses if not 200 <= status < 300} == set()

    db.session.remove()
    tenancy.platform()
    entries = list(ledger.iter_entries(org_id))
    kinds = Counter(entry.type for entry in entries)
    assert kinds == {"donation_received": PAYMENTS, "fee": PAYMENTS}
    intents = Counter(entry.metadata["stripe_payment_intent_id"] for entry in entries)
    assert set(intents.values()) == {2}
    assert sorted(entry.amount for entry in entries if entry.type == "donation_received") == \
        [1000 + number for number in range(PAYMENTS)]
    verified = ledger.verify_chain(org_id)
    assert verified.valid, verified.detail
    assert verified.entry_count == 2 * PAYMENTS
    statuses_now = set(db.session.scalars(sa.select(Donation.status)
                                          .where(Donation.organisation_id == org_id)))
    assert statuses_now == {"succeeded"}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DonationPayment)
                             .where(DonationPayment.organisation_id == org_id)) == PAYMENTS
