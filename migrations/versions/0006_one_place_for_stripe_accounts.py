"""One place for an organisation's Stripe account: ``organisation_stripe_accounts``.

The first revision kept a ``stripe_account_id`` column on ``organisations``; the
connected account and its status now live in their own table (0005). Any account
id still in the old column moves there, and the column goes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT set_config('app.platform', 'on', true)")
    op.execute(
        "INSERT INTO organisation_stripe_accounts (organisation_id, stripe_account_id)"
        " SELECT id, stripe_account_id FROM organisations WHERE stripe_account_id IS NOT NULL"
        " ON CONFLICT (organisation_id) DO NOTHING"
    )
    op.execute("SELECT set_config('app.platform', '', true)")
    op.drop_constraint("uq_organisations_stripe_account_id", "organisations", type_="unique")
    op.drop_column("organisations", "stripe_account_id")


def downgrade() -> None:
    op.add_column("organisations", sa.Column("stripe_account_id", sa.String(64)))
    op.create_unique_constraint("uq_organisations_stripe_account_id", "organisations",
                                ["stripe_account_id"])
    op.execute("SELECT set_config('app.platform', 'on', true)")
    op.execute(
        "UPDATE organisations o SET stripe_account_id = s.stripe_account_id"
        " FROM organisation_stripe_accounts s WHERE s.organisation_id = o.id"
    )
    op.execute("SELECT set_config('app.platform', '', true)")
