"""Hostile text renders as text; errors are friendly; headers are safe."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger

NASTY = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "<a hx-get=\"/evil\" hx-trigger=\"load\">x</a>",
    "' onmouseover='alert(1)",
    "{{ 7*7 }}",
]


@pytest.fixture
def hostile(app: Flask, create_org: Callable[..., Organisation]) -> Organisation:
    org = create_org(name="<script>alert('org')</script> Trust",
                     description="<b hx-get=\"/x\" hx-trigger=\"load\">bold</b>")
    for text in NASTY:
        ledger.append_entry(org.id, "expense", -100, "EUR",
                            {"payee": text, "description": text, "category": "rent"})
        ledger.append_entry(org.id, "donation_received", 500, "EUR", {"donor_name": text})
    db.session.commit()
    return org


def test_hostile_text_is_escaped_everywhere(client: FlaskClient, hostile: Organisation) -> None:
    entries = list(ledger.iter_entries(hostile.id))
    urls = ["/", f"/orgs/{hostile.slug}", f"/orgs/{hostile.slug}/ledger",
            f"/orgs/{hostile.slug}/ledger?q=alert", f"/orgs/{hostile.slug}/verify",
            *[f"/orgs/{hostile.slug}/entries/{e.entry_id}" for e in entries[:4]]]
    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            html = client.get(url, headers=headers).get_data(as_text=True)
            assert "<script>alert" not in html, url
            assert "<img src=x" not in html, url
            assert 'hx-get="/evil"' not in html and 'hx-get="/x"' not in html, url
            assert "onmouseover='alert" not in html, url
    page = client.get(f"/orgs/{hostile.slug}/ledger").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "{{ 7*7 }}" in page  # shown, not evaluated


def test_hostile_text_in_json_stays_data(client: FlaskClient, hostile: Organisation) -> None:
    response = client.get(f"/api/v1/public/organisations/{hostile.slug}/ledger")
    assert response.mimetype == "application/json"
    payees = {row["metadata"].get("payee") for row in response.json["data"]}  # type: ignore[index]
    assert set(NASTY) <= payees


def test_security_headers(client: FlaskClient, hostile: Organisation) -> None:
    response = client.get(f"/orgs/{hostile.slug}")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_public_pages_set_no_cookies(client: FlaskClient, hostile: Organisation) -> None:
    for url in ("/", f"/orgs/{hostile.slug}", f"/orgs/{hostile.slug}/ledger"):
        assert "Set-Cookie" not in client.get(url).headers


def test_unknown_pages_get_a_friendly_404(client: FlaskClient) -> None:
    response = client.get("/orgs/does-not-exist")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Page not found" in html and "Go to the list of organisations" in html
    assert client.get("/orgs/does-not-exist/entries/led_x").status_code == 404


def test_unknown_entries_are_404(client: FlaskClient, hostile: Organisation) -> None:
    assert client.get(f"/orgs/{hostile.slug}/entries/led_{'0' * 24}").status_code == 404
    assert client.get(f"/orgs/{hostile.slug}/entries/not-an-id").status_code == 404
    assert client.get(f"/orgs/{hostile.slug}/sequence/9999").status_code == 404


def test_suspended_organisations_are_gone(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org(status="suspended")
    for url in (f"/orgs/{org.slug}", f"/orgs/{org.slug}/ledger",
                f"/api/v1/public/organisations/{org.slug}"):
        response = client.get(url)
        assert response.status_code == 410
    assert "suspended" in client.get(f"/orgs/{org.slug}").get_data(as_text=True)


def test_pending_organisations_are_not_public(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org(status="pending", name="Waiting Room Charity")
    assert client.get(f"/orgs/{org.slug}").status_code == 404
    assert "Waiting Room Charity" not in client.get("/").get_data(as_text=True)
    listed = client.get("/api/v1/public/organisations?q=Waiting").json
    assert listed is not None and listed["total"] == 0


def test_server_errors_are_friendly_and_logged(
    client: FlaskClient, hostile: Organisation, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from portal.services import figures

    def broken(*args: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(figures, "organisation_figures", broken)
    response = client.get(f"/orgs/{hostile.slug}")
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "Something went wrong on our side" in html
    assert "database on fire" not in html
    assert "database on fire" in caplog.text
    api = client.get(f"/api/v1/public/organisations/{hostile.slug}")
    assert api.status_code == 500
    body = json.loads(api.get_data(as_text=True))
    assert body["error"]["title"] == "Something went wrong on our side"
    assert "database on fire" not in api.get_data(as_text=True)
