"""Streamed downloads keep their scope after the view has returned (as in production)."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger


@pytest.mark.parametrize("path", ["ledger.csv", "ledger.json", "api"])
def test_downloads_stream_in_a_request_of_their_own(
    committed_app: Flask, create_org: Callable[..., Organisation], path: str
) -> None:
    org = create_org()
    for amount in (100, 200, 300):
        ledger.append_entry(org.id, "donation_received", amount, "EUR", {"donor_name": "Ann"})
    db.session.commit()
    url = (f"/api/v1/public/organisations/{org.slug}/ledger/export" if path == "api"
           else f"/orgs/{org.slug}/{path}")
    result: dict[str, object] = {}

    def fetch() -> None:
        # A thread of its own: the request gets its own app context and database
        # session, torn down when the view returns, before the body is produced.
        response = committed_app.test_client().get(url)
        result["status"] = response.status_code
        result["body"] = response.get_data(as_text=True)

    thread = threading.Thread(target=fetch)
    thread.start()
    thread.join()
    assert result["status"] == 200
    body = str(result["body"])
    if path == "ledger.csv":
        assert len(list(csv.reader(io.StringIO(body)))) == 4
    else:
        assert len(json.loads(body)["entries"]) == 3


def test_page_requests_keep_their_statements_prepared(
    committed_app: Flask, create_org: Callable[..., Organisation]
) -> None:
    """A read-only request's transaction is ended without costing the next request its
    prepared statements (the driver drops them all when asked to roll back)."""
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 100, "EUR", {"donor_name": "Ann"})
    db.session.commit()
    url = f"/orgs/{org.slug}/ledger"
    db.session.remove()
    db.engine.dispose()  # from here on the requests below share one connection
    result: dict[str, object] = {}

    def browse() -> None:
        client = committed_app.test_client()
        result["statuses"] = {client.get(url).status_code
                              for _ in range(8)}
        with committed_app.app_context():
            result["prepared"] = db.session.execute(sa.text(
                "SELECT count(*) FROM pg_prepared_statements")).scalar_one()
            pool = db.engine.pool
            assert isinstance(pool, sa.pool.QueuePool)
            result["connections"] = pool.checkedin() + pool.checkedout()

    thread = threading.Thread(target=browse)
    thread.start()
    thread.join()
    assert result["statuses"] == {200}
    assert result["connections"] == 1
    assert int(result["prepared"]) >= 2  # type: ignore[call-overload]
