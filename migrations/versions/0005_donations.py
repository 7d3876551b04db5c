"""Donations: connected Stripe accounts, donations and their payments, and Stripe's events.

Stripe state lives beside the organisations, not in them. Every table is a tenant table
under forced row-level security, like those of 0003. The public may read which Stripe
account an organisation takes donations with (Stripe.js is given it anyway), but never a
donation: donations hold donors' email addresses. A donor's own pages (the thanks page,
the receipt) read one donation by its unguessable id, named in the transaction's
``app.donation`` setting; nothing else becomes visible that way.

Each Stripe event id is recorded once (``stripe_events``), and each PaymentIntent becomes
one payment row with one donation entry (``donation_payments``): the unique constraints
here, with the ledger's idempotency keys, make "only once" a database guarantee.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOW = sa.func.now()
DONATION_STATUSES = ("pending", "succeeded", "failed", "partially_refunded", "refunded",
                     "disputed", "dispute_lost", "active", "canceled")
PAYMENT_STATUSES = ("succeeded", "partially_refunded", "refunded", "disputed", "dispute_lost")

DONATION_SCOPE_FUNCTION = r"""
CREATE FUNCTION portal_donation() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('app.donation', true), '')
$$;
"""

TENANT = "(SELECT portal_platform()) OR organisation_id = ANY ((SELECT portal_orgs())::text[])"
POLICIES = f"""
ALTER TABLE organisation_stripe_accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE organisation_stripe_accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY organisation_stripe_accounts_tenant ON organisation_stripe_accounts
    USING ({TENANT}) WITH CHECK ({TENANT});
CREATE POLICY organisation_stripe_accounts_public_read ON organisation_stripe_accounts
    FOR SELECT USING (organisation_id = ANY ((SELECT portal_public_orgs())::text[]));

ALTER TABLE donations ENABLE ROW LEVEL SECURITY;
ALTER TABLE donations FORCE ROW LEVEL SECURITY;
CREATE POLICY donations_tenant ON donations USING ({TENANT}) WITH CHECK ({TENANT});
CREATE POLICY donations_by_id ON donations FOR SELECT
    USING (id = (SELECT portal_donation()));
CREATE POLICY donations_by_id_update ON donations FOR UPDATE
    USING (id = (SELECT portal_donation())) WITH CHECK (id = (SELECT portal_donation()));

ALTER TABLE donation_payments ENABLE ROW LEVEL SECURITY;
ALTER TABLE donation_payments FORCE ROW LEVEL SECURITY;
CREATE POLICY donation_payments_tenant ON donation_payments
    USING ({TENANT}) WITH CHECK ({TENANT});
CREATE POLICY donation_payments_by_donation ON donation_payments FOR SELECT
    USING (donation_id = (SELECT portal_donation()));

