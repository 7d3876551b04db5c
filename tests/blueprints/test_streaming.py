"""Streamed downloads keep their scope after the view has returned (as in production)."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable

import pytest
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
