"""Indexes for browsing and filtering public ledgers.

Every filter of the public ledger walks an index in sequence order, so a page is
read from the index whatever its depth; hidden entries have small partial indexes
of their own, used to keep running balances free of undisclosed amounts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The words the public may search for: payee, donor display name, description.
PUBLIC_TEXT = (
    "to_tsvector('simple'::regconfig, COALESCE(metadata->>'payee', '') || ' ' ||"
    " COALESCE(metadata->>'donor_name', '') || ' ' || COALESCE(metadata->>'description', ''))"
)

INDEXES = {
    "ix_ledger_entries_type": "(organisation_id, type, sequence)",
    "ix_ledger_entries_category": "(organisation_id, (metadata->>'category'), sequence)",
    "ix_ledger_entries_fund": "(organisation_id, (metadata->>'fund_id'), sequence)",
    "ix_ledger_entries_timestamp": "(organisation_id, timestamp, sequence)",
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON ledger_entries {columns}")
    # Amounts withheld for good (aggregated and internal entries never change level).
    op.execute(
        "CREATE INDEX ix_ledger_entries_withheld ON ledger_entries (organisation_id, sequence)"
        " INCLUDE (currency, amount)"
        " WHERE metadata->>'visibility' IN ('public_aggregated', 'internal_only')"
    )
    # Entries waiting for their disclosure date: few, and looked at often.
    op.execute(
        "CREATE INDEX ix_ledger_entries_delayed ON ledger_entries (organisation_id, sequence)"
        " WHERE metadata->>'visibility' = 'delayed_public'"
    )
    op.execute(
        f"CREATE INDEX ix_ledger_entries_public_text ON ledger_entries USING gin ({PUBLIC_TEXT})"
    )


def downgrade() -> None:
    for name in (*INDEXES, "ix_ledger_entries_withheld", "ix_ledger_entries_delayed",
                 "ix_ledger_entries_public_text"):
        op.execute(f"DROP INDEX {name}")
