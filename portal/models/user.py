"""People and what they may do in each organisation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import Base

ROLES = ("owner", "admin", "finance", "viewer", "auditor")
IP_BINDINGS = ("none", "subnet", "strict")


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320))
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    security_stamp: Mapped[str] = mapped_column(sa.String(64))
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    email_confirmed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    password_changed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: The TOTP secret, encrypted with a key derived from SECRET_KEY.
    mfa_secret: Mapped[str | None] = mapped_column(sa.String(255))
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: The last TOTP time step accepted: a code works once.
    mfa_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    ip_binding: Mapped[str] = mapped_column(sa.String(8), default="none")
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (
        sa.Index("uq_users_email_lower", sa.func.lower(sa.column("email")), unique=True),
        sa.CheckConstraint("ip_binding IN ('none', 'subnet', 'strict')", name="ip_binding"),
    )

    @property
    def mfa_enabled(self) -> bool:
        return self.mfa_enabled_at is not None

    # What Flask-Login asks of a signed-in person.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.password_hash is not None

    def get_id(self) -> str:
        return self.id


class RecoveryCode(Base):
    """A single-use MFA recovery code, stored as a SHA-256 digest."""

    __tablename__ = "user_recovery_codes"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    used_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class SecurityEvent(Base):
    """What happened to an account: sign-ins, failures, revoked sessions, MFA changes."""

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(sa.String(40))
    ip: Mapped[str] = mapped_column(sa.String(64), default="")
    device: Mapped[str] = mapped_column(sa.String(120), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )

    __table_args__ = (sa.Index("ix_security_events_user_id_created_at", "user_id", "created_at"),)


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
