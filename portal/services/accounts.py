"""Accounts: signing up, confirming addresses, passwords, sessions and the security log.

Use cases take ids and plain values and commit their own work. A change to a
password, an address or the sessions rotates the person's security stamp, which
ends every other session at its next request; the caller's own session (named by
``keep_session``) is kept and adopts the returned stamp. The emailed links carry
signed, expiring tokens; a reset or address-change link also carries a fingerprint
of the password hash and stamp, so it stops working once used.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from portal import sessions
from portal.extensions import db
from portal.ids import new_id
from portal.models import SecurityEvent, User
from portal.models.user import IP_BINDINGS
from portal.services import mail, passwords, tokens
from portal.services.errors import Conflict, DomainError, NotFound

EMAIL_MAX = 320
CONFIRM_MAX_AGE = 48 * 3600
RESET_MAX_AGE = 3600
EMAIL_CHANGE_MAX_AGE = 24 * 3600
LOG_PAGE_SIZE = 20


class InvalidCredentials(DomainError):
    status_code = 401


class InvalidAccount(DomainError):
    status_code = 422


class EmailNotConfirmed(DomainError):
    """The password was right, but the address has not been confirmed yet."""

    status_code = 403


class WrongPassword(DomainError):
    """Re-authentication before a sensitive change failed."""

    status_code = 422


# --------------------------------------------------------------------------- basics


def normalise_email(email: str) -> str:
    """Trimmed, with the domain lower-cased; refuse what cannot be an address."""
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or len(email) > EMAIL_MAX or " " in email:
        raise InvalidAccount("Enter a valid email address, like name@example.org.",
                             field="email")
    return f"{local}@{domain.lower()}"


def rate_limit_key(email: str) -> str:
    """The name an address is counted under by rate limits, however it was typed."""
    try:
        return normalise_email(email).lower()
    except InvalidAccount:
        return (email or "").strip().lower()[:EMAIL_MAX] or "(empty)"


def new_security_stamp() -> str:
    return secrets.token_urlsafe(32)


def find_by_email(email: str) -> User | None:
    return db.session.scalar(
        sa.select(User).where(sa.func.lower(User.email) == email.strip().lower()))


def _user(user_id: str) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("There is no such account.")
    return user


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
    try:
        db.session.flush()
    except sa.exc.IntegrityError as exc:  # the same address, registered a moment ago
        db.session.rollback()
        raise Conflict("An account with this email address exists already.",
                       field="email") from exc
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


def _end_other_sessions(user_id: str, keep_session: str | None) -> None:
    """Drop the other sessions from the registry now (their stamp refuses them anyway)."""
    sessions.end_all_sessions(current_app._get_current_object(),  # type: ignore[attr-defined]
                              user_id, keep=keep_session)


def verify_current_password(user: User, password: str, *, field: str, ip: str = "") -> None:
    """Re-authentication before a sensitive change; a failure is logged and committed."""
    if not passwords.verify_password(user.password_hash, password):
        log(user.id, "password_check_failed", ip=ip)
        db.session.commit()
        raise WrongPassword("That is not your current password.", field=field)


def _fingerprint(user: User) -> str:
    """Changes whenever the password or the stamp changes: links die once used."""
    material = f"{user.password_hash or ''}\n{user.security_stamp}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


# --------------------------------------------------------------------------- emails


def _public_link(endpoint: str, **values: Any) -> str:
    """An absolute link on the public address (never the Host header of a request)."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                       url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)


def _send(to: str, subject: str, *paragraphs: str) -> None:
    name = current_app.config["PORTAL_NAME"]
    body = "\n\n".join(("Hello,", *paragraphs, f"— {name}")) + "\n"
    mail.send(to, f"{subject} · {name}", body)


def _send_confirmation(user: User) -> None:
    token = tokens.make("confirm-email", {"u": user.id, "e": user.email})
    _send(user.email, "Confirm your email address",
          f"Please confirm that this is your address by opening this link:\n"
          f"{_public_link('account.confirm_email', token=token)}",
          "The link works for 48 hours. If you did not create an account, ignore this "
          "message: nothing will happen.")


def _send_account_exists(email: str) -> None:
    _send(email, "You already have an account",
          "Someone (perhaps you) tried to create an account with this email address, "
          "but an account with it exists already.",
          f"Sign in: {_public_link('account.login')}\n"
          f"Forgotten the password? Choose a new one: "
          f"{_public_link('account.forgot_password')}",
          "If this was not you, you can ignore this message: your account is unchanged.")


