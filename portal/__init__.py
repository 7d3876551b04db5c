"""The transparency portal: ``create_app`` builds the Flask application."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, g

from portal import embedded
from portal.config import check_settings, load_settings, secret_key_for, sqlalchemy_url
from portal.extensions import csrf, db, htmx, limiter, limits_storage_uri, migrate, redis_store

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _fresh_request_globals() -> None:
    """A request starts with nothing left in ``g`` by earlier work in its app context.

    Each request normally has an app context of its own; when it shares one (a test
    body, an internal request), stale values such as the signed-in user or the CSRF
    token of an earlier request must not carry over.
    """
    g.__dict__.clear()


def _trust_proxies(app: Flask, hops: int) -> None:
    """Behind ``hops`` reverse proxies, take the client's address, scheme and host from
    their X-Forwarded-* headers (rate limits and IP binding need the real address)."""
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with ``test_config`` overriding any setting."""
    settings = load_settings()
    if test_config:
        settings.update(test_config)
    check_settings(settings)
    instance_path = Path(settings["INSTANCE_PATH"] or PROJECT_ROOT / "instance").resolve()
    app = Flask(
        __name__,
        instance_path=str(instance_path),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(settings)
    app.config["TESTING"] = settings["PORTAL_ENV"] == "testing" or bool(settings.get("TESTING"))
    app.config["SECRET_KEY"] = secret_key_for(settings, instance_path)
    # Uploads (receipts) may be as large as a receipt, plus the form around it.
    app.config["MAX_CONTENT_LENGTH"] = settings["RECEIPT_MAX_BYTES"] + 1024 * 1024
    app.config["SESSION_COOKIE_SECURE"] = settings["PORTAL_ENV"] == "production"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

    if settings["DATABASE_URL"]:
        database_url = settings["DATABASE_URL"]
        migration_url = settings["MIGRATION_DATABASE_URL"] or database_url
    else:
        urls = embedded.postgres_urls(instance_path / "postgres")
        database_url, migration_url = urls.app, urls.owner
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(database_url)
    app.config["MIGRATION_DATABASE_URI"] = sqlalchemy_url(migration_url)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {
        "pool_size": settings["DATABASE_POOL_SIZE"],
        "max_overflow": settings["DATABASE_POOL_SIZE"],
        # A dropped connection is replaced after one failed use; pinging before
        # every checkout would add a round trip to every transaction.
        "pool_recycle": 1800,
    })
    app.config["SQLALCHEMY_ECHO"] = settings["SQL_ECHO"]
    app.config["REDIS_URL"] = settings["REDIS_URL"] or embedded.redis_url(
        instance_path / "redis.db"
    )

    logging.getLogger("portal").setLevel(settings["LOG_LEVEL"])
    _trust_proxies(app, settings["TRUSTED_PROXIES"])

    # Registered first, so it runs before any extension's own request hooks.
    app.before_request(_fresh_request_globals)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    htmx.init_app(app)
    redis_store.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", limits_storage_uri(app.config["REDIS_URL"]))
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)

    from portal import (
        jobs,
        models,  # noqa: F401  (registers the tables on the metadata)
    )
    from portal.auth import init_auth
    from portal.blueprints import register_blueprints
    from portal.cli import register_cli
    from portal.services.payments import init_app as init_payments
    from portal.web import register_web

    init_auth(app)
    init_payments(app)
    jobs.init_app(app)
    register_blueprints(app)
    register_web(app)
    register_cli(app)
    return app
