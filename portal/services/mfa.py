"""Two-factor sign-in: TOTP secrets (encrypted at rest), codes that work once, recovery codes.

The secret is sealed with AES-GCM under a key derived from SECRET_KEY (HKDF), bound
to the account's id, and stored as ``v1:`` + base64(nonce + ciphertext). A TOTP code
is accepted for the time steps just before, at and after now (30 s each), and only
for a step later than the last one accepted, so a code works once. Recovery codes
are shown once and stored as salted SHA-256 digests; each works once. Every change
rotates the security stamp: other sessions end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pyotp
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from portal import sessions
from portal.extensions import db
from portal.models import RecoveryCode, User
from portal.services import accounts
from portal.services.errors import DomainError

STEP_SECONDS = 30
DIGITS = 6
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
#: No 0/o, 1/l/i: recovery codes are read off paper and typed in.
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
RECOVERY_CODE_LENGTH = 10
SEAL_VERSION = "v1"
_NONCE_BYTES = 12
_TOTP_PATTERN = re.compile(r"^\d{6}$")


class InvalidCode(DomainError):
    status_code = 422


class SignInExpired(DomainError):
    """The account changed (password, two-factor settings) while its sign-in waited."""

    status_code = 409


class TwoFactorState(DomainError):
    """Two-factor sign-in is already on (or off) for this account."""

    status_code = 409


def now() -> float:
    """The codes' clock (tests move it)."""
    return time.time()


# --------------------------------------------------------------------------- sealing


def _key() -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"portal.mfa-secret",
                info=b"totp secret encryption v1")
    return hkdf.derive(str(current_app.config["SECRET_KEY"]).encode())


def seal(user_id: str, secret: str) -> str:
    """The TOTP secret, encrypted for storage, tied to this account."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_key()).encrypt(nonce, secret.encode(), user_id.encode())
    return f"{SEAL_VERSION}:" + base64.b64encode(nonce + sealed).decode()


def unseal(user_id: str, stored: str) -> str:
    version, _, payload = stored.partition(":")
    if version != SEAL_VERSION:
        raise ValueError("unknown sealed-secret version")
    raw = base64.b64decode(payload)
    try:
        return AESGCM(_key()).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                      user_id.encode()).decode()
    except InvalidTag as exc:
        raise ValueError("the secret cannot be decrypted with this SECRET_KEY") from exc


def new_secret() -> str:
    """160 random bits, base32 as authenticator apps expect."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=email, issuer_name=current_app.config["PORTAL_NAME"])


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it in by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


# --------------------------------------------------------------------------- checking codes


def _clean(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()


def _matching_step(secret: str, code: str) -> int | None:
    """The time step within the window whose code is ``code``."""
    if not _TOTP_PATTERN.match(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now() // STEP_SECONDS)
    found = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        # Compare against every step (no early exit): the time taken tells nothing.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _use_step(user: User, step: int) -> bool:
    """Record ``step`` as used, unless it (or a later one) was used already.

    One conditional UPDATE: two requests racing with the same code cannot both win.
    """
    result = db.session.execute(
        sa.update(User)
        .where(User.id == user.id,
               sa.or_(User.mfa_last_step.is_(None), User.mfa_last_step < step))
        .values(mfa_last_step=step)
        .execution_options(synchronize_session=False)
    )
    used = bool(result.rowcount)  # type: ignore[attr-defined]
    if used:
        db.session.expire(user, ["mfa_last_step"])
    return used


def _recovery_digest(user_id: str, code: str) -> str:
    # Recovery codes carry about 50 bits; the account id (96 random bits) salts them.
    return hashlib.sha256(f"{user_id}:{_clean(code)}".encode()).hexdigest()


def _use_recovery_code(user_id: str, code: str) -> bool:
    used = db.session.execute(
        sa.update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None),
               RecoveryCode.code_hash == _recovery_digest(user_id, code))
        .values(used_at=datetime.now(UTC))
        .returning(RecoveryCode.id)
        .execution_options(synchronize_session=False)
    ).first()
    return used is not None


def _check_code(user: User, code: str) -> str:
    """Accept a TOTP code or an unused recovery code (using it up); return which."""
    cleaned = _clean(code)
    if _TOTP_PATTERN.match(cleaned):
        if user.mfa_secret:
            step = _matching_step(unseal(user.id, user.mfa_secret), cleaned)
            if step is not None and _use_step(user, step):
                return "totp"
        raise InvalidCode("That code is not right, or it has been used already. Wait for "
                          "the next code in your app and enter it.", field="code")
    if len(cleaned) == RECOVERY_CODE_LENGTH and _use_recovery_code(user.id, cleaned):
        return "recovery code"
    raise InvalidCode("That code is not right. Enter the six digits from your "
                      "authenticator app, or one of your unused recovery codes.", field="code")


def _new_recovery_codes(user_id: str) -> list[str]:
    """Replace the person's recovery codes with ten new ones (flushes)."""
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user_id, code_hash=_recovery_digest(user_id, raw)))
    db.session.flush()
    return codes


