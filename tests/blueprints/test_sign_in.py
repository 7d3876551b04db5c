"""Signing in and out through the form; what a session holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import limiter
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from


@pytest.fixture(autouse=True)
def no_rate_limits_yet(app: Flask) -> Iterator[None]:
    """Failed sign-ins are counted in Redis for a minute; these tests start from none."""
    limiter.reset()
    yield
    limiter.reset()


def test_sign_in_and_out(client: FlaskClient, create_user: Callable[..., Any]) -> None:
    user = create_user()
    anonymous = client.get("/dashboard/")
    assert anonymous.status_code == 302
    assert "/account/login" in anonymous.headers["Location"]
    token = csrf_token_from(client, "/account/login")
    response = client.post("/account/login", data={
        "csrf_token": token, "email": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 200
    token = csrf_token_from(client, "/dashboard/")
    assert client.post("/account/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_a_wrong_password_is_refused_without_saying_which_part(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    token = csrf_token_from(client, "/account/login")
    wrong = client.post("/account/login", data={
        "csrf_token": token, "email": user.email, "password": "not the password!!"})
    unknown = client.post("/account/login", data={
        "csrf_token": token, "email": "nobody@example.org", "password": "not the password!!"})
    assert wrong.status_code == unknown.status_code == 401
    message = "That email address and password do not match an account."
    assert message in wrong.get_data(as_text=True)
    assert message in unknown.get_data(as_text=True)


def test_sign_in_needs_a_csrf_token(client: FlaskClient, create_user: Callable[..., Any]) -> None:
    user = create_user()
    response = client.post("/account/login", data={"email": user.email,
                                                   "password": DEFAULT_PASSWORD})
    assert response.status_code in (400, 422)
    assert client.get("/dashboard/").status_code == 302


def test_the_session_id_changes_at_sign_in(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    token = csrf_token_from(client, "/account/login")
    before = client.get_cookie("portal_session")
    assert before is not None  # the form's CSRF token lives in a pre-sign-in session
    client.post("/account/login", data={"csrf_token": token, "email": user.email,
                                        "password": DEFAULT_PASSWORD})
    after = client.get_cookie("portal_session")
    assert after is not None and after.value != before.value
    # The pre-sign-in cookie does not open the signed-in session.
    client.set_cookie("portal_session", before.value)
    assert client.get("/dashboard/").status_code == 302


def test_open_redirects_are_refused(client: FlaskClient, create_user: Callable[..., Any]) -> None:
    user = create_user()
    token = csrf_token_from(client, "/account/login")
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = client.post(f"/account/login?next={target}", data={
            "csrf_token": token, "email": user.email, "password": DEFAULT_PASSWORD})
        assert response.headers["Location"] == "/dashboard/"
        client.post("/account/logout", data={"csrf_token": csrf_token_from(client, "/dashboard/")})
        token = csrf_token_from(client, "/account/login")


def test_the_sign_in_page_leads_to_registration_and_password_reset(client: FlaskClient) -> None:
    page = client.get("/account/login").get_data(as_text=True)
    assert 'href="/account/register"' in page
    assert 'href="/account/password/forgot"' in page
    assert '<label for="email">Email address</label>' in page
    assert 'autocomplete="current-password"' in page
    # No field claims to be invalid, or described by something missing, before a try.
    assert "aria-invalid" not in page and "aria-describedby" not in page


def test_an_htmx_sign_in_is_told_to_load_the_next_page(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    token = csrf_token_from(client, "/account/login")
    response = client.post("/account/login?next=/dashboard/", headers={"HX-Request": "true"},
                           data={"csrf_token": token, "email": user.email,
                                 "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_an_htmx_sign_in_with_errors_gets_its_form_back(client: FlaskClient) -> None:
    token = csrf_token_from(client, "/account/login")
    response = client.post("/account/login", headers={"HX-Request": "true"},
                           data={"csrf_token": token, "email": "", "password": ""})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="login_form"')
    assert "Enter your email address." in html
    assert 'aria-describedby="email-error"' in html
