"""Signing in and out on the web: sessions, Flask-Login, and the checks on every request.

A signed-in session records the person's security stamp, when it started, the
address it came from and the browser. On every request the person is loaded afresh
and the session is refused (and ended, and logged) when the stamp has changed
(password or email changed, two-factor settings changed, "sign out everywhere"),
or when the address breaks the person's chosen IP binding.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, current_app, request, session
from flask_login import login_user, logout_user
from user_agents import parse as parse_user_agent

from portal.extensions import db, login_manager
from portal.models import User
from portal.services import accounts, tenancy
from portal.sessions import META, ServerSession, delete_session, now


def client_ip() -> str:
    return request.remote_addr or ""


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


def sign_in(user: User) -> None:
    """Start a fresh session for ``user``: a new session id, the stamp, the device."""
    assert isinstance(session, ServerSession)
    session.clear()
    session.regenerate()
    login_user(user)
    agent = request.headers.get("User-Agent", "")[:400]
    session[META] = {"created_at": now(), "stamp": user.security_stamp, "ip": client_ip(),
                     "user_agent": agent}
    accounts.log(user.id, "signed_in", ip=masked_ip(client_ip()), device=device_name(agent))


def sign_out() -> None:
    assert isinstance(session, ServerSession)
    user_id = session.get("_user_id")
    logout_user()
    session.clear()
    if user_id:
        delete_session(current_app._get_current_object(), session.session_id,  # type: ignore[attr-defined]
                       str(user_id))
        accounts.log(str(user_id), "signed_out", ip=masked_ip(client_ip()))


def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the person, if this session is still theirs to use."""
    tenancy.for_user(user_id)
    user = db.session.get(User, user_id)
    meta = session.get(META, {})
    if user is None or meta.get("stamp") != user.security_stamp:
        reason = "security stamp changed" if user is not None else "account gone"
        _end_current(user_id, reason)
        return None
    if not _same_network(meta.get("ip", ""), client_ip(), user.ip_binding):
        _end_current(user_id, "address outside the session's IP binding")
        return None
    return user


def _end_current(user_id: str, reason: str) -> None:
    assert isinstance(session, ServerSession)
    delete_session(current_app._get_current_object(), session.session_id, user_id)  # type: ignore[attr-defined]
    session.clear()
    accounts.log(user_id, "session_refused", ip=masked_ip(client_ip()), reason=reason)
    db.session.commit()


def init_auth(app: Flask) -> None:
    from portal.sessions import RedisSessionInterface

    app.session_interface = RedisSessionInterface()
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    login_manager.session_protection = None  # our stamps and IP binding do this job
    login_manager.login_view = "account.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