def _send_no_account(email: str, asked_for: str) -> None:
    _send(email, "No account with this address",
          f"Someone (perhaps you) asked for {asked_for} for this email address, but there "
          "is no account with it.",
          f"To create one: {_public_link('account.register')}",
          "If this was not you, you can ignore this message.")


def send_notice(email: str, subject: str, what: str) -> None:
    """Tell the person about a change to their account, and what to do if it was not them."""
    _send(email, subject, what,
          "If this was you, there is nothing to do. If it was not, reset your password now "
          f"({_public_link('account.forgot_password')}) and check the security page of "
          f"your account ({_public_link('account.security')}).")


# --------------------------------------------------------------------------- signing up


def sign_up(email: str, password: str, display_name: str) -> str:
    """Create an account and mail its confirmation link; commit; return the address.

    An address that has an account already gets a note saying so instead, and the
    answer to the visitor is the same: nobody learns which addresses have accounts.
    """
    email = normalise_email(email)
    passwords.check_strength(password, email=email)
    existing = find_by_email(email)
    if existing is None:
        try:
            _send_confirmation(register(email, password, display_name))
        except Conflict:
            existing = find_by_email(email)
        else:
            return email
    if existing is not None:
        log(existing.id, "sign_up_repeated")
        db.session.commit()
        _send_account_exists(existing.email)
    return email


def resend_confirmation(email: str) -> str:
    """Mail the confirmation link again (or say why there is none); commit; return the address."""
    email = normalise_email(email)
    user = find_by_email(email)
    if user is None or not user.is_active:
        _send_no_account(email, "a new confirmation link")
    elif user.email_confirmed_at is not None:
        _send(user.email, "Your address is confirmed already",
              "Someone (perhaps you) asked for a new confirmation link, but this address "
              f"is confirmed already. Sign in: {_public_link('account.login')}")
    else:
        log(user.id, "confirmation_resent")
        db.session.commit()
        _send_confirmation(user)
    return email


def confirm_email(token: str) -> None:
    """Mark the address of a confirmation link as confirmed; commit."""
    payload = tokens.read("confirm-email", token, max_age=CONFIRM_MAX_AGE)
    user = db.session.get(User, str(payload.get("u", "")))
    if user is None or user.email.lower() != str(payload.get("e", "")).lower():
        raise tokens.InvalidToken("This link is for an address that is no longer this "
                                  "account's. Sign in to see your current address.")
    if user.email_confirmed_at is None:
        user.email_confirmed_at = datetime.now(UTC)
        log(user.id, "email_confirmed")
        db.session.commit()


# --------------------------------------------------------------------------- signing in


def check_sign_in(email: str, password: str, *, ip: str, device: str) -> User:
    """The account these credentials open, if it may sign in; failures are logged."""
    try:
        user = authenticate(email, password)
    except InvalidCredentials:
        known = None
        with contextlib.suppress(InvalidAccount):
            known = find_by_email(normalise_email(email))
        log(known.id if known else None, "sign_in_failed", ip=ip, device=device,
            **({} if known else {"email": email.strip()[:EMAIL_MAX]}))
        db.session.commit()
        raise
    if user.email_confirmed_at is None:
        log(user.id, "sign_in_refused", ip=ip, device=device, reason="email not confirmed")
        db.session.commit()
        raise EmailNotConfirmed(
            "Confirm your email address before signing in: follow the link in the email "
            "we sent when you registered.")
    db.session.commit()  # keeps a rehashed password
    return user


def record_sign_in(user_id: str, *, ip: str, device: str, method: str) -> None:
    log(user_id, "signed_in", ip=ip, device=device, method=method)
    db.session.commit()


def record_sign_out(user_id: str, *, ip: str) -> None:
    log(user_id, "signed_out", ip=ip)
    db.session.commit()


def record_refused_session(user_id: str, *, ip: str, device: str, reason: str) -> None:
    """A session was refused (stale stamp, address outside its binding, account gone)."""
    exists = db.session.get(User, user_id) is not None
    log(user_id if exists else None, "session_refused", ip=ip, device=device, reason=reason,
        **({} if exists else {"user": user_id}))
    db.session.commit()


# --------------------------------------------------------------------------- passwords


