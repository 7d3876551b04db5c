"""Expenses waiting for a second member's approval before they reach the ledger."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base

EXPENSE_STATUSES = ("submitted", "approved", "rejected", "withdrawn")
RECEIPT_TYPES = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}


class Expense(Base):
    __tablename__ = "expenses"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    submitted_by: Mapped[str] = mapped_column(sa.ForeignKey("users.id"))
    #: Positive, in minor units; the ledger entry carries it negated.
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    fund_id: Mapped[str] = mapped_column(sa.ForeignKey("funds.id"))
    category: Mapped[str] = mapped_column(sa.String(64))
    payee: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.String(2000), default="")
    spent_on: Mapped[date] = mapped_column(sa.Date)
    visibility: Mapped[str] = mapped_column(sa.String(24), default="public_full")
    reveal_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    receipt_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    receipt_name: Mapped[str | None] = mapped_column(sa.String(200))
    receipt_mime: Mapped[str | None] = mapped_column(sa.String(40))
    receipt_size: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="submitted")
    decided_by: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    rejection_reason: Mapped[str | None] = mapped_column(sa.String(1000))
    ledger_entry_id: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.Index("ix_expenses_organisation_id_status", "organisation_id", "status"),
        sa.CheckConstraint("amount > 0", name="amount"),
        sa.CheckConstraint(
            "status IN ('submitted', 'approved', 'rejected', 'withdrawn')", name="status"),
        # Four eyes, in the database too: nobody decides on their own expense.
        sa.CheckConstraint("decided_by IS NULL OR decided_by <> submitted_by",
                           name="four_eyes"),
        sa.CheckConstraint("status <> 'rejected' OR length(rejection_reason) > 0",
                           name="rejection_reason"),
        sa.CheckConstraint("status <> 'approved' OR ledger_entry_id IS NOT NULL",
                           name="approved_entry"),
    )
