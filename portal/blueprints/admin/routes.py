"""Platform administrators' pages: the organisations queue and each organisation's file."""

from __future__ import annotations

from flask import Response, abort, redirect, request, url_for
from flask_login import current_user

from portal.blueprints.admin import bp
from portal.blueprints.admin.access import platform_admins
from portal.blueprints.dashboard.forms import ReasonForm
from portal.blueprints.dashboard.responses import changed
from portal.services import activity, organisations
from portal.web import render

STATUS_TABS = {"pending": "Waiting for approval", "active": "Active", "suspended": "Suspended"}


@bp.get("/")
@platform_admins
def index() -> Response:
    return redirect(url_for(".organisations_queue"))  # type: ignore[return-value]


@bp.get("/organisations")
@platform_admins
def organisations_queue() -> Response:
    status = request.args.get("status", "pending")
    if status not in STATUS_TABS:
        abort(404)
    search = request.args.get("q", "")[:100]
    rows = organisations.queue(current_user.id, status, search)
    return render("admin/organisations.html", "queue", rows=rows, tab=status,
                  search=search, tabs=STATUS_TABS)


def _organisation_page(organisation_id: str, *, status: int = 200,
                       form: ReasonForm | None = None, decision: str | None = None) -> Response:
    row = organisations.organisation_file(current_user.id, organisation_id)
    return render("admin/organisation.html", "decisions", status=status, row=row,
                  form=form or ReasonForm(formdata=None), failed_decision=decision,
                  history=activity.history(current_user.id, organisation_id),
                  decisions=organisations.DECISIONS)


@bp.get("/organisations/<organisation_id>")
@platform_admins
def organisation(organisation_id: str) -> Response:
    return _organisation_page(organisation_id)


def _decide(organisation_id: str, decision: str, done: str) -> Response:
    form = ReasonForm()
    if not form.validate_on_submit():
        return _organisation_page(organisation_id, status=422, form=form, decision=decision)
    try:
        organisation = organisations.decide(current_user.id, organisation_id, decision,
                                            form.reason.data or "")
    except organisations.InvalidOrganisation as error:
        form.reason.errors = [*form.reason.errors, error.message]
        return _organisation_page(organisation_id, status=422, form=form, decision=decision)
    return changed(url_for(".organisation", organisation_id=organisation_id),
                   f"{organisation.name} is {done}.")


@bp.post("/organisations/<organisation_id>/approve")
@platform_admins
def approve(organisation_id: str) -> Response:
    return _decide(organisation_id, "approve", "approved and now public")


@bp.post("/organisations/<organisation_id>/suspend")
@platform_admins
def suspend(organisation_id: str) -> Response:
    return _decide(organisation_id, "suspend", "suspended: its public pages say so")


@bp.post("/organisations/<organisation_id>/reactivate")
@platform_admins
def reactivate(organisation_id: str) -> Response:
    return _decide(organisation_id, "reactivate", "active again")
