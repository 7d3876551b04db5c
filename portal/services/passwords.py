"""Passwords: argon2id hashes and the rules a new password must meet."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from portal.services.errors import DomainError

MIN_LENGTH = 12
MAX_LENGTH = 256
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"

# OWASP's argon2id floor: 19 MiB of memory, 2 iterations, 1 lane.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class WeakPassword(DomainError):
    status_code = 422


@lru_cache(maxsize=1)
def _common() -> frozenset[str]:
    return frozenset(COMMON_PASSWORDS.read_text(encoding="utf-8").split())


def check_strength(password: str, *, email: str = "") -> None:
    """Refuse short, overlong, common or email-like passwords with a clear reason."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.", field="password")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.", field="password")
    if password.lower() in _common() or password.strip().lower() in _common():
        raise WeakPassword("This password is among the most common ones; choose another.",
                           field="password")
    local = email.split("@", maxsplit=1)[0].lower()
    if len(local) >= 4 and local in password.lower():
        raise WeakPassword("Do not build the password from your email address.",
                           field="password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; False for no hash or a wrong password."""
    if not password_hash:
        # Spend the same time as a real check, so unknown accounts cannot be told apart.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
