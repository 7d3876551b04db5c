"""A live portal for the verifier to talk to: its own database, two signed checkpoints."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from amply_verify.note import Signer
from portal import create_app
from portal.extensions import db
from portal.models import Organisation
from portal.services import checkpoints, ledger, ledger_export, tenancy
from portal.services.organisations import create_organisation
from tests.conftest import scratch_database

FIRST_DAY = datetime(2031, 7, 1, 18, 0, tzinfo=UTC)
SECOND_DAY = datetime(2031, 7, 2, 18, 0, tzinfo=UTC)


@dataclass
class LivePortal:
    app: Flask
    base_url: str
    org_id: str
    slug: str
    entry_ids: list[str]
    signer: Signer
    key_file: Path
    first: str
    second: str
    first_size: int
    second_size: int

    def export(self, path: Path, audience: str = "public") -> Path:
        with self.app.app_context():
            tenancy.platform()
            org = db.session.get(Organisation, self.org_id)
            with path.open("wb") as out:
                for chunk in ledger_export.export_chunks(org, audience):  # type: ignore[arg-type]
                    out.write(chunk)
            db.session.remove()
        return path


def _append(org_id: str, count: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + count):
        if i % 4 == 3:
            entry = ledger.append_entry(org_id, "expense", -(200 + i), "EUR",
                                        {"category": "programs", "payee": f"Supplier {i}"})
        elif i % 7 == 6:
            entry = ledger.append_entry(org_id, "expense", -(90 + i), "EUR",
                                        {"category": "salaries", "payee": "Staff",
                                         "visibility": "public_aggregated"})
        else:
            entry = ledger.append_entry(org_id, "donation_received", 1_000 + i, "EUR",
                                        {"donor_name": f"Donor {i}"})
        ids.append(entry.entry_id)
    db.session.commit()
    return ids


@pytest.fixture(scope="package")
def live_portal(postgres_server_url: str, app_config: dict[str, Any],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    import flask_migrate

    folder = tmp_path_factory.mktemp("live-portal")
    with scratch_database(postgres_server_url, "portal_verifier") as (urls, _):
        application = create_app({**app_config, "DATABASE_URL": urls.app,
                                  "MIGRATION_DATABASE_URL": urls.owner,
                                  "INSTANCE_PATH": str(folder / "instance")})
        server: BaseWSGIServer = make_server("127.0.0.1", 0, application, threaded=True)
        base_url = f"http://127.0.0.1:{server.server_port}"
        application.config["PUBLIC_BASE_URL"] = base_url
        with application.app_context():
            flask_migrate.upgrade()
            tenancy.platform()
            signer = checkpoints.generate_key("verifier.test")
            org = create_organisation(name="Meadow Trust", country="GB",
                                      default_currency="EUR", status="active")
            org_id, slug = org.id, org.slug
            ids = _append(org_id, 13, 0)
            first = checkpoints.create_checkpoint(FIRST_DAY).checkpoint.id
            ids += _append(org_id, 9, 13)
            second = checkpoints.create_checkpoint(SECOND_DAY).checkpoint.id
            ids += _append(org_id, 2, 22)  # not yet in any checkpoint
            db.session.remove()
        key_file = folder / "key.txt"
        key_file.write_text(f"{signer.verifier}\n")
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield LivePortal(application, base_url, org_id, slug, ids, signer, key_file,
                             first, second, 13, 22)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
            with application.app_context():
                db.engine.dispose()
