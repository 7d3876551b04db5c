"""Donations: an organisation's connected Stripe account, gifts, their payments, and the
Stripe events the portal has applied (migration 0005)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base

DONATION_FREQUENCIES = ("one_time", "monthly")
#: ``pending`` until paid; one-time gifts then follow their payment, monthly gifts are
#: ``active`` until ``canceled``.
DONATION_STATUSES = ("pending", "succeeded", "failed", "partially_refunded", "refunded",
                     "disputed", "dispute_lost", "active", "canceled")
PAYMENT_STATUSES = ("succeeded", "partially_refunded", "refunded", "disputed", "dispute_lost")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class OrganisationStripeAccount(Base):
    """The Stripe account an organisation takes donations with (direct charges)."""

    __tablename__ = "organisation_stripe_accounts"

    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True)
    stripe_account_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    charges_enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    payouts_enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    details_submitted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    #: What Stripe still needs to know before the account can take payments.
    requirements_due: Mapped[list[str]] = mapped_column(
        JSONB, server_default=sa.text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now())

    __table_args__ = (
        sa.CheckConstraint("stripe_account_id LIKE 'acct\\_%'", name="account_id"),
    )


class Donation(Base):
    """One gift as the donor set it up: once, or every month until cancelled."""

    __tablename__ = "donations"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    fund_id: Mapped[str] = mapped_column(sa.ForeignKey("funds.id"))
    frequency: Mapped[str] = mapped_column(sa.String(16))
    #: What is charged each time, in minor units: the gift plus ``fee_covered``.
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    cover_fees: Mapped[bool] = mapped_column(sa.Boolean)
    fee_covered: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    donor_name: Mapped[str] = mapped_column(sa.String(200))
    #: Private: never in the ledger, never on a public page.
    donor_email: Mapped[str] = mapped_column(sa.String(320))
    show_name: Mapped[bool] = mapped_column(sa.Boolean)
    message: Mapped[str] = mapped_column(sa.String(500), server_default="")
    show_message: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    #: The donor's language, for the receipt's numbers and dates.
    locale: Mapped[str] = mapped_column(sa.String(16), server_default="en")
    status: Mapped[str] = mapped_column(sa.String(24), server_default="pending")
    #: Stored before Stripe is first asked, so a retry never makes a second payment.
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    subscription_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    customer_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    failure_message: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now())
    completed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    canceled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_donations_organisation_id_created_at", "organisation_id", "created_at"),
        sa.CheckConstraint("id ~ '^don_[0-9a-f]{24}$'", name="id"),
        sa.CheckConstraint(_one_of("frequency", DONATION_FREQUENCIES), name="frequency"),
        sa.CheckConstraint(_one_of("status", DONATION_STATUSES), name="status"),
        sa.CheckConstraint("amount > 0", name="amount"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        sa.CheckConstraint("fee_covered >= 0 AND fee_covered < amount"
                           " AND (cover_fees OR fee_covered = 0)", name="fee_covered"),
        sa.CheckConstraint("length(btrim(donor_name)) > 0", name="donor_name"),
    )

    @property
    def is_monthly(self) -> bool:
        return self.frequency == "monthly"

    @property
    def public_name(self) -> str:
        """What the public ledger says about who gave."""
        return self.donor_name if self.show_name else "Anonymous"


class DonationPayment(Base):
    """One successful PaymentIntent of a donation and the ledger entries it became."""

    __tablename__ = "donation_payments"

    payment_intent_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    donation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("donations.id", ondelete="CASCADE"), index=True)
    #: The invoice of a monthly gift this payment paid.
    invoice_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    charge_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    #: Stripe's fee, in the currency of the account's balance.
    fee: Mapped[int] = mapped_column(sa.BigInteger)
    fee_currency: Mapped[str] = mapped_column(sa.String(3))
    amount_refunded: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    dispute_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    dispute_status: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(24))
    donation_entry_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    fee_entry_id: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    paid_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    receipt_sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now())

    __table_args__ = (
        sa.CheckConstraint(_one_of("status", PAYMENT_STATUSES), name="status"),
        sa.CheckConstraint("amount > 0", name="amount"),
        sa.CheckConstraint("fee >= 0", name="fee"),
        sa.CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount",
                           name="amount_refunded"),
    )


class StripeEvent(Base):
    """A Stripe event the portal has applied; each id is recorded once."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(sa.String(100))
    account: Mapped[str] = mapped_column(sa.String(255))
    #: When Stripe made the event.
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now())
    processed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: What the event did, for people reading the log ("recorded", "ignored", …).
    outcome: Mapped[str] = mapped_column(sa.String(200), server_default="")

    __table_args__ = (
        sa.Index("ix_stripe_events_organisation_id_received_at", "organisation_id",
                 "received_at"),
    )

