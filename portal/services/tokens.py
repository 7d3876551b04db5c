"""Signed, expiring tokens for links sent by email (confirmation, reset, invitation)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from portal.services.errors import DomainError


class InvalidToken(DomainError):
    status_code = 400


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"portal.{purpose}")


def make(purpose: str, payload: Any) -> str:
    return _serializer(purpose).dumps(payload)


def read(purpose: str, token: str, *, max_age: int) -> Any:
    """The payload of a token made for ``purpose``, if it is genuine and young enough."""
    try:
        return _serializer(purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvalidToken("This link has expired; ask for a new one.") from exc
    except BadSignature as exc:
        raise InvalidToken("This link is not valid. Check that it was copied in full.") from exc
