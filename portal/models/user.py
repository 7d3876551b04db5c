"""People and what they may do in each organisation."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base

ROLES = ("owner", "admin", "finance", "viewer", "auditor")


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320))
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    security_stamp: Mapped[str] = mapped_column(sa.String(64))
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    email_confirmed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.Index("uq_users_email_lower", sa.func.lower(sa.column("email")), unique=True),
    )


class Membership(Base):
    __tablename__ = "memberships"

    organisation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'finance', 'viewer', 'auditor')", name="role"
        ),
    )
