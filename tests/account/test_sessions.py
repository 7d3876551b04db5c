"""Sessions: a captured cookie stops working when it should, timeouts, IP binding,
the active-sessions list, revoking, and the cookie's attributes in production."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app, sessions
from portal.extensions import db, limiter
from portal.models import SecurityEvent
from tests.account.conftest import (
    TwoFactorUser,
    opens_dashboard,
    post_form,
    session_cookie,
    sign_in,
    totp_code,
)
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from

NEW_PASSWORD = "a different long passphrase 7"


def events_of(user_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db.session.execute(sa.select(SecurityEvent.event, SecurityEvent.details).where(
        SecurityEvent.user_id == user_id).order_by(SecurityEvent.id)).all()
    return [(event, details) for event, details in rows]


def sign_out(client: FlaskClient) -> None:
    response = client.post("/account/logout",
                           data={"csrf_token": csrf_token_from(client, "/dashboard/")})
    assert response.status_code == 302


def sessions_table(client: FlaskClient) -> str:
    page = client.get("/account/security").get_data(as_text=True)
    found = re.search(r'<section id="sessions".*?</section>', page, flags=re.S)
    assert found
    return found.group(0)


@pytest.fixture
def browsers(app: Flask) -> Callable[[], FlaskClient]:
    """More browsers of the same person."""
    return app.test_client


def test_a_cookie_replayed_after_sign_out_is_refused(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    sign_in(client, user.email)
    captured = session_cookie(client)
    assert opens_dashboard(client)
    sign_out(client)
    assert not opens_dashboard(client)
    assert not opens_dashboard(client, captured)


def test_a_password_change_ends_other_sessions_and_keeps_this_one(
    client: FlaskClient, create_user: Callable[..., Any],
    browsers: Callable[[], FlaskClient],
) -> None:
    user = create_user()
    other = browsers()
    sign_in(other, user.email)
    other_cookie = session_cookie(other)
    sign_in(client, user.email)
    captured = session_cookie(client)

    wrong = post_form(client, "/account/password", {
        "current_password": "not the password!", "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD})
    assert wrong.status_code == 422
    assert "That is not your current password." in wrong.get_data(as_text=True)
    assert opens_dashboard(other)

    changed = post_form(client, "/account/password", {
        "current_password": DEFAULT_PASSWORD, "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD})
    assert changed.status_code == 302
    assert changed.headers["Location"] == "/account/security"
    # This browser carries on, under a new session id.
    assert session_cookie(client) != captured
    assert opens_dashboard(client)
    # The other browser, and the captured cookie of this one, are refused.
    assert not opens_dashboard(other)
    assert not opens_dashboard(browsers(), other_cookie)
    assert not opens_dashboard(browsers(), captured)
    events = [event for event, _ in events_of(user.id)]
    assert "password_changed" in events and "security_stamp_rotated" in events
    # The new password works; the old one does not.
    sign_out(client)
    assert sign_in(client, user.email, DEFAULT_PASSWORD).status_code == 401
    assert sign_in(client, user.email, NEW_PASSWORD).status_code == 302


def test_a_new_password_must_meet_the_rules(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    sign_in(client, user.email)
    response = post_form(client, "/account/password", {
        "current_password": DEFAULT_PASSWORD, "password": "password1234",
        "confirm": "password1234"}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="password_form"')
    assert "among the most common ones" in html


def test_an_mfa_change_ends_other_sessions(
    client: FlaskClient, create_user: Callable[..., Any],
    browsers: Callable[[], FlaskClient],
) -> None:
    user = create_user()
    other = browsers()
    sign_in(other, user.email)
    sign_in(client, user.email)
    captured = session_cookie(client)
    html = client.get("/account/two-factor").get_data(as_text=True)
    secret = re.search(r'<code class="totp-secret"[^>]*>([A-Z2-7 ]+)</code>', html)
    assert secret
    done = post_form(client, "/account/two-factor",
                     {"code": pyotp.TOTP(secret.group(1).replace(" ", "")).now()})
    assert done.status_code == 200
    assert opens_dashboard(client)
    assert not opens_dashboard(other)
    assert not opens_dashboard(browsers(), captured)


def test_sign_out_everywhere_else(
    client: FlaskClient, create_user: Callable[..., Any],
    browsers: Callable[[], FlaskClient],
) -> None:
    user = create_user()
    phone, laptop = browsers(), browsers()
    sign_in(phone, user.email, headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 "
                                        "like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
                                        "Gecko) Version/17.0 Mobile/15E148 Safari/604.1"})
    sign_in(laptop, user.email)
    sign_in(client, user.email)
    captured = session_cookie(client)
    page = sessions_table(client)
    assert page.count("<tr") == 4  # the header row, and three sessions
    assert "Mobile Safari on iOS" in page
    assert "This device" in page

    response = post_form(client, "/account/sessions/sign-out-others", {},
                         form_page="/account/security")
    assert response.status_code == 302
    assert "Every other session has been signed out." in client.get(
        "/account/security").get_data(as_text=True)
    assert opens_dashboard(client)
    assert not opens_dashboard(phone)
    assert not opens_dashboard(laptop)
    assert not opens_dashboard(browsers(), captured)
    assert sessions_table(client).count("<tr") == 2  # the header row, and this session
    assert "Signed out everywhere else" in client.get("/account/security").get_data(
        as_text=True)


def test_revoking_one_session(
    client: FlaskClient, create_user: Callable[..., Any],
    browsers: Callable[[], FlaskClient],
) -> None:
    user = create_user()
    other = browsers()
    sign_in(other, user.email)
    sign_in(client, user.email)
    page = client.get("/account/security").get_data(as_text=True)
    handles = re.findall(r'/account/sessions/([0-9a-f]{32})/revoke', page)
    assert len(set(handles)) == 1
    # The page names sessions by a handle, never by their (secret) id.
    assert session_cookie(other) not in page and session_cookie(client) not in page
    response = post_form(client, f"/account/sessions/{handles[0]}/revoke", {},
                         form_page="/account/security", headers={"HX-Request": "true"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="sessions"')
    assert "That session has been signed out." in fragment
    assert not opens_dashboard(other)
    assert opens_dashboard(client)
    assert "A session was signed out from this page" in client.get(
        "/account/security").get_data(as_text=True)
    # Revoking it again, or a made-up handle, changes nothing and says so.
    again = post_form(client, f"/account/sessions/{handles[0]}/revoke", {},
                      form_page="/account/security")
    assert again.status_code == 302
    assert "That session has ended already." in client.get("/account/security").get_data(
        as_text=True)


def test_another_persons_session_cannot_be_revoked(
    client: FlaskClient, create_user: Callable[..., Any],
    browsers: Callable[[], FlaskClient],
) -> None:
    victim, attacker = create_user(), create_user()
    theirs = browsers()
    sign_in(theirs, victim.email)
    sign_in(client, victim.email)
    handle = re.findall(r"/account/sessions/([0-9a-f]{32})/revoke",
                        client.get("/account/security").get_data(as_text=True))[0]
    sign_out(client)
    sign_in(client, attacker.email)
    post_form(client, f"/account/sessions/{handle}/revoke", {}, form_page="/account/security")
    assert opens_dashboard(theirs)


def test_idle_timeout_of_thirty_minutes(
    client: FlaskClient, create_user: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = create_user()
    start = sessions.now()
    clock = {"now": start}
    monkeypatch.setattr(sessions, "now", lambda: clock["now"])
    sign_in(client, user.email)
    clock["now"] = start + 29 * 60
    assert opens_dashboard(client)
    clock["now"] += 29 * 60  # idle for 29 minutes again: still fine
    assert opens_dashboard(client)
    clock["now"] += 30 * 60 + 1
    assert not opens_dashboard(client)


def test_absolute_lifetime_of_twelve_hours(
    client: FlaskClient, create_user: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = create_user()
    start = sessions.now()
    clock = {"now": start}
    monkeypatch.setattr(sessions, "now", lambda: clock["now"])
    sign_in(client, user.email)
    while clock["now"] < start + 12 * 3600 - 25 * 60:
        clock["now"] += 25 * 60  # active every 25 minutes
        assert opens_dashboard(client), f"{(clock['now'] - start) / 3600:.1f} h"
    clock["now"] = start + 12 * 3600 + 1
    assert not opens_dashboard(client)


def choose_binding(client: FlaskClient, binding: str, ip: str) -> None:
    token = csrf_token_from(client, "/account/security")
    response = client.post("/account/security/ip-binding",
                           data={"csrf_token": token, "binding": binding},
                           environ_base={"REMOTE_ADDR": ip})
    assert response.status_code == 302


@pytest.mark.parametrize(("binding", "nearby_allowed"), [("strict", False), ("subnet", True)])
def test_ip_binding_refuses_other_addresses(
    app: Flask, create_user: Callable[..., Any], binding: str, nearby_allowed: bool
) -> None:
    user = create_user()
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.10"
    sign_in(client, user.email)
    choose_binding(client, binding, "203.0.113.10")
    assert "Saved" in client.get("/account/security").get_data(as_text=True)
    assert opens_dashboard(client)

    nearby = client.get("/dashboard/", environ_base={"REMOTE_ADDR": "203.0.113.77"})
    assert (nearby.status_code == 200) is nearby_allowed
    if nearby_allowed:
        far = client.get("/dashboard/", environ_base={"REMOTE_ADDR": "198.51.100.4"})
        assert far.status_code == 302
    # Refused once, the session is over, from anywhere.
    assert not opens_dashboard(client)
    assert ("session_refused", {"reason": "address outside the session's IP binding"}) in (
        events_of(user.id))


def test_without_ip_binding_addresses_may_change(
    app: Flask, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "203.0.113.10"
    sign_in(client, user.email)
    assert client.get("/dashboard/", environ_base={"REMOTE_ADDR": "198.51.100.4"}).status_code \
        == 200


def test_an_invalid_binding_is_refused_in_its_form(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    sign_in(client, create_user().email)
    response = post_form(client, "/account/security/ip-binding", {"binding": "country"},
                         form_page="/account/security", headers={"HX-Request": "true"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="ip_binding"')
    assert "Choose one of the options." in html


def test_the_security_page_shows_the_log_newest_first_in_pages(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    for attempt in range(22):
        if attempt % 10 == 9:
            limiter.reset()  # more failures than a minute allows, for a long log
        assert sign_in(client, user.email, "a wrong password!").status_code == 401
    sign_in(client, user.email)
    first = client.get("/account/security").get_data(as_text=True)
    rows = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td>", first)
    assert rows[0] == "Signed in"
    assert rows[1] == "Failed sign-in: wrong password"
    assert len(rows) == 20
    assert 'href="/account/security?page=2#security_log"' in first
    second = client.get("/account/security?page=2", headers={"HX-Request": "true"})
    fragment = second.get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="security_log"')
    older = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td>", fragment)
    assert older[-1] == "Account created"
    assert "Newer" in fragment


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    for url in ("/account/security", "/account/password", "/account/email",
                "/account/two-factor"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith(f"/account/login?next={url}")


@pytest.fixture
def production_app(app_config: dict[str, Any]) -> Iterator[Flask]:
    config = {**app_config, "PORTAL_ENV": "production", "TESTING": True,
              "SECRET_KEY": "production-like-secret-key-for-the-cookie-test"}
    application = create_app(config)
    yield application
    with application.app_context():
        db.engine.dispose()


def test_production_cookies_are_host_only_secure_httponly_lax(
    production_app: Flask, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    client = production_app.test_client()
    response = client.get("/account/login", base_url="https://portal.test")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-portal=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes
    assert "domain" not in attributes
    assert "Path=/" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert client.get_cookie("portal_session", domain="portal.test") is None


def test_development_cookies_are_httponly_and_lax(client: FlaskClient) -> None:
    cookie = client.get("/account/login").headers["Set-Cookie"]
    assert cookie.startswith("portal_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


def test_a_session_cookie_from_two_factor_sign_in_is_new(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    csrf_token_from(client, "/account/login")
    before = session_cookie(client)
    sign_in(client, person.email)
    halfway = session_cookie(client)
    post_form(client, "/account/login/two-factor", {"code": totp_code(person.secret)})
    after = session_cookie(client)
    assert len({before, halfway, after}) == 3
    assert opens_dashboard(client)
    assert not opens_dashboard(client, halfway)


def test_a_session_ended_during_a_request_is_not_brought_back(app: Flask) -> None:
    """A request that was under way when its session was revoked ends without reviving it."""
    from portal.extensions import redis_store
    from portal.sessions import META, ServerSession

    interface = app.session_interface
    ended = ServerSession({"_user_id": "usr_gone", META: {"created_at": sessions.now()}},
                          "an-id-that-was-revoked-meanwhile")
    response = app.response_class()
    interface.save_session(app, ended, response)
    store = redis_store.client()
    assert store.get("session:an-id-that-was-revoked-meanwhile") is None
    assert "an-id-that-was-revoked-meanwhile" not in store.smembers("user_sessions:usr_gone")
    assert response.headers["Set-Cookie"].startswith("portal_session=;")
