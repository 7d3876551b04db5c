"""Helpers for the account tests: the outbox, signing in through the forms, TOTP codes.

Rate-limit counters live in Redis and outlast a test; each test here starts with none.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.extensions import limiter
from portal.services import mail, mfa
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from

SESSION_COOKIE = "portal_session"


@pytest.fixture(autouse=True)
def no_rate_limits_yet(app: Flask) -> Iterator[None]:
    limiter.reset()
    yield
    limiter.reset()


def mails_to(address: str) -> list[EmailMessage]:
    """The messages in the outbox for ``address``, oldest first."""
    found = []
    for path in sorted(mail.outbox().glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        if str(message["To"]).lower() == address.lower():
            found.append(message)
    return found


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage, path_start: str) -> str:
    """The path (for the test client) of the link in ``message`` that starts so."""
    url: str
    for url in re.findall(r"https?://\S+", body_of(message)):
        path = urlsplit(url).path
        if path.startswith(path_start):
            assert url.startswith("http://portal.test/"), "links use PUBLIC_BASE_URL"
            return path
    raise AssertionError(f"no {path_start} link in {message['Subject']!r}")


def last_mail_to(address: str) -> EmailMessage:
    messages = mails_to(address)
    assert messages, f"no mail to {address}"
    return messages[-1]


def post_form(client: FlaskClient, url: str, data: dict[str, str], *,
              form_page: str | None = None, **kwargs: Any) -> TestResponse:
    """POST ``data`` with the CSRF token of the form on ``form_page`` (default: ``url``)."""
    token = csrf_token_from(client, form_page or url)
    return client.post(url, data={"csrf_token": token, **data}, **kwargs)


def sign_in(client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD,
            **kwargs: Any) -> TestResponse:
    return post_form(client, "/account/login", {"email": email, "password": password},
                     **kwargs)


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    return cookie.value


def opens_dashboard(client: FlaskClient, cookie: str | None = None) -> bool:
    """Whether this browser (or one with ``cookie``) reaches the dashboard signed in."""
    if cookie is not None:
        client.set_cookie(SESSION_COOKIE, cookie)
    response = client.get("/dashboard/")
    if response.status_code == 302:
        assert "/account/login" in response.headers["Location"]
        return False
    assert response.status_code == 200
    return True


def totp_code(secret: str, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows now (or ``steps_ahead`` steps of 30 s later)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


class TwoFactorUser:
    """A confirmed account with two-factor sign-in on, set up through the service."""

    def __init__(self, user: Any, secret: str, recovery_codes: list[str]) -> None:
        self.user, self.secret, self.recovery_codes = user, secret, recovery_codes
        self.email: str = user.email


@pytest.fixture
def two_factor_user(create_user: Callable[..., Any]) -> Callable[..., TwoFactorUser]:
    def make(**kwargs: Any) -> TwoFactorUser:
        user = create_user(**kwargs)
        secret = mfa.new_secret()
        codes = mfa.enable(user.id, secret, totp_code(secret, -1), ip="", keep_session=None)
        return TwoFactorUser(user, secret, codes.recovery_codes)

    return make