def request_password_reset(email: str) -> str:
    """Mail a one-hour, single-use reset link (or say there is no account); commit.

    Returns the address; the answer is the same whether it has an account or not.
    """
    email = normalise_email(email)
    user = find_by_email(email)
    if user is None or not user.is_active:
        _send_no_account(email, "a password reset link")
        return email
    token = tokens.make("reset-password", {"u": user.id, "f": _fingerprint(user)})
    log(user.id, "password_reset_requested")
    db.session.commit()
    _send(user.email, "Choose a new password",
          f"To choose a new password, open this link:\n"
          f"{_public_link('account.reset_password', token=token)}",
          "The link works once, for one hour. If you did not ask for it, ignore this "
          "message: your password stays as it is.")
    return email


def _reset_user(token: str) -> User:
    payload = tokens.read("reset-password", token, max_age=RESET_MAX_AGE)
    user = db.session.get(User, str(payload.get("u", "")))
    if user is None or not hmac.compare_digest(_fingerprint(user), str(payload.get("f", ""))):
        raise tokens.InvalidToken("This link has been used already, or the password has "
                                  "changed since it was sent. Ask for a new one.")
    return user


def check_reset_token(token: str) -> str:
    """The email address a reset link is for, if the link still works."""
    return _reset_user(token).email


def reset_password(token: str, new_password: str) -> None:
    """Set a new password from a reset link; every session ends; commit."""
    user = _reset_user(token)
    passwords.check_strength(new_password, email=user.email)
    user.password_hash = passwords.hash_password(new_password)
    user.password_changed_at = datetime.now(UTC)
    if user.email_confirmed_at is None:
        # The link reached this mailbox: the address is confirmed as well.
        user.email_confirmed_at = datetime.now(UTC)
    log(user.id, "password_reset")
    rotate_security_stamp(user, "password reset")
    db.session.commit()
    _end_other_sessions(user.id, None)
    send_notice(user.email, "Your password was changed",
                 "The password of your account was just reset with an emailed link.")


def change_password(user_id: str, current_password: str, new_password: str, *,
                    ip: str, keep_session: str | None) -> str:
    """Change the password; other sessions end; commit; return the new stamp."""
    user = _user(user_id)
    verify_current_password(user, current_password, field="current_password", ip=ip)
    passwords.check_strength(new_password, email=user.email)
    if passwords.verify_password(user.password_hash, new_password):
        raise passwords.WeakPassword("Choose a password different from the current one.",
                                     field="password")
    user.password_hash = passwords.hash_password(new_password)
    user.password_changed_at = datetime.now(UTC)
    log(user.id, "password_changed", ip=ip)
    rotate_security_stamp(user, "password changed")
    db.session.commit()
    _end_other_sessions(user.id, keep_session)
    send_notice(user.email, "Your password was changed",
                 "The password of your account was just changed.")
    return user.security_stamp


# --------------------------------------------------------------------------- email address


@dataclass(frozen=True)
class EmailChange:
    user_id: str
    old_email: str
    new_email: str


@dataclass(frozen=True)
class EmailChanged:
    """The address changed; ``stamp`` is for the caller's session, when it was kept."""

    new_email: str
    stamp: str | None


def request_email_change(user_id: str, password: str, new_email: str, *, ip: str) -> str:
    """Mail a confirmation link to the new address; return it (normalised); commit.

    The address changes only when the link is followed. If the new address has an
    account already, its owner is told instead, and this person sees the same answer.
    """
    user = _user(user_id)
    verify_current_password(user, password, field="password", ip=ip)
    new_email = normalise_email(new_email)
    if new_email.lower() == user.email.lower():
        raise InvalidAccount("That is your current address already.", field="email")
    log(user.id, "email_change_requested", ip=ip, to=new_email)
    db.session.commit()
    if find_by_email(new_email) is not None:
        _send(new_email, "Someone tried to use this address",
              "Someone asked to move another account to this email address, but this "
              "address has an account already, so nothing was changed.",
              "If this was you, sign in with this address instead, or use another one.")
        return new_email
    token = tokens.make("change-email", {"u": user.id, "e": new_email, "f": _fingerprint(user)})
    _send(new_email, "Confirm your new email address",
          f"To use this address for your account from now on, open this link:\n"
          f"{_public_link('account.confirm_email_change', token=token)}",
          "The link works for 24 hours. Until you follow it, your account keeps its "
          "current address. If you did not ask for this, ignore this message.")
    return new_email


