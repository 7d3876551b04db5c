"""The public pages of the ledger core: health, the directory and the JSON download."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger


def test_health(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_directory_lists_active_organisations_only(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    create_org(name="Visible <b>Charity</b>")
    create_org(name="Waiting Charity", status="pending")
    page = client.get("/").get_data(as_text=True)
    assert "Visible &lt;b&gt;Charity&lt;/b&gt;" in page
    assert "<b>Charity</b>" not in page
    assert "Waiting Charity" not in page


def test_ledger_download_streams_the_public_export(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 2500, "EUR", {"donor_name": "Ada"})
    ledger.append_entry(org.id, "expense", -100, "EUR",
                        {"payee": "Secret Payee", "visibility": "internal_only"})
    db.session.commit()
    response = client.get(f"/orgs/{org.slug}/ledger.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True)
    assert "Secret Payee" not in body
    document = json.loads(body)
    assert [row.get("redacted", False) for row in document["entries"]] == [False, True]


def test_ledger_download_of_unknown_or_pending_organisations_is_404(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    pending = create_org(status="pending")
    assert client.get("/orgs/nobody/ledger.json").status_code == 404
    assert client.get(f"/orgs/{pending.slug}/ledger.json").status_code == 404


def test_links_follow_where_the_app_is_mounted(client: FlaskClient) -> None:
    mounted = client.get("/", environ_overrides={"SCRIPT_NAME": "/portal"})
    assert 'href="/portal/how-to-verify"' in mounted.get_data(as_text=True)
    at_root = client.get("/")
    assert 'href="/how-to-verify"' in at_root.get_data(as_text=True)
    assert 'href="/portal/' not in at_root.get_data(as_text=True)
