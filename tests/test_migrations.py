"""The schema comes from the migrations, and the models agree with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from portal import create_app
from portal.extensions import db
from tests.conftest import scratch_database


def test_models_match_the_migrated_schema(app: Flask) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    # Alembic cannot compare expression indexes; these live in the migration only.
    expression_indexes = {"uq_users_email_lower", "uq_ledger_entries_reverses",
                          "ix_ledger_entries_refers_to", "ix_ledger_entries_scheduled"}
    differences = [d for d in differences if not (
        isinstance(d, tuple) and d[0] in {"add_index", "remove_index"}
        and d[1].name in expression_indexes
    )]
    assert differences == []


@pytest.fixture
def scratch_app(postgres_server_url: str, app_config: dict[str, Any]) -> Iterator[Flask]:
    with scratch_database(postgres_server_url, "portal_scratch") as (urls, _):
        application = create_app({**app_config, "DATABASE_URL": urls.app,
                                  "MIGRATION_DATABASE_URL": urls.owner})
        yield application
        with application.app_context():
            db.engine.dispose()


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
