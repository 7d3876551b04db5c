from __future__ import annotations

from flask import Response, abort, render_template, stream_with_context

from portal.blueprints.public import bp
from portal.services import ledger_export, organisations
from portal.services.errors import NotFound


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/")
def directory() -> str:
    return render_template(
        "public/directory.html", organisations=organisations.list_organisations(status="active")
    )


@bp.get("/orgs/<slug>/ledger.json")
def ledger_json(slug: str) -> Response:
    try:
        organisation = organisations.find_organisation(slug)
    except NotFound:
        abort(404)
    if not organisation.is_active:
        abort(404)
    chunks = ledger_export.export_chunks(organisation, "public")
    response = Response(stream_with_context(chunks), mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{organisation.slug}-ledger.json"'
    )
    return response
