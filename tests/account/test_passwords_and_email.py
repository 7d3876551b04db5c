"""Password reset by emailed link, changing the email address."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import itsdangerous
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.account.conftest import (
    TwoFactorUser,
    last_mail_to,
    link_in,
    mails_to,
    opens_dashboard,
    post_form,
    session_cookie,
    sign_in,
    totp_code,
)
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from

NEW_PASSWORD = "seven silver herons at dawn"


def ask_for_reset(client: FlaskClient, email: str) -> Any:
    return post_form(client, "/account/password/forgot", {"email": email})


def reset(client: FlaskClient, path: str, password: str = NEW_PASSWORD) -> Any:
    return post_form(client, path, {"password": password, "confirm": password})


def test_reset_answers_the_same_whether_the_account_exists_or_not(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    known, unknown = ask_for_reset(client, user.email), ask_for_reset(client, nobody)
    assert known.status_code == unknown.status_code == 200

    def page(response: Any, email: str) -> str:
        return str(response.get_data(as_text=True)).replace(email, "ADDRESS")

    assert page(known, user.email) == page(unknown, nobody)
    assert "Choose a new password" in str(last_mail_to(user.email)["Subject"])
    assert "No account with this address" in str(last_mail_to(nobody)["Subject"])


def test_a_reset_link_works_once_and_ends_every_session(
    client: FlaskClient, app: Flask, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    signed_in = app.test_client()
    sign_in(signed_in, user.email)
    captured = session_cookie(signed_in)

    ask_for_reset(client, user.email)
    path = link_in(last_mail_to(user.email), "/account/password/reset/")
    form = client.get(path)
    assert form.status_code == 200
    assert user.email in form.get_data(as_text=True)
    assert form.headers["Referrer-Policy"] == "no-referrer"

    weak = reset(client, path, "password1234")
    assert weak.status_code == 422
    done = reset(client, path)
    assert done.status_code == 302 and done.headers["Location"] == "/account/login"
    assert "Your password has been changed" in client.get("/account/login").get_data(
        as_text=True)

    used = client.get(path)
    assert used.status_code == 400
    assert "This link has been used already" in used.get_data(as_text=True)
    again = client.post(path, data={"csrf_token": csrf_token_from(client, "/account/login"),
                                    "password": "yet another long passphrase",
                                    "confirm": "yet another long passphrase"})
    assert again.status_code == 400

    assert not opens_dashboard(signed_in)
    assert not opens_dashboard(app.test_client(), captured)
    assert sign_in(client, user.email, DEFAULT_PASSWORD).status_code == 401
    assert sign_in(client, user.email, NEW_PASSWORD).status_code == 302
    assert "Your password was changed" in str(last_mail_to(user.email)["Subject"])


def test_a_reset_link_expires_after_an_hour(
    client: FlaskClient, create_user: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = create_user()
    ask_for_reset(client, user.email)
    path = link_in(last_mail_to(user.email), "/account/password/reset/")
    later = int(time.time()) + 3600 + 5
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: later)
    expired = client.get(path)
    assert expired.status_code == 400
    assert "This link has expired; ask for a new one." in expired.get_data(as_text=True)
    assert 'href="/account/password/forgot"' in expired.get_data(as_text=True)


def test_an_older_reset_link_dies_when_a_newer_one_is_used(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    ask_for_reset(client, user.email)
    ask_for_reset(client, user.email)
    first, second = (link_in(message, "/account/password/reset/")
                     for message in mails_to(user.email)[-2:])
    assert reset(client, second).status_code == 302
    assert client.get(first).status_code == 400


def test_a_reset_does_not_skip_two_factor_sign_in(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    ask_for_reset(client, person.email)
    reset(client, link_in(last_mail_to(person.email), "/account/password/reset/"))
    response = sign_in(client, person.email, NEW_PASSWORD)
    assert response.headers["Location"] == "/account/login/two-factor"
    assert not opens_dashboard(client)


def test_a_reset_confirms_an_unconfirmed_address(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user(confirmed=False)
    assert sign_in(client, user.email).status_code == 403
    ask_for_reset(client, user.email)
    reset(client, link_in(last_mail_to(user.email), "/account/password/reset/"))
    assert sign_in(client, user.email, NEW_PASSWORD).status_code == 302


def change_email(client: FlaskClient, new: str, password: str = DEFAULT_PASSWORD) -> Any:
    return post_form(client, "/account/email", {"email": new, "password": password})


def test_changing_the_email_address(
    client: FlaskClient, app: Flask, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    old = user.email
    other = app.test_client()
    sign_in(other, old)
    sign_in(client, old)
    new = f"moved-{uuid.uuid4().hex[:8]}@example.org"

    wrong = change_email(client, new, "not my password!")
    assert wrong.status_code == 422
    assert "That is not your current password." in wrong.get_data(as_text=True)
    assert mails_to(new) == []

    asked = change_email(client, new)
    assert asked.status_code == 200
    assert "Check the new inbox" in asked.get_data(as_text=True)
    # Nothing changes until the link is followed.
    assert old in client.get("/account/security").get_data(as_text=True)
    assert opens_dashboard(other)

    path = link_in(last_mail_to(new), "/account/email/confirm/")
    confirm_page = client.get(path)
    assert confirm_page.status_code == 200
    assert new in confirm_page.get_data(as_text=True)
    captured = session_cookie(client)
    confirmed = post_form(client, path, {})
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"] == "/account/security"
    page = client.get("/account/security").get_data(as_text=True)
    assert f"Your account now uses {new}" in page
    assert opens_dashboard(client)
    assert not opens_dashboard(other)
    assert not opens_dashboard(app.test_client(), captured)
    assert "Your email address was changed" in str(last_mail_to(old)["Subject"])

    # The link works once; the new address signs in, the old one no longer does.
    assert client.get(path).status_code == 400
    client.post("/account/logout", data={"csrf_token": csrf_token_from(client, "/dashboard/")})
    assert sign_in(client, old).status_code == 401
    assert sign_in(client, new).status_code == 302


def test_confirming_the_change_from_another_browser_signs_everyone_out(
    client: FlaskClient, app: Flask, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    sign_in(client, user.email)
    new = f"moved-{uuid.uuid4().hex[:8]}@example.org"
    change_email(client, new)
    elsewhere = app.test_client()
    path = link_in(last_mail_to(new), "/account/email/confirm/")
    response = post_form(elsewhere, path, {})
    assert response.headers["Location"] == "/account/login"
    assert not opens_dashboard(client)
    assert sign_in(elsewhere, new).status_code == 302


def test_a_taken_address_is_not_revealed(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user, neighbour = create_user(), create_user()
    sign_in(client, user.email)
    response = change_email(client, neighbour.email)
    assert response.status_code == 200
    assert "Check the new inbox" in response.get_data(as_text=True)
    note = last_mail_to(neighbour.email)
    assert "Someone tried to use this address" in str(note["Subject"])
    assert "/account/email/confirm/" not in str(note.get_body())


def test_the_change_link_dies_when_the_password_changes(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    sign_in(client, user.email)
    new = f"moved-{uuid.uuid4().hex[:8]}@example.org"
    change_email(client, new)
    post_form(client, "/account/password", {"current_password": DEFAULT_PASSWORD,
                                            "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    path = link_in(last_mail_to(new), "/account/email/confirm/")
    assert client.get(path).status_code == 400


def test_the_change_needs_two_factor_users_to_keep_their_factor(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    sign_in(client, person.email)
    post_form(client, "/account/login/two-factor", {"code": totp_code(person.secret)})
    new = f"moved-{uuid.uuid4().hex[:8]}@example.org"
    change_email(client, new)
    post_form(client, link_in(last_mail_to(new), "/account/email/confirm/"), {})
    client.post("/account/logout", data={"csrf_token": csrf_token_from(client, "/dashboard/")})
    assert sign_in(client, new).headers["Location"] == "/account/login/two-factor"
