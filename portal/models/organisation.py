"""Organisations and their funds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base

ORGANISATION_STATUSES = ("pending", "active", "suspended")
FUND_TYPES = ("general", "project", "restricted", "emergency")


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    legal_name: Mapped[str] = mapped_column(sa.String(300), default="")
    country: Mapped[str] = mapped_column(sa.String(2))
    default_currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    website: Mapped[str] = mapped_column(sa.String(300), default="")
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'active', 'suspended')", name="status"),
        sa.CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name="slug"),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name="country"),
        sa.CheckConstraint("default_currency ~ '^[A-Z]{3}$'", name="default_currency"),
    )

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class Fund(Base):
    __tablename__ = "funds"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(120))
    type: Mapped[str] = mapped_column(sa.String(16), default="project")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    goal_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    goal_currency: Mapped[str | None] = mapped_column(sa.String(3))
    archived_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.UniqueConstraint("organisation_id", "name"),
        sa.CheckConstraint(
            "type IN ('general', 'project', 'restricted', 'emergency')", name="type"
        ),
        sa.CheckConstraint(
            "(goal_amount IS NULL AND goal_currency IS NULL)"
            " OR (goal_amount > 0 AND goal_currency ~ '^[A-Z]{3}$')",
            name="goal",
        ),
        # Exactly one General Fund per organisation: unlabelled money lands there.
        sa.Index(
            "uq_funds_one_general", "organisation_id", unique=True,
            postgresql_where=sa.text("type = 'general'"),
        ),
    )

    @property
    def is_restricted(self) -> bool:
        return self.type == "restricted"


class Category(Base):
    """A spending category an organisation keeps: a stable slug and a label for people."""

    __tablename__ = "organisation_categories"

    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    slug: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(80))
    archived_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(sa.String(320))
    role: Mapped[str] = mapped_column(sa.String(16))
    invited_by: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    accepted_by: Mapped[str | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'finance', 'viewer', 'auditor')", name="role"),
    )


class OrganisationEvent(Base):
    """The organisation's activity log: approvals, rejections, member changes, settings."""

    __tablename__ = "organisation_events"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"))
    actor_id: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(sa.String(40))
    subject: Mapped[str] = mapped_column(sa.String(80), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.Index("ix_organisation_events_organisation_id_created_at", "organisation_id",
                 "created_at"),
    )
