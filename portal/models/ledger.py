"""The ledger's tables: entries, one head per organisation, and running totals.

Entries are written only by ``portal.services.ledger``; the database refuses
updates and deletes and keeps heads and totals itself (see the first migration).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base

#: Entry type → the sign its amount must have: +1 money in, -1 money out,
#: 0 exactly zero, None either way (never zero).
ENTRY_TYPES: dict[str, int | None] = {
    "donation_received": +1,
    "fee": -1,
    "expense": -1,
    "transfer_in": +1,
    "transfer_out": -1,
    "refund_issued": -1,
    "donation_reversed": -1,
    "adjustment": None,
    "expense_recategorized": 0,
    "dispute_opened": -1,
    "dispute_won": +1,
}

VISIBILITY_LEVELS = ("public_full", "public_aggregated", "delayed_public", "internal_only")
#: Levels whose amounts are never shown entry by entry (only in aggregate).
WITHHELD_LEVELS = frozenset({"public_aggregated", "internal_only"})


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    entry_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    # Not a foreign key: the ledger's trigger checks it (see the first migration).
    organisation_id: Mapped[str] = mapped_column(sa.String(40))
    sequence: Mapped[int] = mapped_column(sa.BigInteger)
    timestamp: Mapped[str] = mapped_column(sa.String(20))
    type: Mapped[str] = mapped_column(sa.String(32))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    # "metadata" is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    prev_entry_hash: Mapped[str | None] = mapped_column(sa.String(80))
    entry_hash: Mapped[str] = mapped_column(sa.String(80))
    balance_after: Mapped[int] = mapped_column(sa.BigInteger)
    withheld_after: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))

    __table_args__ = (
        sa.UniqueConstraint("organisation_id", "sequence"),
        sa.Index(
            "uq_ledger_entries_idempotency", "organisation_id", "idempotency_key",
            unique=True, postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        ),
        # Browsing indexes; the expression and partial ones live in migration 0002.
        sa.Index("ix_ledger_entries_type", "organisation_id", "type", "sequence"),
        sa.Index("ix_ledger_entries_timestamp", "organisation_id", "timestamp", "sequence"),
    )

    @property
    def visibility(self) -> str:
        return str(self.meta.get("visibility", "public_full"))


class LedgerHead(Base):
    __tablename__ = "ledger_heads"

    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    sequence: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    entry_hash: Mapped[str | None] = mapped_column(sa.String(80))
    timestamp: Mapped[str | None] = mapped_column(sa.String(20))
    #: Balance per currency after the head entry, e.g. ``{"EUR": 51300}``.
    balances: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
    #: The withheld part of each balance (see ``LedgerEntry.withheld_after``).
    withheld: Mapped[dict[str, int]] = mapped_column(JSONB, default=dict)
    updated_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


class LedgerTotal(Base):
    """Net amount and entry count per organisation, currency, type, category, fund, visibility.

    Missing categories and funds are stored as ``''`` so they can be part of the key.
    A recategorization moves an expense's amount and count between category rows.
    """

    __tablename__ = "ledger_totals"

    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(sa.String(3), primary_key=True)
    entry_type: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    category: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    fund_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    visibility: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    entry_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
