"""Money moving in and out: transfers to other organisations, and the donations list."""

from __future__ import annotations

from typing import Any

from flask import Response, g, request, url_for
from flask_login import current_user

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import for_members
from portal.blueprints.dashboard.forms import TransferForm
from portal.blueprints.dashboard.params import int_arg
from portal.blueprints.dashboard.responses import changed, refused
from portal.services import donations_list, funds, ledger, transfers
from portal.services.errors import DomainError
from portal.web import render, stream


def _organisation_id() -> str:
    return str(g.organisation.id)


def _transfer_context() -> dict[str, Any]:
    organisation_id = _organisation_id()
    return {
        "recipients": transfers.recipients(current_user.id, organisation_id),
        "recent": transfers.recent_transfers(current_user.id, organisation_id),
        "balances": ledger.balances(organisation_id),
    }


@bp.route("/<org>/transfers", methods=["GET", "POST"])
@for_members("make_transfer")
def transfers_page(org: str) -> Response:
    form = TransferForm(funds=funds.active_funds(_organisation_id()),
                        data={"currency": g.organisation.default_currency})
    template, block = "dashboard/transfers.html", "transfer_form"
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render(template, block, status=status, form=form, **_transfer_context())
    try:
        sent = transfers.make_transfer(
            current_user.id, _organisation_id(), recipient=form.recipient.data or "",
            amount=form.amount_minor, currency=form.currency.data or "",
            description=form.description.data or "", fund_id=form.fund.data or "")
    except DomainError as error:
        return refused(template, block, form, error, **_transfer_context())
    return changed(url_for(".entry", org=org, entry_id=sent.entry_id),
                   f"Transfer sent: entry #{sent.sequence} here, and its counterpart in the "
                   "receiving organisation's ledger.")


@bp.get("/<org>/donations")
@for_members("view_internal")
def donations(org: str) -> Response:
    organisation_id = _organisation_id()
    choices: dict[str, Any] = {"fund_names": funds.fund_names(organisation_id),
               "currencies": sorted(ledger.balances(organisation_id))}
    try:
        filters = donations_list.parse_filters(request.args)
    except donations_list.InvalidDonationFilter as error:
        raw = {name: request.args.get(param, "")[:100]
               for name, param in donations_list.FILTER_PARAMS.items()}
        return render("dashboard/donations.html", "donations_table", status=400, page=None,
                      filters=donations_list.DonationFilters(**raw), filter_error=error,
                      **choices)
    page = donations_list.donations_page(current_user.id, organisation_id, filters,
                                         before=int_arg("before"), after=int_arg("after"))
    return render("dashboard/donations.html", "donations_table", page=page, filters=filters,
                  filter_error=None, **choices)


@bp.get("/<org>/donations.csv")
@for_members("export")
def donations_csv(org: str) -> Response:
    filters = donations_list.parse_filters(request.args)
    chunks = donations_list.donations_csv(current_user.id, _organisation_id(), filters)
    response = Response(stream(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{org}-donations.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
