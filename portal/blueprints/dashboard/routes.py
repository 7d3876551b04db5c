"""The dashboard's own pages: your organisations, applying for one, accepting an
invitation, and an organisation's overview, ledger, corrections, settings and activity."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Response, abort, g, request, url_for
from flask_login import current_user

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import for_members, signed_in
from portal.blueprints.dashboard.forms import (
    EmptyForm,
    OrganisationForm,
    ReasonForm,
    RecategorizeForm,
)
from portal.blueprints.dashboard.params import int_arg
from portal.blueprints.dashboard.responses import changed, refused
from portal.extensions import db
from portal.models import Membership, Organisation
from portal.services import (
    activity,
    categories,
    corrections,
    funds,
    member_ledger,
    members,
    organisations,
    verification,
)
from portal.services import (
    overview as overviews,
)
from portal.services.errors import DomainError
from portal.web import render


def _organisation() -> Organisation:
    return g.organisation  # type: ignore[no-any-return]


@bp.get("/")
@signed_in
def home() -> Response:
    """The organisations this person belongs to."""
    rows = db.session.execute(
        sa.select(Organisation, Membership.role)
        .join(Membership, Membership.organisation_id == Organisation.id)
        .where(Membership.user_id == current_user.id)
        .order_by(Organisation.name)
    ).all()
    return render("dashboard/home.html", memberships=[(org, role) for org, role in rows])


# --------------------------------------------------------------------------- joining


@bp.route("/apply", methods=["GET", "POST"])
@signed_in
def apply() -> Response:
    """Ask to publish an organisation on the portal."""
    form = OrganisationForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render("dashboard/apply.html", "apply_form", status=status, form=form)
    profile = organisations.Profile(
        name=form.name.data or "", country=form.country.data or "",
        default_currency=form.default_currency.data or "",
        legal_name=form.legal_name.data or "", description=form.description.data or "",
        website=form.website.data or "")
    try:
        organisation = organisations.apply_for_organisation(current_user.id, profile)
    except DomainError as error:
        return refused("dashboard/apply.html", "apply_form", form, error)
    return changed(url_for(".overview", org=organisation.slug),
                   f"{organisation.name} is registered and waits for approval by the portal's "
                   "administrators. Until then its pages are not public; you can already "
                   "set it up here.")


@bp.route("/invitations/<token>", methods=["GET", "POST"])
@signed_in
def accept_invitation(token: str) -> Response:
    """An invitation link: see what it offers, and accept it with the invited account."""
    offer = members.invitation_offer(current_user.id, token)
    form = EmptyForm()
    if not offer.for_this_account:
        return render("dashboard/invitation.html", status=403, offer=offer, form=form)
    if not form.validate_on_submit():
        return render("dashboard/invitation.html", offer=offer, form=form,
                      status=422 if request.method == "POST" else 200)
    slug = members.accept_invitation(current_user.id, token)
    return changed(url_for(".overview", org=slug),
                   f"Welcome to {offer.organisation_name}: you joined as {offer.role}.")


# --------------------------------------------------------------------------- overview


@bp.get("/<org>")
@for_members("view")
def overview(org: str) -> Response:
    organisation = _organisation()
    return render("dashboard/overview.html", view=overviews.overview(current_user.id,
                                                                      organisation),
                  fund_names=funds.fund_names(organisation.id),
                  category_labels=categories.labels(organisation.id))


@bp.get("/<org>/verify")
@for_members("view")
def verify(org: str) -> Response:
    """Recompute every hash and link of the ledger (once per head, like the public check)."""
    report = verification.verify(_organisation().id)
    return render("dashboard/verify.html", "verification", report=report)


# --------------------------------------------------------------------------- the ledger


@bp.get("/<org>/entries")
@for_members("view")
def entries(org: str) -> Response:
    organisation = _organisation()
    page = member_ledger.entries_page(current_user.id, organisation,
                                      before=int_arg("before"), after=int_arg("after"))
    return render("dashboard/entries.html", "entries_table", page=page,
                  fund_names=funds.fund_names(organisation.id),
                  category_labels=categories.labels(organisation.id))


def _entry_page(entry_id: str, *, status: int = 200, reverse_form: ReasonForm | None = None,
                recategorize_form: RecategorizeForm | None = None,
                problem: str | None = None) -> Response:
    organisation = _organisation()
    detail = member_ledger.entry(current_user.id, organisation, entry_id)
    active = [(c.slug, c.label) for c in categories.active_categories(organisation.id)]
    return render(
        "dashboard/entry.html", "corrections", status=status, detail=detail,
        fund_names=funds.fund_names(organisation.id),
        category_labels=categories.labels(organisation.id), problem=problem,
        reverse_form=reverse_form or ReasonForm(formdata=None),
        recategorize_form=recategorize_form or RecategorizeForm(formdata=None,
                                                                categories=active))


def _correction_refused(entry_id: str, error: DomainError, *,
                        reverse_form: ReasonForm | None = None,
                        recategorize_form: RecategorizeForm | None = None) -> Response:
    """The entry page again: the refusal beside the field it names, or above the forms."""
    if error.status_code == 404:
        raise error
    form = reverse_form or recategorize_form
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, error.message]
    status = 422 if field is not None or error.status_code in {400, 422} else error.status_code
    return _entry_page(entry_id, status=status, reverse_form=reverse_form,
                       recategorize_form=recategorize_form,
                       problem=None if field is not None else error.message)


@bp.get("/<org>/entries/<entry_id>")
@for_members("view")
def entry(org: str, entry_id: str) -> Response:
    return _entry_page(entry_id)


@bp.post("/<org>/entries/<entry_id>/reverse")
@for_members("record_correction")
def reverse_entry(org: str, entry_id: str) -> Response:
    form = ReasonForm()
    if not form.validate_on_submit():
        return _entry_page(entry_id, status=422, reverse_form=form)
    try:
        reversal = corrections.reverse_entry(current_user.id, _organisation().id, entry_id,
                                             form.reason.data or "")
    except DomainError as error:
        return _correction_refused(entry_id, error, reverse_form=form)
    return changed(url_for(".entry", org=org, entry_id=reversal.entry_id),
                   f"Entry reversed: the reversal is entry #{reversal.sequence}.")


@bp.post("/<org>/entries/<entry_id>/recategorize")
@for_members("record_correction")
def recategorize_entry(org: str, entry_id: str) -> Response:
    organisation = _organisation()
    form = RecategorizeForm(categories=[(c.slug, c.label) for c in
                                        categories.active_categories(organisation.id)])
    if not form.validate_on_submit():
        return _entry_page(entry_id, status=422, recategorize_form=form)
    try:
        moved = corrections.recategorize_expense(current_user.id, organisation.id, entry_id,
                                                 form.category.data or "", form.note.data or "")
    except DomainError as error:
        return _correction_refused(entry_id, error, recategorize_form=form)
    return changed(url_for(".entry", org=org, entry_id=entry_id),
                   f"Expense moved to another category by entry #{moved.sequence}.")


# --------------------------------------------------------------------------- organisation


@bp.route("/<org>/settings", methods=["GET", "POST"])
@for_members("manage_settings")
def settings(org: str) -> Response:
    organisation = _organisation()
    form = OrganisationForm(obj=organisation)
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render("dashboard/settings.html", "settings_form", status=status, form=form)
    profile = organisations.Profile(
        name=form.name.data or "", country=form.country.data or "",
        default_currency=form.default_currency.data or "",
        legal_name=form.legal_name.data or "", description=form.description.data or "",
        website=form.website.data or "")
    try:
        changes = organisations.update_profile(current_user.id, organisation.id, profile)
    except DomainError as error:
        return refused("dashboard/settings.html", "settings_form", form, error)
    message = "The profile is saved." if changes else "Nothing was changed."
    return changed(url_for(".settings", org=org), message)


@bp.get("/<org>/activity")
@for_members("view_internal")
def activity_log(org: str) -> Response:
    page = activity.activity_page(current_user.id, _organisation().id,
                                  before=int_arg("before"))
    return render("dashboard/activity.html", "activity_table", page=page)


@bp.post("/<org>/leave")
@for_members("view")
def leave(org: str) -> Response:
    organisation = _organisation()
    if not EmptyForm().validate_on_submit():
        abort(400)
    members.leave(current_user.id, organisation.id)
    return changed(url_for(".home"), f"You have left {organisation.name}.")
