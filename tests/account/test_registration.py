"""Creating an account, confirming its address by the emailed link, and what is refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import SecurityEvent, User
from tests.account.conftest import (
    last_mail_to,
    link_in,
    mails_to,
    opens_dashboard,
    post_form,
    sign_in,
)

PASSWORD = "lanterns over the harbour 42"


def new_address() -> str:
    return f"new-{uuid.uuid4().hex[:10]}@Example.ORG"


def register(client: FlaskClient, email: str, password: str = PASSWORD,
             confirm: str | None = None, **kwargs: Any) -> Any:
    return post_form(client, "/account/register", {
        "email": email, "display_name": "Ada Byron", "password": password,
        "confirm": password if confirm is None else confirm}, **kwargs)


def account(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.lower()))


def test_register_confirm_by_the_emailed_link_then_sign_in(client: FlaskClient) -> None:
    email = new_address()
    response = register(client, email)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Check your inbox" in page
    stored = email.split("@")[0] + "@example.org"  # the domain is lower-cased
    assert stored in page

    user = account(email)
    assert user is not None and user.email == stored
    assert user.email_confirmed_at is None
    assert user.password_hash and user.password_hash.startswith("$argon2id$")

    # Unconfirmed: the right password is refused, with a way to get the link again.
    refused = sign_in(client, stored, PASSWORD)
    assert refused.status_code == 403
    text = refused.get_data(as_text=True)
    assert "Confirm your email address before signing in" in text
    assert 'href="/account/confirm/resend"' in text
    assert not opens_dashboard(client)

    message = last_mail_to(stored)
    assert "Confirm your email address" in str(message["Subject"])
    confirmed = client.get(link_in(message, "/account/confirm/"))
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"] == "/account/login"
    assert "Your email address is confirmed" in client.get("/account/login").get_data(
        as_text=True)
    assert account(email).email_confirmed_at is not None  # type: ignore[union-attr]

    assert sign_in(client, stored, PASSWORD).status_code == 302
    assert opens_dashboard(client)


def test_a_tampered_confirmation_link_is_refused(client: FlaskClient) -> None:
    email = new_address()
    register(client, email)
    path = link_in(last_mail_to(email), "/account/confirm/")
    response = client.get(path[:-3] + "xyz")
    assert response.status_code == 400
    assert "This link is not valid" in response.get_data(as_text=True)
    assert account(email).email_confirmed_at is None  # type: ignore[union-attr]


def test_the_confirmation_link_can_be_sent_again(client: FlaskClient) -> None:
    email = new_address()
    register(client, email)
    response = post_form(client, "/account/confirm/resend", {"email": email})
    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    first, second = mails_to(email)
    assert "Confirm your email address" in str(second["Subject"])
    assert client.get(link_in(second, "/account/confirm/")).status_code == 302
    assert account(email).email_confirmed_at is not None  # type: ignore[union-attr]
    # The first link still works too (confirming twice changes nothing).
    assert client.get(link_in(first, "/account/confirm/")).status_code == 302


def test_weak_and_common_passwords_are_refused_and_nothing_is_written(
    client: FlaskClient,
) -> None:
    events_before = db.session.scalar(sa.select(sa.func.count()).select_from(SecurityEvent))
    for password, message in (
        ("short pass", "Use at least 12 characters."),
        ("password1234", "This password is among the most common ones"),
        ("qwerty123456", "This password is among the most common ones"),
    ):
        email = new_address()
        response = register(client, email, password)
        assert response.status_code == 422, password
        page = response.get_data(as_text=True)
        assert message in page
        # The message is tied to the password field for screen readers.
        assert 'id="password-error"' in page
        assert 'aria-describedby="password-hint password-error"' in page
        assert account(email) is None
        assert mails_to(email) == []
    events_after = db.session.scalar(sa.select(sa.func.count()).select_from(SecurityEvent))
    assert events_after == events_before


def test_the_two_passwords_must_match(client: FlaskClient) -> None:
    email = new_address()
    response = register(client, email, confirm=PASSWORD + "!")
    assert response.status_code == 422
    assert "The two passwords are not the same." in response.get_data(as_text=True)
    assert account(email) is None


def test_an_htmx_request_gets_only_the_form_back(client: FlaskClient) -> None:
    response = register(client, new_address(), "short pass", headers={"HX-Request": "true"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert page.lstrip().startswith('<form id="register_form"')
    assert "<html" not in page
    assert "Use at least 12 characters." in page


def test_an_invalid_address_is_refused(client: FlaskClient) -> None:
    response = register(client, "not-an-address")
    assert response.status_code == 422
    assert "Enter a valid email address" in response.get_data(as_text=True)


def test_registering_a_taken_address_tells_its_owner_not_the_visitor(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    owner = create_user()
    fresh = register(client, new_address())
    taken = register(client, owner.email.upper())
    assert taken.status_code == fresh.status_code == 200
    assert "Check your inbox" in taken.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User).where(
        sa.func.lower(User.email) == owner.email.lower())) == 1
    note = last_mail_to(owner.email)
    assert "You already have an account" in str(note["Subject"])
    assert "/account/password/forgot" in link_in(note, "/account/password/forgot")
    # The owner's password is unchanged.
    assert sign_in(client, owner.email).status_code == 302