ALTER TABLE stripe_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe_events FORCE ROW LEVEL SECURITY;
CREATE POLICY stripe_events_tenant ON stripe_events USING ({TENANT}) WITH CHECK ({TENANT});
"""

#: What the application role may do, table by table: nothing here is ever deleted.
APP_GRANTS = {
    "organisation_stripe_accounts": "SELECT, INSERT, UPDATE",
    "donations": "SELECT, INSERT, UPDATE",
    "donation_payments": "SELECT, INSERT, UPDATE",
    "stripe_events": "SELECT, INSERT, UPDATE",
}


def _organisation(table: str) -> "sa.Column[str]":
    return sa.Column("organisation_id", sa.String(40),
                     sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                   name=f"fk_{table}_organisation_id_organisations"),
                     nullable=False)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.create_table(
        "organisation_stripe_accounts",
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_organisation_stripe_accounts_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("stripe_account_id", sa.String(255), nullable=False),
        sa.Column("charges_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("payouts_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("details_submitted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("requirements_due", JSONB, nullable=False,
                  server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("stripe_account_id",
                            name="uq_organisation_stripe_accounts_stripe_account_id"),
        sa.CheckConstraint("stripe_account_id LIKE 'acct\\_%'",
                           name="ck_organisation_stripe_accounts_account_id"),
    )

    op.create_table(
        "donations",
        sa.Column("id", sa.String(40), primary_key=True),
        _organisation("donations"),
        sa.Column("fund_id", sa.String(40),
                  sa.ForeignKey("funds.id", name="fk_donations_fund_id_funds"), nullable=False),
        sa.Column("frequency", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("cover_fees", sa.Boolean, nullable=False),
        sa.Column("fee_covered", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("donor_name", sa.String(200), nullable=False),
        sa.Column("donor_email", sa.String(320), nullable=False),
        sa.Column("show_name", sa.Boolean, nullable=False),
        sa.Column("message", sa.String(500), nullable=False, server_default=""),
        sa.Column("show_message", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("locale", sa.String(16), nullable=False, server_default="en"),
        sa.Column("status", sa.String(24), nullable=False, server_default="pending"),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("subscription_id", sa.String(255)),
        sa.Column("customer_id", sa.String(255)),
        sa.Column("failure_message", sa.String(500)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("canceled_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("idempotency_key", name="uq_donations_idempotency_key"),
        sa.UniqueConstraint("payment_intent_id", name="uq_donations_payment_intent_id"),
        sa.UniqueConstraint("subscription_id", name="uq_donations_subscription_id"),
        sa.UniqueConstraint("customer_id", name="uq_donations_customer_id"),
        sa.CheckConstraint("id ~ '^don_[0-9a-f]{24}$'", name="ck_donations_id"),
        sa.CheckConstraint(_in("frequency", ("one_time", "monthly")),
                           name="ck_donations_frequency"),
        sa.CheckConstraint(_in("status", DONATION_STATUSES), name="ck_donations_status"),
        sa.CheckConstraint("amount > 0", name="ck_donations_amount"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_donations_currency"),
        sa.CheckConstraint("fee_covered >= 0 AND fee_covered < amount"
                           " AND (cover_fees OR fee_covered = 0)",
                           name="ck_donations_fee_covered"),
        sa.CheckConstraint("length(btrim(donor_name)) > 0", name="ck_donations_donor_name"),
    )
    op.create_index("ix_donations_organisation_id_created_at", "donations",
                    ["organisation_id", "created_at"])

    op.create_table(
        "donation_payments",
        sa.Column("payment_intent_id", sa.String(255), primary_key=True),
        _organisation("donation_payments"),
        sa.Column("donation_id", sa.String(40),
                  sa.ForeignKey("donations.id", ondelete="CASCADE",
                                name="fk_donation_payments_donation_id_donations"),
                  nullable=False),
        sa.Column("invoice_id", sa.String(255)),
        sa.Column("charge_id", sa.String(255), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("fee_currency", sa.String(3), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("dispute_id", sa.String(255)),
        sa.Column("dispute_status", sa.String(32)),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("donation_entry_id", sa.String(40), nullable=False),
        sa.Column("fee_entry_id", sa.String(40)),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipt_sent_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("invoice_id", name="uq_donation_payments_invoice_id"),
        sa.UniqueConstraint("charge_id", name="uq_donation_payments_charge_id"),
        sa.UniqueConstraint("dispute_id", name="uq_donation_payments_dispute_id"),
        sa.UniqueConstraint("donation_entry_id", name="uq_donation_payments_donation_entry_id"),
        sa.UniqueConstraint("fee_entry_id", name="uq_donation_payments_fee_entry_id"),
        sa.CheckConstraint(_in("status", PAYMENT_STATUSES), name="ck_donation_payments_status"),
        sa.CheckConstraint("amount > 0", name="ck_donation_payments_amount"),
        sa.CheckConstraint("fee >= 0", name="ck_donation_payments_fee"),
        sa.CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount",
                           name="ck_donation_payments_amount_refunded"),
    )
    op.create_index("ix_donation_payments_donation_id", "donation_payments", ["donation_id"])

    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(255), primary_key=True),
        _organisation("stripe_events"),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=NOW),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("ix_stripe_events_organisation_id_received_at", "stripe_events",
                    ["organisation_id", "received_at"])

    op.execute(DONATION_SCOPE_FUNCTION)
    op.execute(POLICIES)
    _grant_to_app_role()


def _grant_to_app_role() -> None:
    from flask import current_app
    from sqlalchemy.engine import make_url

    url = current_app.config.get("SQLALCHEMY_DATABASE_URI")
    role = make_url(url).username if url else None
    bind = op.get_bind()
    current = bind.execute(sa.text("SELECT current_user")).scalar_one()
    exists = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                          {"r": role}).scalar()
    if not role or role == current or not exists:
        return
    quoted = '"' + role.replace('"', '""') + '"'
    for table, privileges in APP_GRANTS.items():
        op.execute(f"GRANT {privileges} ON {table} TO {quoted}")


def downgrade() -> None:
    for table in ("stripe_events", "donation_payments", "donations",
                  "organisation_stripe_accounts"):
        op.drop_table(table)
    op.execute("DROP FUNCTION portal_donation()")