def read_email_change(token: str) -> EmailChange:
    """What an address-change link would do, if it still works."""
    payload = tokens.read("change-email", token, max_age=EMAIL_CHANGE_MAX_AGE)
    user = db.session.get(User, str(payload.get("u", "")))
    if user is None or not hmac.compare_digest(_fingerprint(user), str(payload.get("f", ""))):
        raise tokens.InvalidToken("This link has been used already, or the account's "
                                  "password or address has changed since it was sent.")
    return EmailChange(user.id, user.email, str(payload["e"]))


def confirm_email_change(token: str, *, signed_in_user: str | None,
                         keep_session: str | None) -> EmailChanged:
    """Move the account to the confirmed new address; other sessions end; commit.

    The session of ``signed_in_user`` is kept when it is this account's.
    """
    change = read_email_change(token)
    if find_by_email(change.new_email) is not None:
        raise Conflict("Another account uses this address now, so it cannot be yours. "
                       "Choose another address.", field="email")
    user = _user(change.user_id)
    user.email = change.new_email
    user.email_confirmed_at = datetime.now(UTC)
    log(user.id, "email_changed", old=change.old_email, new=change.new_email)
    rotate_security_stamp(user, "email address changed")
    try:
        db.session.commit()
    except sa.exc.IntegrityError as exc:  # the address was registered a moment ago
        db.session.rollback()
        raise Conflict("Another account uses this address now, so it cannot be yours. "
                       "Choose another address.", field="email") from exc
    kept = keep_session if signed_in_user == user.id else None
    _end_other_sessions(user.id, kept)
    send_notice(change.old_email, "Your email address was changed",
                 f"Your account now uses {change.new_email}; this address "
                 f"({change.old_email}) is no longer part of it.")
    return EmailChanged(change.new_email, user.security_stamp if kept else None)


# --------------------------------------------------------------------------- sessions


def set_ip_binding(user_id: str, binding: str, *, ip: str) -> None:
    """Choose how closely sessions are tied to the address they signed in from; commit."""
    if binding not in IP_BINDINGS:
        raise InvalidAccount("Choose one of the options.", field="binding")
    user = _user(user_id)
    if user.ip_binding != binding:
        log(user.id, "ip_binding_changed", ip=ip, old=user.ip_binding, new=binding)
        user.ip_binding = binding
        db.session.commit()


def active_sessions(user_id: str) -> list[sessions.SessionRecord]:
    """The person's live sessions, most recently used first."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    records = list(sessions.user_sessions(app, user_id))
    return sorted(records, key=lambda record: record.last_active, reverse=True)


def revoke_session(user_id: str, handle: str, *, current_session: str, ip: str) -> None:
    """End one of the person's other sessions; commit."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    record = sessions.find_session(app, user_id, handle)
    if record is None:
        raise NotFound("That session has ended already.")
    if record.session_id == current_session:
        raise DomainError("To end this session, sign out.")
    sessions.delete_session(app, record.session_id, user_id)
    log(user_id, "session_revoked", ip=ip, session=handle[:12])
    db.session.commit()


def sign_out_other_sessions(user_id: str, *, keep_session: str, ip: str) -> str:
    """End every session but this one; commit; return the new stamp."""
    user = _user(user_id)
    log(user.id, "signed_out_everywhere", ip=ip)
    rotate_security_stamp(user, "signed out everywhere else")
    db.session.commit()
    _end_other_sessions(user.id, keep_session)
    return user.security_stamp


# --------------------------------------------------------------------------- security log


@dataclass(frozen=True)
class LogEntry:
    event: str
    created_at: datetime
    ip: str
    device: str
    details: dict[str, Any]


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def security_log(user_id: str, page: int = 1, per_page: int = LOG_PAGE_SIZE) -> LogPage:
    """One page of the person's security log, newest first."""
    page = max(1, page)
    rows = db.session.scalars(
        sa.select(SecurityEvent).where(SecurityEvent.user_id == user_id)
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
        .offset((page - 1) * per_page).limit(per_page + 1)
    ).all()
    entries = [LogEntry(row.event, row.created_at, row.ip, row.device, dict(row.details))
               for row in rows[:per_page]]
    return LogPage(entries, page, len(rows) > per_page)
