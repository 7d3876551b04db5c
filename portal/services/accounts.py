"""Accounts: registration, password checks, security stamps and the security log."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.ids import new_id
from portal.models import SecurityEvent, User
from portal.services import passwords
from portal.services.errors import Conflict, DomainError

EMAIL_MAX = 320


class InvalidCredentials(DomainError):
    status_code = 401


class InvalidAccount(DomainError):
    status_code = 422


def normalise_email(email: str) -> str:
    """Trimmed, with the domain lower-cased; refuse what cannot be an address."""
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or len(email) > EMAIL_MAX or " " in email:
        raise InvalidAccount("Enter a valid email address, like name@example.org.",
                             field="email")
    return f"{local}@{domain.lower()}"


def new_security_stamp() -> str:
    return secrets.token_urlsafe(32)


def find_by_email(email: str) -> User | None:
    return db.session.scalar(
        sa.select(User).where(sa.func.lower(User.email) == email.strip().lower()))


def register(email: str, password: str, display_name: str = "") -> User:
    """Create an account (unconfirmed until the emailed link is followed); commit."""
    email = normalise_email(email)
    passwords.check_strength(password, email=email)
    if find_by_email(email) is not None:
        raise Conflict("An account with this email address exists already. Sign in, or "
                       "reset the password if it is forgotten.", field="email")
    user = User(id=new_id("usr"), email=email, display_name=display_name.strip()[:200],
                password_hash=passwords.hash_password(password),
                security_stamp=new_security_stamp(), ip_binding="none",
                password_changed_at=datetime.now(UTC))
    db.session.add(user)
    db.session.flush()
    log(user.id, "account_created")
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User:
    """The account these credentials open; the same refusal whatever was wrong."""
    try:
        user = find_by_email(normalise_email(email))
    except InvalidAccount:
        user = None
    if user is None or not passwords.verify_password(
            user.password_hash if user else None, password):
        raise InvalidCredentials("That email address and password do not match an account.")
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def rotate_security_stamp(user: User, reason: str) -> None:
    """End every session of this person at their next request (flushes; caller commits)."""
    user.security_stamp = new_security_stamp()
    log(user.id, "security_stamp_rotated", reason=reason)


def log(user_id: str | None, event: str, *, ip: str = "", device: str = "",
        **details: Any) -> None:
    """Add to a person's security log (flushes; the caller's transaction commits it)."""
    db.session.add(SecurityEvent(user_id=user_id, event=event, ip=ip, device=device[:120],
                                 details=details))
    db.session.flush()


def make_platform_admin(email: str) -> User:
    user = find_by_email(email)
    if user is None:
        raise InvalidAccount(f"No account with the email address {email!r}.", field="email")
    user.is_platform_admin = True
    rotate_security_stamp(user, "made platform administrator")
    db.session.commit()
    return user
