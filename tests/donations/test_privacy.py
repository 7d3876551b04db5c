"""Donations hold donors' email addresses: the public never reads them, and a donor's own
pages see exactly their one donation, enforced by PostgreSQL's row-level security."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from portal.embedded import APP_ROLE
from portal.extensions import db
from portal.models import Donation, DonationPayment, Organisation, OrganisationStripeAccount
from portal.services import donations, tenancy
from tests.donations.conftest import Webhooks
from tests.donations.test_webhooks import give


def visible(model: type[Donation | DonationPayment | OrganisationStripeAccount],
            organisation_id: str) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)
                                 .where(model.organisation_id == organisation_id)) or 0)


def test_the_public_reads_stripe_accounts_but_never_donations(
    connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    give(org)
    webhooks.deliver()
    assert visible(Donation, org.id) == 1
    tenancy.public_reading()
    assert visible(OrganisationStripeAccount, org.id) == 1
    assert visible(Donation, org.id) == 0
    assert visible(DonationPayment, org.id) == 0


def test_a_donors_page_sees_their_donation_and_no_other(
    connected_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = connected_org()
    mine, theirs = give(org), give(org)
    webhooks.deliver()
    tenancy.public_reading()
    donations.open_donation(mine)
    seen = set(db.session.scalars(sa.select(Donation.id)))
    assert seen == {mine}
    assert set(db.session.scalars(sa.select(DonationPayment.donation_id))) == {mine}
    refused = db.session.execute(sa.update(Donation).where(Donation.id == theirs)
                                 .values(status="failed"))
    assert getattr(refused, "rowcount", None) == 0
    donations.close_donation()
    assert set(db.session.scalars(sa.select(Donation.id))) == set()
    with pytest.raises(donations.DonationNotFound):
        donations.open_donation("don_not-an-id")


@pytest.mark.parametrize(("table", "privilege", "allowed"), [
    ("donations", "DELETE", False), ("donations", "UPDATE", True),
    ("donation_payments", "DELETE", False), ("stripe_events", "DELETE", False),
    ("stripe_events", "INSERT", True), ("organisation_stripe_accounts", "DELETE", False),
])
@pytest.mark.usefixtures("app")
def test_the_portal_role_never_deletes_donation_records(
    table: str, privilege: str, allowed: bool,
) -> None:
    assert db.session.scalar(sa.text("SELECT has_table_privilege(:r, :t, :p)"),
                             {"r": APP_ROLE, "t": table, "p": privilege}) is allowed
