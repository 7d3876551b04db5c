"""Rate limits: ten failures a minute per account and per address, counted in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.blueprints.account.limits import SIGN_IN_MESSAGE
from portal.extensions import db
from tests.account.conftest import TwoFactorUser, opens_dashboard, post_form, sign_in, totp_code
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from


def attempt(client: FlaskClient, token: str, email: str, password: str, ip: str) -> int:
    response = client.post("/account/login", environ_base={"REMOTE_ADDR": ip},
                           data={"csrf_token": token, "email": email, "password": password})
    return response.status_code


def unknown() -> str:
    return f"nobody-{uuid.uuid4().hex[:8]}@example.org"


def test_ten_failures_per_account_then_429_even_with_the_right_password(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    token = csrf_token_from(client, "/account/login")
    for number in range(10):
        # From ten different addresses: only the account's own limit is reached.
        assert attempt(client, token, user.email, "wrong password!!", f"198.51.100.{number}") \
            == 401
    # However it is typed, it is the same account.
    response = client.post("/account/login", environ_base={"REMOTE_ADDR": "198.51.100.99"},
                           data={"csrf_token": token, "email": f"  {user.email.upper()} ",
                                 "password": DEFAULT_PASSWORD})
    assert response.status_code == 429
    assert SIGN_IN_MESSAGE in response.get_data(as_text=True)
    assert "Retry-After" in response.headers
    assert not opens_dashboard(client)
    # Other accounts are not affected.
    other = create_user()
    assert attempt(client, token, other.email, DEFAULT_PASSWORD, "198.51.100.99") == 302


def test_ten_failures_per_ip_then_429(client: FlaskClient, create_user: Callable[..., Any]
                                      ) -> None:
    token = csrf_token_from(client, "/account/login")
    for _ in range(10):
        assert attempt(client, token, unknown(), "wrong password!!", "192.0.2.7") == 401
    user = create_user()
    assert attempt(client, token, user.email, DEFAULT_PASSWORD, "192.0.2.7") == 429
    # Another address may still sign in.
    assert attempt(client, token, user.email, DEFAULT_PASSWORD, "192.0.2.8") == 302


def test_only_failures_count(client: FlaskClient, create_user: Callable[..., Any]) -> None:
    user = create_user()
    for _ in range(12):
        assert sign_in(client, user.email, environ_base={"REMOTE_ADDR": "192.0.2.20"}
                       ).status_code == 302
        client.post("/account/logout", data={"csrf_token": csrf_token_from(
            client, "/dashboard/")})
    token = csrf_token_from(client, "/account/login")
    for _ in range(9):
        assert attempt(client, token, user.email, "wrong password!!", "192.0.2.20") == 401
    # Forms sent back for being incomplete do not count either.
    for _ in range(5):
        assert attempt(client, token, user.email, "", "192.0.2.20") == 422
    assert attempt(client, token, user.email, DEFAULT_PASSWORD, "192.0.2.20") == 302


@pytest.fixture
def two_apps(app_config: dict[str, Any]) -> Iterator[tuple[Flask, Flask]]:
    """Two more app instances (two processes, say) on the same database and Redis."""
    first, second = create_app(app_config), create_app(app_config)
    yield first, second
    for application in (first, second):
        with application.app_context():
            db.engine.dispose()


def test_the_count_is_shared_by_app_instances(two_apps: tuple[Flask, Flask]) -> None:
    clients = [application.test_client() for application in two_apps]
    tokens = [csrf_token_from(client, "/account/login") for client in clients]
    email = unknown()
    for number in range(10):
        index = number % 2
        assert attempt(clients[index], tokens[index], email, "wrong password!!",
                       f"203.0.113.{number}") == 401
    assert attempt(clients[0], tokens[0], email, "wrong password!!", "203.0.113.50") == 429
    assert attempt(clients[1], tokens[1], email, "wrong password!!", "203.0.113.51") == 429
    # And per network address, too.
    for number in range(10):
        index = number % 2
        assert attempt(clients[index], tokens[index], unknown(), "wrong password!!",
                       "203.0.113.200") == 401
    assert attempt(clients[1], tokens[1], unknown(), "wrong password!!",
                   "203.0.113.200") == 429


def test_htmx_gets_the_form_back_with_the_message(client: FlaskClient) -> None:
    token = csrf_token_from(client, "/account/login")
    email = unknown()
    for number in range(10):
        attempt(client, token, email, "wrong password!!", f"198.51.100.{number}")
    response = client.post("/account/login", headers={"HX-Request": "true"},
                           data={"csrf_token": token, "email": email, "password": "x" * 12})
    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="login_form"')
    assert SIGN_IN_MESSAGE in html


def test_the_second_step_is_limited_too(
    app: Flask, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    wrong = "000000" if totp_code(person.secret) != "000000" else "111111"
    failures = 0
    # Several browsers (each half-done sign-in allows five tries): ten failures a minute.
    while failures < 10:
        browser = app.test_client()
        browser.environ_base["REMOTE_ADDR"] = f"198.51.100.{failures}"
        sign_in(browser, person.email)
        for _ in range(min(4, 10 - failures)):
            response = post_form(browser, "/account/login/two-factor", {"code": wrong})
            assert response.status_code == 401
            failures += 1
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = "198.51.100.200"
    sign_in(browser, person.email)
    response = post_form(browser, "/account/login/two-factor",
                         {"code": totp_code(person.secret)})
    assert response.status_code == 429
    assert "Too many wrong codes; wait a minute and try again." in response.get_data(
        as_text=True)
    assert not opens_dashboard(browser)


def test_changes_that_ask_for_the_password_are_limited(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    sign_in(client, user.email)
    token = csrf_token_from(client, "/account/password")
    data = {"csrf_token": token, "current_password": "wrong password!!",
            "password": "a brand new passphrase 1", "confirm": "a brand new passphrase 1"}
    for _ in range(10):
        assert client.post("/account/password", data=data).status_code == 422
    data["current_password"] = DEFAULT_PASSWORD
    response = client.post("/account/password", data=data)
    assert response.status_code == 429
    assert "Too many wrong passwords or codes" in response.get_data(as_text=True)


def test_emails_to_one_address_are_limited(client: FlaskClient) -> None:
    email = unknown()
    for _ in range(3):
        assert post_form(client, "/account/password/forgot", {"email": email}).status_code \
            == 200
    response = post_form(client, "/account/password/forgot", {"email": email})
    assert response.status_code == 429
    assert "We have sent several emails to this address" in response.get_data(as_text=True)
