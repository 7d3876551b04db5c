"""The public JSON API and its OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger


def test_organisations_list_and_detail(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org(name="Api Charity", country="NL")
    ledger.append_entry(org.id, "donation_received", 2_500, "EUR", {"donor_name": "Bo"})
    db.session.commit()
    listed = client.get("/api/v1/public/organisations?q=Api%20Charity").json
    assert listed is not None
    assert listed["total"] == 1
    assert listed["data"][0]["slug"] == org.slug
    assert listed["data"][0]["figures"][0]["raised"] == 2_500
    detail = client.get(f"/api/v1/public/organisations/{org.id}").json
    assert detail is not None
    assert detail["head"]["sequence"] == 1
    assert detail["entries"] == {"total": 1, "fully_public": 1}
    assert detail["funds"][0]["name"] == "General Fund"
    assert detail["funds"][0]["raised"] == 2_500


def test_unknown_organisation_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/public/organisations/nobody")
    assert response.status_code == 404
    assert response.json == {"error": {"status": 404, "title": "Page not found",
                                       "message": "no organisation 'nobody'"}}


def test_export_endpoint_streams_the_document(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    response = client.get(f"/api/v1/public/organisations/{org.slug}/ledger/export")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.json is not None and response.json["format"] == "amply-ledger-export"


def test_openapi_document_describes_every_api_route(client: FlaskClient, app: object) -> None:
    spec = client.get("/api/v1/openapi.json").json
    assert spec is not None
    assert spec["openapi"].startswith("3.1")
    import re

    from flask import current_app

    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in current_app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/public/")
    }
    assert routes == set(spec["paths"])
    for path in spec["paths"].values():
        for operation in path.values():
            assert operation["operationId"] and operation["responses"]["200"]
    refs = {value for value in _walk(spec) if isinstance(value, str) and value.startswith("#/")}
    for ref in refs:
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]


def _walk(node: object) -> list[object]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in [value, *_walk(value)]]
    if isinstance(node, list):
        return [v for value in node for v in [value, *_walk(value)]]
    return []


def test_docs_page_lists_the_endpoints(client: FlaskClient) -> None:
    html = client.get("/api/docs").get_data(as_text=True)
    assert "GET /api/v1/public/organisations/{reference}/ledger" in html
    assert "openapi.json" in html
