"""Columns and indexes for browsing and filtering public ledgers.

The fields public filters look at are also kept as generated columns of their own,
computed by PostgreSQL from the hashed metadata (so they cannot disagree with it).
Comparisons of plain columns are "leakproof", which lets PostgreSQL use their indexes
under row-level security; comparisons inside jsonb are not, and would be evaluated
row by row. Every filter of the public ledger then walks an index in sequence order,
so any page is read from the index whatever its depth. (Word search has no index:
full-text matching is not leakproof, so under row-level security an index could not
be used; words are matched while walking the ledger in sequence order instead.)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENERATED = {
    "visibility": "text GENERATED ALWAYS AS (COALESCE(metadata->>'visibility', 'public_full'))"
                  " STORED",
    "reveal_at": "text GENERATED ALWAYS AS (metadata->>'reveal_at') STORED",
    "category": "text GENERATED ALWAYS AS (metadata->>'category') STORED",
    "fund_id": "text GENERATED ALWAYS AS (metadata->>'fund_id') STORED",
}

INDEXES = {
    "ix_ledger_entries_type": "(organisation_id, type, sequence)",
    "ix_ledger_entries_category": "(organisation_id, category, sequence)",
    "ix_ledger_entries_fund": "(organisation_id, fund_id, sequence)",
    "ix_ledger_entries_timestamp": "(organisation_id, timestamp, sequence)",
    # Entries waiting for their disclosure date: few, and looked at on every page.
    "ix_ledger_entries_scheduled": "(organisation_id, reveal_at, sequence)"
                                   " INCLUDE (currency, amount)"
                                   " WHERE visibility = 'delayed_public'",
}


def upgrade() -> None:
    for column, definition in GENERATED.items():
        op.execute(f"ALTER TABLE ledger_entries ADD COLUMN {column} {definition}")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON ledger_entries {columns}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
    for column in GENERATED:
        op.execute(f"ALTER TABLE ledger_entries DROP COLUMN {column}")
