from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, jsonify, request

from portal.blueprints.api import bp
from portal.blueprints.api.openapi import openapi_document
from portal.extensions import csrf
from portal.models import Organisation
from portal.services import (
    directory,
    figures,
    ledger,
    ledger_cache,
    ledger_export,
    public_ledger,
)
from portal.services.organisations import find_public_organisation
from portal.web import render, stream

csrf.exempt(bp)  # read-only JSON; nothing here changes state

MAX_LIMIT = 500
IMMUTABLE = 365 * 24 * 3600


def _int(name: str, default: int | None = None, *, low: int = 1,
         high: int | None = None) -> int | None:
    text = request.args.get(name, "")
    if not text:
        return default
    if not text.isdigit() or len(text) > 18:
        abort(400, f"{name} must be a whole number")
    value = int(text)
    if value < low or (high is not None and value > high):
        abort(400, f"{name} must be between {low} and {high}")
    return value


def _organisation_json(org: Organisation) -> dict[str, Any]:
    head = ledger.get_head(org.id)
    return {
        "id": org.id, "slug": org.slug, "name": org.name, "legal_name": org.legal_name,
        "country": org.country, "default_currency": org.default_currency,
        "description": org.description, "website": org.website,
        "head": {"sequence": head.sequence, "entry_hash": head.entry_hash,
                 "timestamp": head.timestamp},
    }


def _currency_json(f: figures.CurrencyFigures) -> dict[str, Any]:
    return {
        "currency": f.currency, "income": f.income, "spending": f.spending,
        "balance": f.balance, "raised": f.raised,
        "undisclosed": {"count": f.undisclosed_count, "net_amount": f.undisclosed_net},
        "spending_by_category": [{"category": c, "amount": a}
                                 for c, a in f.spending_by_category()],
    }


@bp.get("/api/v1/public/organisations")
def organisations_list() -> Response:
    result = directory.directory(
        search=request.args.get("q", ""), country=request.args.get("country", ""),
        sort=request.args.get("sort", "name"), page=_int("page", 1) or 1,
    )
    return jsonify({
        "data": [{"id": c.id, "slug": c.slug, "name": c.name, "country": c.country,
                  "entry_count": c.entry_count, "last_activity": c.last_activity,
                  "figures": [_currency_json(f) for f in c.figures]} for c in result.cards],
        "page": result.page, "pages": result.pages, "total": result.total,
    })


@bp.get("/api/v1/public/organisations/<reference>")
def organisation_detail(reference: str) -> Response:
    org = find_public_organisation(reference)
    numbers = figures.organisation_figures(org)
    body = _organisation_json(org)
    body["figures"] = [_currency_json(f) for f in numbers.currencies]
    body["funds"] = [
        {"id": f.id, "name": f.name, "type": f.type, "currency": f.currency, "raised": f.raised,
         "spent": f.spent, "goal": f.goal, "archived": f.archived} for f in numbers.funds
    ]
    body["entries"] = {"total": numbers.entry_count, "fully_public": numbers.disclosed_count}
    return jsonify(body)


def _row_json(row: public_ledger.PublicRow) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sequence": row.sequence, "disclosure": row.level, "visibility": row.visibility,
        "prev_entry_hash": row.prev_entry_hash, "entry_hash": row.entry_hash,
    }
    if row.level in {"full", "aggregated"}:
        body.update(timestamp=row.timestamp, type=row.type, category=row.category)
    if row.level == "scheduled":
        body["reveal_at"] = row.reveal_at
    if row.level == "full":
        body.update(entry_id=row.entry_id, amount=row.amount, currency=row.currency,
                    metadata=dict(row.metadata or {}), running_balance=row.running_balance)
    return body


@bp.get("/api/v1/public/organisations/<reference>/ledger")
def organisation_ledger(reference: str) -> Response:
    org = find_public_organisation(reference)
    filters = public_ledger.parse_filters(request.args)
    limit = _int("limit", public_ledger.PAGE_SIZE, high=MAX_LIMIT) or public_ledger.PAGE_SIZE
    before = _int("before")
    page = public_ledger.ledger_page(org, filters, before=before, after=_int("after"),
                                     page_size=limit)
    response = jsonify({
        "data": [_row_json(row) for row in page.rows],
        "newer": page.newer, "older": page.older,
        "next": (f"{request.path}?{_query(filters, before=page.older, limit=limit)}"
                 if page.older else None),
    })
    return _cache(response, org, page, before)


def _query(filters: public_ledger.LedgerFilters, **extra: Any) -> str:
    from urllib.parse import urlencode

    return urlencode({**filters.query(), **{k: v for k, v in extra.items() if v is not None}})


def _cache(response: Response, org: Organisation, page: public_ledger.LedgerPage,
           before: int | None) -> Response:
    """A page strictly below the head never changes, until a scheduled entry is disclosed."""
    if before is None:
        response.headers["Cache-Control"] = "public, max-age=0, must-revalidate"
        response.add_etag()
        return _conditional(response)
    reveal = ledger_cache.next_disclosure(org.id, ledger.utc_timestamp())
    seconds = IMMUTABLE
    if reveal is not None:
        until = datetime.fromisoformat(reveal) - datetime.now(UTC)
        seconds = max(0, min(IMMUTABLE, int(until.total_seconds())))
    response.headers["Cache-Control"] = f"public, max-age={seconds}"
    tag = hashlib.sha256(response.get_data() + (reveal or "").encode()).hexdigest()[:32]
    response.set_etag(tag)
    return _conditional(response)


def _conditional(response: Response) -> Response:
    """304 Not Modified when the client's ETag still matches."""
    conditional = response.make_conditional(request)
    assert isinstance(conditional, Response)
    return conditional


@bp.get("/api/v1/public/organisations/<reference>/entries/<entry_id>")
def organisation_entry(reference: str, entry_id: str) -> Response:
    """One entry as the public may see it; a full entry carries every hashed field."""
    org = find_public_organisation(reference)
    row = public_ledger.entry_view(org, entry_id=entry_id).row
    body = _row_json(row)
    if row.level == "full":
        body["organisation_id"] = org.id
    return jsonify(body)


@bp.get("/api/v1/public/organisations/<reference>/ledger/export")
def organisation_export(reference: str) -> Response:
    org = find_public_organisation(reference)
    chunks = ledger_export.export_chunks(org, "public")
    response = Response(stream(chunks), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{org.slug}-ledger.json"'
    return response


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.get("/api/docs")
def docs() -> Response:
    return render("api/docs.html", spec=openapi_document())
