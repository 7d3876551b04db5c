"""Signed checkpoints: the published heads of every organisation's Merkle tree.

Written only by ``portal.services.checkpoints``; the database refuses changes
(migration 0004).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base


class Checkpoint(Base):
    """One period's platform checkpoint: the signed document and its key facts."""

    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    period: Mapped[date] = mapped_column(sa.Date, unique=True)
    timestamp: Mapped[str] = mapped_column(sa.String(20))
    previous_id: Mapped[str | None] = mapped_column(sa.ForeignKey("checkpoints.id"))
    entry_count: Mapped[int] = mapped_column(sa.BigInteger)
    organisation_count: Mapped[int] = mapped_column(sa.Integer)
    cumulative_hash: Mapped[str] = mapped_column(sa.String(80))
    key_name: Mapped[str] = mapped_column(sa.String(200))
    key_id: Mapped[str] = mapped_column(sa.String(8))
    #: The signed document exactly as published (docs/ledger-spec.md, Checkpoints).
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.CheckConstraint("id = 'chk_' || to_char(period, 'YYYY_MM_DD')", name="id"),
    )


class CheckpointOrganisation(Base):
    """One organisation's line in a checkpoint: its tree head and signed note."""

    __tablename__ = "checkpoint_organisations"

    checkpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("checkpoints.id"), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id"), primary_key=True
    )
    tree_size: Mapped[int] = mapped_column(sa.BigInteger)
    root_hash: Mapped[bytes] = mapped_column(sa.LargeBinary)
    head_hash: Mapped[str | None] = mapped_column(sa.String(80))
    #: Per currency: ``{"entries": n, "balance": sum, "volume": sum of |amount|}``.
    totals: Mapped[dict[str, dict[str, int]]] = mapped_column(JSONB)
    #: The C2SP signed note (tlog-checkpoint) of this organisation's tree head.
    note: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("tree_size >= 0", name="tree_size"),
        sa.CheckConstraint("octet_length(root_hash) = 32", name="root_hash"),
        sa.Index("ix_checkpoint_organisations_organisation_id_tree_size",
                 "organisation_id", "tree_size"),
    )
