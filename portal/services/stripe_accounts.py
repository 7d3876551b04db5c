"""Connected Stripe accounts: an organisation connects one through Stripe's hosted
onboarding (Account Links), and whether it may take payments is kept up to date from
Stripe (``account.updated``, or a refresh when the person comes back from onboarding).

Callers check who may connect an organisation (its owner); these use cases only need the
organisation in the request's scope.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from portal.extensions import db
from portal.models import Organisation, OrganisationStripeAccount
from portal.services import payments, tenancy
from portal.services.errors import DomainError, NotFound

log = logging.getLogger(__name__)


class OrganisationNotFound(NotFound):
    pass


class NotConnected(DomainError):
    """The organisation has no Stripe account yet."""

    status_code = 409


@dataclass(frozen=True)
class StripeStatus:
    """What the dashboard shows about an organisation's Stripe account."""

    connected: bool
    account_id: str | None = None
    charges_enabled: bool = False
    payouts_enabled: bool = False
    details_submitted: bool = False
    #: Stripe's names of the details it still needs (``external_account``, …).
    requirements_due: tuple[str, ...] = ()
    updated_at: datetime | None = None

    @property
    def can_take_payments(self) -> bool:
        return self.connected and self.charges_enabled


NOT_CONNECTED = StripeStatus(connected=False)


def _status(row: OrganisationStripeAccount | None) -> StripeStatus:
    if row is None:
        return NOT_CONNECTED
    return StripeStatus(True, row.stripe_account_id, row.charges_enabled, row.payouts_enabled,
                        row.details_submitted, tuple(str(item) for item in row.requirements_due),
                        row.updated_at)


def _row(organisation_id: str) -> OrganisationStripeAccount | None:
    return db.session.get(OrganisationStripeAccount, organisation_id,
                          populate_existing=True)


def stripe_status(organisation_id: str) -> StripeStatus:
    """The organisation's Stripe account as last heard from Stripe."""
    return _status(_row(organisation_id))


def connect_stripe(organisation_id: str, return_url: str, refresh_url: str) -> str:
    """The address of Stripe's onboarding for the organisation's account.

    The account is created once (an idempotency key names the organisation, so retries and
    two people clicking at once make one account) and its id stored; every call returns a
    fresh Account Link, which works once and for a few minutes. Stripe sends the person to
    ``return_url`` when done and to ``refresh_url`` when the link has expired.
    """
    row = _row(organisation_id)
    if row is None:
        organisation = db.session.get(Organisation, organisation_id)
        if organisation is None:
            raise OrganisationNotFound(f"no organisation {organisation_id!r}")
        website = organisation.website if organisation.website.startswith(
            ("https://", "http://")) else None
        account = payments.create_connected_account(
            country=organisation.country, email=None,
            idempotency_key=f"amply-connect-{organisation_id}",
            business_name=organisation.name, business_url=website,
            metadata={"organisation_id": organisation_id})
        db.session.execute(insert(OrganisationStripeAccount).values(
            organisation_id=organisation_id, stripe_account_id=account.id,
            charges_enabled=account.charges_enabled, payouts_enabled=account.payouts_enabled,
            details_submitted=account.details_submitted,
            requirements_due=list(account.requirements_due),
        ).on_conflict_do_nothing(index_elements=["organisation_id"]))
        db.session.commit()
        row = _row(organisation_id)
        assert row is not None
    link = payments.create_account_link(row.stripe_account_id, refresh_url=refresh_url,
                                        return_url=return_url)
    return link.url


def refresh_stripe_status(organisation_id: str) -> StripeStatus:
    """Ask Stripe for the account's state now (after onboarding, say) and keep it."""
    row = _row(organisation_id)
    if row is None:
        raise NotConnected("This organisation has not connected a Stripe account yet.")
    account = payments.retrieve_account(row.stripe_account_id)
    apply_account(organisation_id, account)
    db.session.commit()
    return stripe_status(organisation_id)


def apply_account(organisation_id: str, account: payments.ConnectedAccount) -> bool:
    """Store what Stripe says about the organisation's account; True if anything changed.

    Flushes; the caller commits (the webhook applies it with its event).
    """
    row = db.session.get(OrganisationStripeAccount, organisation_id, with_for_update=True,
                         populate_existing=True)
    if row is None or row.stripe_account_id != account.id:
        return False
    state = (account.charges_enabled, account.payouts_enabled, account.details_submitted,
             list(account.requirements_due))
    if state == (row.charges_enabled, row.payouts_enabled, row.details_submitted,
                 list(row.requirements_due)):
        return False
    (row.charges_enabled, row.payouts_enabled, row.details_submitted,
     row.requirements_due) = state
    row.updated_at = datetime.now(UTC)
    db.session.flush()
    log.info("Stripe account %s of %s: charges %s, payouts %s", account.id, organisation_id,
             account.charges_enabled, account.payouts_enabled)
    return True


def organisation_for_account(account_id: str) -> str | None:
    """Which organisation a connected account belongs to, whatever the request's scope.

    The one lookup a Stripe webhook makes before it knows whose event it carries; the
    caller then narrows its scope to that organisation.
    """
    with tenancy.scoped(tenancy.Scope(platform=True)):
        return db.session.scalar(
            sa.select(OrganisationStripeAccount.organisation_id)
            .where(OrganisationStripeAccount.stripe_account_id == account_id))
