"""Server-side sessions in Redis, with a registry of each person's active sessions.

The browser holds only a random session id (256 bits) in an HttpOnly, SameSite=Lax
cookie, named with the ``__Host-`` prefix and marked Secure outside development.
Everything else lives in Redis under that id: so a session can be listed, revoked,
and checked on every request against its idle timeout, its absolute lifetime and the
person's security stamp. A session that holds nothing sets no cookie, so public
pages stay cookie-free and cacheable.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from portal.extensions import redis_store

META = "_meta"


def _key(session_id: str) -> str:
    return f"session:{session_id}"


def _index(user_id: str) -> str:
    return f"user_sessions:{user_id}"


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """The session's data; its id and bookkeeping are kept beside it."""

    def __init__(self, initial: dict[str, Any] | None = None, session_id: str | None = None,
                 new: bool = False) -> None:
        def touched(_: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, touched)
        self.session_id = session_id or secrets.token_urlsafe(32)
        self.new = new
        self.modified = False
        self.regenerated_from: str | None = None

    def regenerate(self) -> None:
        """A new id for the same contents (at sign-in): the old cookie stops working."""
        self.regenerated_from = self.session_id
        self.session_id = secrets.token_urlsafe(32)
        self.modified = True


@dataclass(frozen=True)
class SessionRecord:
    """One active session, as the active-sessions page shows it."""

    session_id: str
    user_id: str
    created_at: float
    last_active: float
    ip: str
    user_agent: str

    @property
    def handle(self) -> str:
        return session_handle(self.session_id)


def session_handle(session_id: str) -> str:
    """A name for a session that pages may show: the id itself is the bearer secret."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def now() -> float:
    """The sessions' clock (tests move it)."""
    return time.time()


class RedisSessionInterface(SessionInterface):
    def cookie_name(self, app: Flask) -> str:
        secure = bool(app.config["SESSION_COOKIE_SECURE"])
        return "__Host-portal" if secure else "portal_session"

    def _limits(self, app: Flask) -> tuple[float, float]:
        return (app.config["SESSION_IDLE_MINUTES"] * 60.0,
                app.config["SESSION_LIFETIME_HOURS"] * 3600.0)

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        session_id = request.cookies.get(self.cookie_name(app))
        if not session_id or len(session_id) > 100:
            return ServerSession(new=True)
        raw = redis_store.client(app).get(_key(session_id))
        if raw is None:
            return ServerSession(new=True)
        data = json.loads(raw)
        meta = data.get(META, {})
        idle, lifetime = self._limits(app)
        moment = now()
        if (moment - meta.get("last_active", 0) > idle
                or moment - meta.get("created_at", 0) > lifetime):
            delete_session(app, session_id, meta.get("user_id"))
            return ServerSession(new=True)
        return ServerSession(data, session_id)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        name = self.cookie_name(app)
        secure = bool(app.config["SESSION_COOKIE_SECURE"])
        store = redis_store.client(app)
        user_id = session.get("_user_id")
        if session.regenerated_from:
            delete_session(app, session.regenerated_from, str(user_id) if user_id else None)
        contents = {key: value for key, value in session.items() if key != META}
        if not contents:
            if not session.new:
                delete_session(app, session.session_id, session.get(META, {}).get("user_id"))
                response.delete_cookie(name, path="/", secure=secure, httponly=True,
                                       samesite="Lax")
            return
        meta = dict(session.get(META, {}))
        moment = now()
        meta.setdefault("created_at", moment)
        meta["last_active"] = moment
        meta["user_id"] = user_id
        idle, lifetime = self._limits(app)
        ttl = int(max(1, min(idle, lifetime - (moment - meta["created_at"]))))
        value = json.dumps({**contents, META: meta})
        fresh = session.new or session.regenerated_from is not None
        # An existing session is only ever updated, never created: a request that was
        # under way while the session was revoked (or signed out elsewhere) must not
        # bring it back to life when it ends.
        stored = store.set(_key(session.session_id), value, ex=ttl, nx=fresh, xx=not fresh)
        if not stored:
            response.delete_cookie(name, path="/", secure=secure, httponly=True,
                                   samesite="Lax")
            return
        if user_id:
            store.sadd(_index(str(user_id)), session.session_id)
        response.set_cookie(
            name, session.session_id, max_age=int(lifetime), path="/",
            secure=secure, httponly=True, samesite="Lax",
        )
        response.vary.add("Cookie")


def delete_session(app: Flask, session_id: str, user_id: str | None) -> None:
    store = redis_store.client(app)
    store.delete(_key(session_id))
    if user_id:
        store.srem(_index(user_id), session_id)


def user_sessions(app: Flask, user_id: str) -> Iterator[SessionRecord]:
    """The person's sessions that are still alive (expired ones are forgotten on the way)."""
    store = redis_store.client(app)
    for member in sorted(store.smembers(_index(user_id))):
        session_id = str(member)
        raw = store.get(_key(session_id))
        if raw is None:
            store.srem(_index(user_id), session_id)
            continue
        meta = json.loads(raw).get(META, {})
        yield SessionRecord(session_id, user_id, meta.get("created_at", 0.0),
                            meta.get("last_active", 0.0), meta.get("ip", ""),
                            meta.get("user_agent", ""))


def find_session(app: Flask, user_id: str, handle: str) -> SessionRecord | None:
    """The person's live session with this handle, if there is one."""
    for record in user_sessions(app, user_id):
        if secrets.compare_digest(record.handle, handle):
            return record
    return None


def end_all_sessions(app: Flask, user_id: str, *, keep: str | None = None) -> int:
    """End every session of a person (but ``keep``); return how many ended."""
    ended = 0
    for record in list(user_sessions(app, user_id)):
        if record.session_id != keep:
            delete_session(app, record.session_id, user_id)
            ended += 1
    return ended