def _checked(user: User, code: str, *, ip: str, device: str = "") -> str:
    """``_check_code``, with a wrong code logged (and committed) before it is refused."""
    try:
        return _check_code(user, code)
    except InvalidCode:
        accounts.log(user.id, "mfa_failed", ip=ip, device=device)
        db.session.commit()
        raise


def recovery_codes_left(user_id: str) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0


def _end_other_sessions(user_id: str, keep_session: str | None) -> None:
    sessions.end_all_sessions(current_app._get_current_object(),  # type: ignore[attr-defined]
                              user_id, keep=keep_session)


# --------------------------------------------------------------------------- use cases


@dataclass(frozen=True)
class Codes:
    """Recovery codes to show once, and the stamp the current session carries on with."""

    recovery_codes: list[str]
    stamp: str


@dataclass(frozen=True)
class SecondStep:
    """A second step passed: who, how, and how many recovery codes are left."""

    user: User
    method: str
    recovery_codes_left: int


def enable(user_id: str, secret: str, code: str, *, ip: str, keep_session: str | None) -> Codes:
    """Turn two-factor sign-in on once a code from the new secret checks out; commit."""
    user = db.session.get(User, user_id)
    if user is None:
        raise TwoFactorState("There is no such account.")
    if user.mfa_enabled:
        raise TwoFactorState("Two-factor sign-in is on already.")
    step = _matching_step(secret, _clean(code))
    if step is None:
        raise InvalidCode("That code does not match. Check that the app shows the "
                          f"{current_app.config['PORTAL_NAME']} entry you just added, and "
                          "that the time on your phone is right.", field="code")
    user.mfa_secret = seal(user.id, secret)
    user.mfa_enabled_at = datetime.now(UTC)
    user.mfa_last_step = step
    codes = _new_recovery_codes(user.id)
    accounts.log(user.id, "mfa_enabled", ip=ip)
    accounts.rotate_security_stamp(user, "two-factor sign-in turned on")
    db.session.commit()
    _end_other_sessions(user.id, keep_session)
    accounts.send_notice(user.email, "Two-factor sign-in was turned on",
                         "Two-factor sign-in was just turned on for your account: signing in "
                         "now takes a code from an authenticator app as well.")
    return Codes(codes, user.security_stamp)


def verify_second_step(user_id: str, code: str, *, stamp: str, ip: str,
                       device: str) -> SecondStep:
    """Check the code of a sign-in's second step; failures are logged; commit.

    ``stamp`` is the account's stamp when the password was checked: if it changed
    since, the sign-in starts again.
    """
    user = db.session.get(User, user_id)
    if user is None or not user.mfa_enabled or user.security_stamp != stamp:
        raise SignInExpired("Your account changed while this sign-in waited for its code. "
                            "Please sign in again.")
    method = _checked(user, code, ip=ip, device=device)
    if method == "recovery code":
        accounts.log(user_id, "recovery_code_used", ip=ip, device=device)
    db.session.commit()
    return SecondStep(user, method, recovery_codes_left(user_id))


def regenerate_recovery_codes(user_id: str, password: str, *, ip: str,
                              keep_session: str | None) -> Codes:
    """New recovery codes (the old ones stop working); needs the password; commit."""
    user = db.session.get(User, user_id)
    if user is None or not user.mfa_enabled:
        raise TwoFactorState("Two-factor sign-in is off, so there are no recovery codes.")
    accounts.verify_current_password(user, password, field="password", ip=ip)
    codes = _new_recovery_codes(user.id)
    accounts.log(user.id, "recovery_codes_regenerated", ip=ip)
    accounts.rotate_security_stamp(user, "new recovery codes")
    db.session.commit()
    _end_other_sessions(user.id, keep_session)
    accounts.send_notice(user.email, "New recovery codes were made",
                         "New two-factor recovery codes were just made for your account; the "
                         "old ones no longer work.")
    return Codes(codes, user.security_stamp)


def disable(user_id: str, password: str, code: str, *, ip: str,
            keep_session: str | None) -> str:
    """Turn two-factor sign-in off; needs the password and a code; commit; return the stamp."""
    user = db.session.get(User, user_id)
    if user is None or not user.mfa_enabled:
        raise TwoFactorState("Two-factor sign-in is off already.")
    accounts.verify_current_password(user, password, field="password", ip=ip)
    _checked(user, code, ip=ip)
    user.mfa_secret = None
    user.mfa_enabled_at = None
    user.mfa_last_step = None
    db.session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    accounts.log(user.id, "mfa_disabled", ip=ip)
    accounts.rotate_security_stamp(user, "two-factor sign-in turned off")
    db.session.commit()
    _end_other_sessions(user.id, keep_session)
    accounts.send_notice(user.email, "Two-factor sign-in was turned off",
                         "Two-factor sign-in was just turned off for your account: its "
                         "password alone now opens it.")
    return user.security_stamp
