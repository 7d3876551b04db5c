"""Two-factor sign-in: setting it up from the page, signing in with codes, turning it off."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from portal import sessions
from portal.extensions import db
from portal.models import RecoveryCode, SecurityEvent, User
from portal.services import mfa
from tests.account.conftest import (
    TwoFactorUser,
    last_mail_to,
    opens_dashboard,
    post_form,
    sign_in,
    totp_code,
)
from tests.conftest import DEFAULT_PASSWORD, csrf_token_from


def second_step(client: FlaskClient, code: str, **kwargs: Any) -> Any:
    return post_form(client, "/account/login/two-factor", {"code": code}, **kwargs)


def events_of(user_id: str) -> list[str]:
    return list(db.session.scalars(sa.select(SecurityEvent.event).where(
        SecurityEvent.user_id == user_id).order_by(SecurityEvent.id)))


def secret_on_page(html: str) -> str:
    found = re.search(r'<code class="totp-secret"[^>]*>([A-Z2-7 ]+)</code>', html)
    assert found, "the key for manual entry is shown"
    return found.group(1).replace(" ", "")


def test_setting_up_two_factor_from_the_page(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    assert sign_in(client, user.email).status_code == 302
    page = client.get("/account/two-factor")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # The QR code is inline SVG: no image request, no inline script or style.
    svg = re.search(r"<svg[^>]*>.*?</svg>", html, flags=re.S)
    assert svg and 'role="img"' in svg.group(0) and "<title>" in svg.group(0)
    assert "<script" not in svg.group(0) and "style=" not in svg.group(0)
    secret = secret_on_page(html)
    # Reloading keeps the same key (the app may have it already).
    assert secret_on_page(client.get("/account/two-factor").get_data(as_text=True)) == secret
    # The key is not stored in the clear anywhere, and not yet on the account.
    assert db.session.get(User, user.id).mfa_secret is None  # type: ignore[union-attr]

    wrong = post_form(client, "/account/two-factor", {"code": "000000"})
    assert wrong.status_code == 422
    assert "That code does not match" in wrong.get_data(as_text=True)
    assert 'id="code-error"' in wrong.get_data(as_text=True)

    done = post_form(client, "/account/two-factor", {"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    shown = done.get_data(as_text=True)
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", shown)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert "they are shown only now" in shown
    assert done.headers["Cache-Control"] == "no-store"

    stored = db.session.get(User, user.id)
    assert stored is not None and stored.mfa_enabled
    assert stored.mfa_secret and stored.mfa_secret.startswith("v1:")
    assert secret not in stored.mfa_secret
    assert mfa.unseal(user.id, stored.mfa_secret) == secret
    digests = db.session.scalars(sa.select(RecoveryCode.code_hash).where(
        RecoveryCode.user_id == user.id)).all()
    assert len(digests) == 10 and all(len(d) == 64 for d in digests)
    assert not any(code.replace("-", "") in digest for code in codes for digest in digests)
    assert "mfa_enabled" in events_of(user.id)
    # Still signed in here, and the page now says two-factor is on.
    assert "is <strong>on</strong>" in client.get("/account/two-factor").get_data(as_text=True)


def test_the_sealed_secret_is_bound_to_its_account(app: Any) -> None:
    sealed = mfa.seal("usr_one", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    assert mfa.unseal("usr_one", sealed) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        mfa.unseal("usr_two", sealed)


def test_setup_explains_why_and_returns_to_a_safe_next_page(
    client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    user = create_user()
    sign_in(client, user.email)
    reason = "Turn on two-factor sign-in before you approve expenses."
    url = f"/account/two-factor?next=/dashboard/some-org/expenses&reason={reason}"
    html = client.get(url).get_data(as_text=True)
    assert reason in html
    secret = secret_on_page(html)
    done = post_form(client, url, {"code": pyotp.TOTP(secret).now()})
    assert 'href="/dashboard/some-org/expenses"' in done.get_data(as_text=True)

    other = create_user()
    client.post("/account/logout", data={"csrf_token": _token(client)})
    sign_in(client, other.email)
    evil = "/account/two-factor?next=https://evil.example/&reason=x"
    secret = secret_on_page(client.get(evil).get_data(as_text=True))
    done = post_form(client, evil, {"code": pyotp.TOTP(secret).now()})
    assert "evil.example" not in done.get_data(as_text=True)
    assert 'href="/account/security"' in done.get_data(as_text=True)


def _token(client: FlaskClient) -> str:
    return csrf_token_from(client, "/dashboard/")


def test_sign_in_with_a_totp_code(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    first = sign_in(client, person.email)
    assert first.status_code == 302
    assert first.headers["Location"] == "/account/login/two-factor"
    # Half signed in is not signed in.
    assert not opens_dashboard(client)
    response = second_step(client, totp_code(person.secret))
    assert response.status_code == 302
    assert opens_dashboard(client)
    assert events_of(person.user.id)[-1] == "signed_in"


def test_a_wrong_code_is_refused_and_logged(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    sign_in(client, person.email)
    response = second_step(client, "123456" if totp_code(person.secret) != "123456" else "654321")
    assert response.status_code == 401
    assert "That code is not right" in response.get_data(as_text=True)
    assert not opens_dashboard(client)
    assert "mfa_failed" in events_of(person.user.id)


def test_a_totp_code_works_only_once(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    code = totp_code(person.secret)
    sign_in(client, person.email)
    assert second_step(client, code).status_code == 302
    assert opens_dashboard(client)
    client.post("/account/logout", data={"csrf_token": _token(client)})

    sign_in(client, person.email)
    replayed = second_step(client, code)
    assert replayed.status_code == 401
    assert "has been used already" in replayed.get_data(as_text=True)
    assert not opens_dashboard(client)
    # The next code in the app works.
    assert second_step(client, totp_code(person.secret, 1)).status_code == 302
    assert opens_dashboard(client)


def test_a_recovery_code_works_once(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    code = person.recovery_codes[3]
    sign_in(client, person.email)
    used = second_step(client, f"  {code.upper()} ")
    assert used.status_code == 302
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "You signed in with a recovery code; it cannot be used again. 9 of your " \
        "recovery codes are left." in page.get_data(as_text=True)
    client.post("/account/logout", data={"csrf_token": _token(client)})

    sign_in(client, person.email)
    again = second_step(client, code)
    assert again.status_code == 401
    assert not opens_dashboard(client)
    assert "recovery_code_used" in events_of(person.user.id)


def test_the_half_done_sign_in_lasts_five_minutes(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    person = two_factor_user()
    sign_in(client, person.email)
    token = csrf_token_from(client, "/account/login/two-factor")
    started = sessions.now()
    monkeypatch.setattr(sessions, "now", lambda: started + 5 * 60 + 5)
    late = client.post("/account/login/two-factor",
                       data={"csrf_token": token, "code": totp_code(person.secret)})
    assert late.status_code == 302
    assert late.headers["Location"] == "/account/login"
    assert "waited too long" in client.get("/account/login").get_data(as_text=True)
    assert not opens_dashboard(client)


def test_five_wrong_codes_end_the_half_done_sign_in(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    sign_in(client, person.email)
    token = csrf_token_from(client, "/account/login/two-factor")
    wrong = "000000" if totp_code(person.secret) != "000000" else "111111"

    def send(code: str) -> Any:
        return client.post("/account/login/two-factor", data={"csrf_token": token,
                                                               "code": code})

    for _ in range(4):
        assert send(wrong).status_code == 401
    ended = send(wrong)
    assert ended.status_code == 302
    assert ended.headers["Location"] == "/account/login"
    # Even the right code needs the password again now.
    assert send(totp_code(person.secret)).headers["Location"] == "/account/login"
    assert not opens_dashboard(client)


def test_new_recovery_codes_replace_the_old_ones(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    sign_in(client, person.email)
    second_step(client, totp_code(person.secret))
    wrong = post_form(client, "/account/two-factor/recovery-codes",
                      {"codes-password": "not my password at all"},
                      form_page="/account/two-factor")
    assert wrong.status_code == 422
    assert "That is not your current password." in wrong.get_data(as_text=True)
    response = post_form(client, "/account/two-factor/recovery-codes",
                         {"codes-password": DEFAULT_PASSWORD}, form_page="/account/two-factor")
    assert response.status_code == 200
    new_codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>",
                           response.get_data(as_text=True))
    assert len(new_codes) == 10
    assert "recovery_codes_regenerated" in events_of(person.user.id)
    client.post("/account/logout", data={"csrf_token": _token(client)})
    sign_in(client, person.email)
    assert second_step(client, person.recovery_codes[0]).status_code == 401
    assert second_step(client, new_codes[0]).status_code == 302


def test_turning_two_factor_off_needs_the_password_and_a_code(
    client: FlaskClient, two_factor_user: Callable[..., TwoFactorUser]
) -> None:
    person = two_factor_user()
    sign_in(client, person.email)
    second_step(client, totp_code(person.secret))
    url = "/account/two-factor/disable"
    no_code = post_form(client, url, {"disable-password": DEFAULT_PASSWORD,
                                      "disable-code": "000000"}, form_page="/account/two-factor")
    assert no_code.status_code == 422
    no_password = post_form(client, url, {"disable-password": "wrong password here",
                                          "disable-code": totp_code(person.secret, 1)},
                            form_page="/account/two-factor")
    assert no_password.status_code == 422
    assert db.session.get(User, person.user.id).mfa_enabled  # type: ignore[union-attr]

    off = post_form(client, url, {"disable-password": DEFAULT_PASSWORD,
                                  "disable-code": totp_code(person.secret, 1)},
                    form_page="/account/two-factor")
    assert off.status_code == 302
    assert off.headers["Location"] == "/account/security"
    assert "Two-factor sign-in is off" in client.get("/account/security").get_data(as_text=True)
    stored = db.session.get(User, person.user.id)
    assert stored is not None
    assert not stored.mfa_enabled and stored.mfa_secret is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == person.user.id)) == 0
    assert "mfa_disabled" in events_of(person.user.id)
    assert "Two-factor sign-in was turned off" in str(last_mail_to(person.email)["Subject"])
    # Signing in takes the password alone again.
    client.post("/account/logout", data={"csrf_token": _token(client)})
    assert sign_in(client, person.email).headers["Location"] == "/dashboard/"
