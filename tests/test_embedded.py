"""With no DATABASE_URL / REDIS_URL the app runs real servers whose data survives restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import flask_migrate
from portal import create_app
from portal.extensions import db, redis_store
from portal.services import ledger, organisations, tenancy

app = create_app()
with app.app_context():
    flask_migrate.upgrade()
    tenancy.platform()
    store = redis_store.client()
    if sys.argv[1] == "write":
        org = organisations.create_organisation(name="Persistent Org", country="FR",
                                                default_currency="EUR", status="active")
        ledger.append_entry(org.id, "donation_received", 4200, "EUR")
        db.session.commit()
        store.set("survives", "yes")
    found = organisations.find_organisation("persistent-org")
    print(json.dumps({
        "database": app.config["SQLALCHEMY_DATABASE_URI"],
        "redis": app.config["REDIS_URL"],
        "entries": ledger.get_head(found.id).sequence,
        "balance": ledger.balances(found.id),
        "redis_value": store.get("survives"),
    }))
"""


def run(tmp_path: Path, step: str) -> dict[str, object]:
    environ = {key: value for key, value in os.environ.items()
               if key not in {"DATABASE_URL", "REDIS_URL"}}
    environ.update(INSTANCE_PATH=str(tmp_path / "instance"), PORTAL_ENV="development",
                   PYTHONWARNINGS="ignore")
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, step], env=environ, capture_output=True, text=True,
        timeout=180, check=False, cwd=Path(__file__).resolve().parent.parent,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_embedded_servers_keep_their_data_across_restarts(tmp_path: Path) -> None:
    first = run(tmp_path, "write")
    assert "postgresql+psycopg://" in str(first["database"])
    assert str(first["redis"]).startswith("unix://")
    assert (tmp_path / "instance" / "postgres" / "PG_VERSION").exists()
    second = run(tmp_path, "read")
    assert second["entries"] == 1
    assert second["balance"] == {"EUR": 4200}
    assert second["redis_value"] == "yes"
    assert (tmp_path / "instance" / "redis.db").exists()
