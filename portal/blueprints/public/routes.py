from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Response, abort, request, url_for

from amply_verify.charts import bar_chart
from portal.blueprints.public import bp
from portal.models import ENTRY_TYPES, Organisation
from portal.money import to_decimal
from portal.services import (
    checkpoints,
    directory,
    donations,
    figures,
    ledger,
    ledger_export,
    organisations,
    public_ledger,
    receipts,
    verification,
)
from portal.spreadsheet import safe_cell
from portal.web import attachment_response, category_label, money_filter, render, stream

LATEST_ENTRIES = 10


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        abort(400, f"{name} must be a whole number")
    return int(value)


@bp.get("/how-to-verify")
def how_to_verify() -> Response:
    return render("public/how_to_verify.html", keys=checkpoints.published_keys(),
                  latest=checkpoints.latest_checkpoint())


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/")
def index() -> Response:
    page = _int_arg("page")
    result = directory.directory(
        search=request.args.get("q", ""), country=request.args.get("country", ""),
        sort=request.args.get("sort", "raised"), page=1 if page is None else page,
    )
    return render("public/directory.html", "results", result=result,
                  countries=directory.countries(), sorts=directory.SORTS)


@bp.get("/orgs/<slug>")
def organisation(slug: str) -> Response:
    org = organisations.find_public_organisation(slug)
    numbers = figures.organisation_figures(org)
    main = numbers.currency(org.default_currency) or (
        numbers.currencies[0] if numbers.currencies else None)
    chart = None
    if main is not None:
        chart = bar_chart(
            [(category_label(c), a) for c, a in main.spending_by_category()],
            title=f"Where the money goes ({main.currency})",
            value_label=lambda value: money_filter(value, main.currency),
            chart_id="spending-chart",
        )
    latest = public_ledger.latest_entries(org, LATEST_ENTRIES)
    last_check = verification.last_reports([org.id]).get(org.id)
    return render("public/organisation.html", org=org, figures=numbers, main=main,
                  chart=chart, latest=latest, last_check=last_check,
                  fund_names={fund.id: fund.name for fund in numbers.funds},
                  donate=donations.donate_state(org.id))


@bp.get("/orgs/<slug>/ledger")
def ledger_view(slug: str) -> Response:
    org = organisations.find_public_organisation(slug)
    try:
        filters = public_ledger.parse_filters(request.args)
    except public_ledger.InvalidFilter as error:
        return render("public/ledger.html", "ledger_table", status=400, org=org,
                      page=None, filter_error=error, filters=_raw_filters(),
                      **_ledger_choices(org))
    page = public_ledger.ledger_page(org, filters, before=_int_arg("before"),
                                     after=_int_arg("after"))
    return render("public/ledger.html", "ledger_table", org=org, page=page,
                  filters=filters, filter_error=None, **_ledger_choices(org))


def _raw_filters() -> public_ledger.LedgerFilters:
    """The filters as typed, to show them back beside the error message."""
    values = {name: request.args.get(param, "")[:200]
              for name, param in public_ledger.FILTER_PARAMS.items()}
    return public_ledger.LedgerFilters(**values)


def _ledger_choices(org: Organisation) -> dict[str, Any]:
    funds = public_ledger.fund_names(org.id)
    return {
        "entry_types": list(ENTRY_TYPES),
        "funds": funds,
        "categories": public_ledger.public_categories(org.id),
        "head": ledger.get_head(org.id),
    }


@bp.get("/orgs/<slug>/entries/<entry_id>")
def entry(slug: str, entry_id: str) -> Response:
    org = organisations.find_public_organisation(slug)
    view = public_ledger.entry_view(org, entry_id=entry_id)
    # Only disclosed entries are proven here: a proof names the entry's id.
    proven = (checkpoints.prove_entry(org.id, entry_id) if view.row.is_full else None)
    return render("public/entry.html", org=org, view=view, proven=proven,
                  fund_names=public_ledger.fund_names(org.id))


@bp.get("/orgs/<slug>/entries/<entry_id>/receipt")
def entry_receipt(slug: str, entry_id: str) -> Response:
    """The receipt of a fully disclosed expense, as a download (never rendered here)."""
    org = organisations.find_public_organisation(slug)
    found = receipts.public_receipt(org, entry_id)
    return attachment_response(found.path, found.mime, found.download_name)


@bp.get("/orgs/<slug>/sequence/<int:sequence>")
def entry_by_sequence(slug: str, sequence: int) -> Response:
    org = organisations.find_public_organisation(slug)
    view = public_ledger.entry_view(org, sequence=sequence)
    if view.row.entry_id is not None:
        response = Response(status=302)
        response.headers["Location"] = url_for(".entry", slug=slug, entry_id=view.row.entry_id)
        return response
    return render("public/entry.html", org=org, view=view,
                  fund_names=public_ledger.fund_names(org.id))


@bp.get("/orgs/<slug>/verify")
def verify(slug: str) -> Response:
    org = organisations.find_public_organisation(slug)
    report = verification.verify(org.id)
    return render("public/verify.html", "verification", org=org, report=report)


@bp.get("/orgs/<slug>/ledger.json")
def ledger_json(slug: str) -> Response:
    org = organisations.find_public_organisation(slug)
    head = ledger.get_head(org.id)
    etag = f'"{head.sequence}-{(head.entry_hash or "empty")[7:23]}-public"'
    if request.if_none_match.contains(etag.strip('"')):
        return Response(status=304, headers={"ETag": etag})
    chunks = ledger_export.export_chunks(org, "public")
    response = Response(stream(chunks), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{org.slug}-ledger.json"'
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


CSV_COLUMNS = ("date", "sequence", "type", "category", "fund", "payee_or_donor", "description",
               "amount", "currency", "running_balance", "entry_hash")


@bp.get("/orgs/<slug>/ledger.csv")
def ledger_csv(slug: str) -> Response:
    org = organisations.find_public_organisation(slug)
    filters = public_ledger.parse_filters(request.args)
    funds = public_ledger.fund_names(org.id)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in public_ledger.iter_public_rows(org, filters):
            writer.writerow(_csv_row(row, funds))
            if buffer.tell() > 32_768:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    response = Response(stream(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{org.slug}-ledger.csv"'
    return response


def _csv_row(row: public_ledger.PublicRow, funds: dict[str, str]) -> list[str]:
    def major(amount: int | None) -> str:
        return "" if amount is None or row.currency is None else str(
            to_decimal(amount, row.currency))

    description = row.description or ""
    if row.level == "aggregated":
        description = "Amount and details undisclosed (counted in category totals)"
    elif row.level == "scheduled":
        description = f"Scheduled for disclosure on {row.reveal_at}"
    elif row.level == "internal":
        description = "Internal entry"
    return [
        (row.timestamp or "")[:10], str(row.sequence), row.type or "", row.category or "",
        funds.get(row.fund_id or "", ""), safe_cell(row.party or ""), safe_cell(description),
        major(row.amount), row.currency or "", major(row.running_balance), row.entry_hash,
    ]

