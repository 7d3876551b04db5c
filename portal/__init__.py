"""The transparency portal: ``create_app`` builds the Flask application."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from portal import embedded
from portal.config import check_settings, load_settings, secret_key_for, sqlalchemy_url
from portal.extensions import csrf, db, htmx, migrate, redis_store

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    htmx.init_app(app)
    redis_store.init_app(app)

    from portal import models  # noqa: F401  (registers the tables on the metadata)
    from portal.blueprints import register_blueprints
    from portal.cli import register_cli
    from portal.web import register_web

    register_blueprints(app)
    register_web(app)
    register_cli(app)
    return app
