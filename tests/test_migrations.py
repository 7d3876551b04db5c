"""The schema comes from the migrations, and the models agree with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from portal import create_app
from portal.extensions import db


def test_models_match_the_migrated_schema(app: Flask) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    # Alembic cannot compare expression indexes; these live in the migration only.
    expression_indexes = {"uq_users_email_lower", "uq_ledger_entries_reverses",
                          "ix_ledger_entries_refers_to", "ix_ledger_entries_category",
                          "ix_ledger_entries_fund", "ix_ledger_entries_withheld",
                          "ix_ledger_entries_delayed", "ix_ledger_entries_public_text"}
    differences = [d for d in differences if not (
        isinstance(d, tuple) and d[0] in {"add_index", "remove_index"}
        and d[1].name in expression_indexes
    )]
    assert differences == []


@pytest.fixture
def scratch_app(postgres_server_url: str, app_config: dict[str, Any]) -> Iterator[Flask]:
    from sqlalchemy.engine import make_url

    name = f"portal_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    application = create_app({**app_config, "DATABASE_URL": url})
    yield application
    with application.app_context():
        db.engine.dispose()
    with psycopg.connect(postgres_server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_go_down_and_up_again(scratch_app: Flask) -> None:
    import flask_migrate
    import sqlalchemy as sa

    def tables() -> set[str]:
        return set(sa.inspect(db.engine).get_table_names())

    with scratch_app.app_context():
        flask_migrate.upgrade()
        assert {"organisations", "ledger_entries", "ledger_heads", "ledger_totals"} <= tables()
        flask_migrate.downgrade(revision="base")
        assert tables() <= {"alembic_version"}
        flask_migrate.upgrade()
        assert "ledger_entries" in tables()
