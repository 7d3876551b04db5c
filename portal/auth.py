"""Signing in and out on the web: sessions, Flask-Login, and the checks on every request.

A signed-in session records the person's security stamp, when it started, the
address it came from and the browser. On every request the person is loaded afresh
and the session is refused (and ended, and logged) when the stamp has changed
(password or email changed, two-factor settings changed, "sign out everywhere"),
or when the address breaks the person's chosen IP binding.

A sign-in that still owes its second step (a two-factor code) is kept in the session
for a few minutes without signing anyone in; completing it starts a fresh session.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, request, session
from flask_login import login_user, logout_user
from user_agents import parse as parse_user_agent

from portal import sessions
from portal.extensions import db, login_manager
from portal.models import User
from portal.services import accounts, tenancy
from portal.sessions import META, ServerSession, delete_session

#: How long the second step of a sign-in may wait for its code.
TWO_FACTOR_PENDING_SECONDS = 5 * 60
#: Wrong codes one half-done sign-in may take before the password is asked again.
TWO_FACTOR_ATTEMPTS = 5
PENDING = "two_factor_pending"


def client_ip() -> str:
    return request.remote_addr or ""


def client_agent() -> str:
    return request.headers.get("User-Agent", "")[:400]


def masked_ip(ip: str) -> str:
    """Enough to recognise a network, not a household: 203.0.113.x, 2001:db8:1::/48."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if address.version == 4:
        return ".".join(ip.split(".")[:3]) + ".x"
    network = ipaddress.ip_network(f"{ip}/48", strict=False)
    return str(network)


def device_name(user_agent: str) -> str:
    """"Firefox on Windows", "Safari on iOS" …"""
    agent = parse_user_agent(user_agent or "")
    browser = agent.browser.family or "Unknown browser"
    system = agent.os.family or "unknown system"
    return f"{browser} on {system}"


def _same_network(first: str, second: str, binding: str) -> bool:
    if binding == "none":
        return True
    if binding == "strict":
        return first == second
    try:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:
        return False
    prefix = 24 if a.version == 4 else 48
    if a.version != b.version:
        return False
    return ipaddress.ip_network(f"{a}/{prefix}", strict=False) == ipaddress.ip_network(
        f"{b}/{prefix}", strict=False)


def _server_session() -> ServerSession:
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, ServerSession)
    return current


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def current_session_id() -> str:
    return _server_session().session_id


def is_current_session(session_id: str) -> bool:
    """True for this browser's session (also under the id it had before a renewal)."""
    current = _server_session()
    return session_id in (current.session_id, current.regenerated_from)


def sign_in(user: User, *, method: str = "password") -> None:
    """Start a fresh session for ``user``: a new session id, the stamp, the device."""
    current = _server_session()
    current.clear()
    current.regenerate()
    login_user(user)
    agent = client_agent()
    current[META] = {"created_at": sessions.now(), "stamp": user.security_stamp,
                     "ip": client_ip(), "user_agent": agent}
    accounts.record_sign_in(user.id, ip=masked_ip(client_ip()), device=device_name(agent),
                            method=method)


def sign_out() -> None:
    current = _server_session()
    user_id = current.get("_user_id")
    ended = current.session_id
    logout_user()
    current.clear()
    # Whatever this browser keeps after signing out (a message) goes under a new id.
    current.regenerate()
    if user_id:
        delete_session(_app(), ended, str(user_id))
        accounts.record_sign_out(str(user_id), ip=masked_ip(client_ip()))


def keep_signed_in(stamp: str) -> None:
    """After this person's stamp changed: this session carries on, under a new id.

    Every other session ends at its next request (its stamp is stale); this one
    adopts the new stamp, and its old id (which might have been captured) stops
    working.
    """
    current = _server_session()
    current[META] = {**current.get(META, {}), "stamp": stamp}
    current.regenerate()


def anchor_to_current_address() -> None:
    """IP binding compares against this address from now on (when the choice changes)."""
    current = _server_session()
    current[META] = {**current.get(META, {}), "ip": client_ip()}


def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the person, if this session is still theirs to use."""
    tenancy.for_user(user_id)
    user = db.session.get(User, user_id)
    meta = session.get(META, {})
    if user is None or not user.is_active or meta.get("stamp") != user.security_stamp:
        reason = "security stamp changed" if user is not None else "account gone"
        _end_current(user_id, reason)
        return None
    if not _same_network(meta.get("ip", ""), client_ip(), user.ip_binding):
        _end_current(user_id, "address outside the session's IP binding")
        return None
    return user


def _end_current(user_id: str, reason: str) -> None:
    current = _server_session()
    delete_session(_app(), current.session_id, user_id)
    current.clear()
    current.regenerate()
    accounts.record_refused_session(user_id, ip=masked_ip(client_ip()),
                                    device=device_name(client_agent()), reason=reason)


# --------------------------------------------------------------------------- second step


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in whose password was right and whose two-factor code is still owed."""

    user_id: str
    stamp: str
    next_url: str
    started_at: float
    failures: int


def begin_two_factor(user: User, next_url: str) -> None:
    """Remember that ``user`` got the password right; nobody is signed in yet."""
    current = _server_session()
    current.clear()
    current.regenerate()
    current[PENDING] = {"user_id": user.id, "stamp": user.security_stamp, "next": next_url,
                        "started_at": sessions.now(), "failures": 0}


def pending_two_factor() -> PendingSignIn | None:
    """The half-done sign-in of this browser, if it is young enough."""
    raw: dict[str, Any] | None = session.get(PENDING)
    if not raw:
        return None
    pending = PendingSignIn(str(raw["user_id"]), str(raw["stamp"]), str(raw.get("next", "")),
                            float(raw["started_at"]), int(raw.get("failures", 0)))
    if sessions.now() - pending.started_at > TWO_FACTOR_PENDING_SECONDS:
        abandon_two_factor()
        return None
    return pending


def two_factor_failed() -> bool:
    """Count a wrong code; True when the half-done sign-in has had too many."""
    raw = dict(session.get(PENDING) or {})
    raw["failures"] = int(raw.get("failures", 0)) + 1
    if raw["failures"] >= TWO_FACTOR_ATTEMPTS:
        abandon_two_factor()
        return True
    session[PENDING] = raw
    return False


def abandon_two_factor() -> None:
    session.pop(PENDING, None)


def init_auth(app: Flask) -> None:
    from portal.sessions import RedisSessionInterface

    app.session_interface = RedisSessionInterface()
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    login_manager.session_protection = None  # our stamps and IP binding do this job
    login_manager.login_view = "account.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
