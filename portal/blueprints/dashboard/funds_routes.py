"""Funds and categories: what money is earmarked for, and what it is spent on."""

from __future__ import annotations

from flask import Response, abort, g, request, url_for
from flask_login import current_user

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import for_members
from portal.blueprints.dashboard.forms import CategoryForm, EmptyForm, FundForm
from portal.blueprints.dashboard.responses import changed, refused
from portal.money import to_decimal
from portal.services import categories, funds
from portal.services.errors import DomainError
from portal.web import render


def _organisation_id() -> str:
    return str(g.organisation.id)


def _checked_button() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


@bp.get("/<org>/funds")
@for_members("view")
def funds_list(org: str) -> Response:
    return render("dashboard/funds.html",
                  funds=funds.list_funds(current_user.id, _organisation_id()))


@bp.route("/<org>/funds/new", methods=["GET", "POST"])
@for_members("manage_funds")
def new_fund(org: str) -> Response:
    form = FundForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render("dashboard/fund_form.html", "fund_form", status=status, form=form,
                      fund=None)
    try:
        funds.create_fund(current_user.id, _organisation_id(), name=form.name.data or "",
                          fund_type=form.type.data or "",
                          description=form.description.data or "",
                          goal_amount=form.goal_minor, goal_currency=form.goal_currency.data)
    except DomainError as error:
        return refused("dashboard/fund_form.html", "fund_form", form, error, fund=None)
    return changed(url_for(".funds_list", org=org), f"The fund “{form.name.data}” is created.")


@bp.route("/<org>/funds/<fund_id>/edit", methods=["GET", "POST"])
@for_members("manage_funds")
def edit_fund(org: str, fund_id: str) -> Response:
    fund = funds.get_fund(_organisation_id(), fund_id)
    form = FundForm(obj=fund, general=fund.type == "general")
    if request.method == "GET" and fund.goal_amount is not None and fund.goal_currency:
        form.goal_amount.data = str(to_decimal(fund.goal_amount, fund.goal_currency))
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render("dashboard/fund_form.html", "fund_form", status=status, form=form,
                      fund=fund)
    try:
        funds.update_fund(current_user.id, _organisation_id(), fund_id,
                          name=form.name.data or "", fund_type=form.type.data or "",
                          description=form.description.data or "",
                          goal_amount=form.goal_minor, goal_currency=form.goal_currency.data)
    except DomainError as error:
        return refused("dashboard/fund_form.html", "fund_form", form, error, fund=fund)
    return changed(url_for(".funds_list", org=org), f"The fund “{form.name.data}” is saved.")


@bp.post("/<org>/funds/<fund_id>/archive")
@for_members("manage_funds")
def archive_fund(org: str, fund_id: str) -> Response:
    _checked_button()
    funds.archive_fund(current_user.id, _organisation_id(), fund_id)
    return changed(url_for(".funds_list", org=org),
                   "The fund is archived: new expenses and transfers can no longer use it. "
                   "Its entries stay in the ledger.")


@bp.post("/<org>/funds/<fund_id>/restore")
@for_members("manage_funds")
def restore_fund(org: str, fund_id: str) -> Response:
    _checked_button()
    funds.restore_fund(current_user.id, _organisation_id(), fund_id)
    return changed(url_for(".funds_list", org=org), "The fund is in use again.")


# --------------------------------------------------------------------------- categories


def _categories_page(form: CategoryForm, *, status: int = 200) -> Response:
    return render("dashboard/categories.html", "category_form", status=status, form=form,
                  categories=categories.list_categories(_organisation_id()))


@bp.route("/<org>/categories", methods=["GET", "POST"])
@for_members("manage_settings")
def categories_list(org: str) -> Response:
    form = CategoryForm()
    if not form.validate_on_submit():
        return _categories_page(form, status=422 if request.method == "POST" else 200)
    try:
        added = categories.add_category(current_user.id, _organisation_id(),
                                        form.label.data or "")
    except DomainError as error:
        return refused("dashboard/categories.html", "category_form", form, error,
                       categories=categories.list_categories(_organisation_id()))
    return changed(url_for(".categories_list", org=org),
                   f"The category “{added.label}” is added.")


@bp.post("/<org>/categories/<category>/label")
@for_members("manage_settings")
def relabel_category(org: str, category: str) -> Response:
    """Rename a category for people (the ledger keeps its slug); a refusal is shown
    beside that category's row."""
    form = CategoryForm()
    if form.validate_on_submit():
        try:
            categories.relabel_category(current_user.id, _organisation_id(), category,
                                        form.label.data or "")
        except categories.CategoryNotFound:
            raise
        except DomainError as error:
            problem = error.message
        else:
            return changed(url_for(".categories_list", org=org), "The category is renamed.")
    else:
        problem = " ".join(form.label.errors) or "Enter a name for the category."
    return render("dashboard/categories.html", "category_list", status=422,
                  form=CategoryForm(formdata=None),
                  categories=categories.list_categories(_organisation_id()),
                  relabelling=category, relabel_error=problem, relabel_value=form.label.data)


@bp.post("/<org>/categories/<category>/archive")
@for_members("manage_settings")
def archive_category(org: str, category: str) -> Response:
    _checked_button()
    categories.archive_category(current_user.id, _organisation_id(), category)
    return changed(url_for(".categories_list", org=org),
                   "The category is archived: new expenses can no longer use it. Entries "
                   "that name it keep it.")


@bp.post("/<org>/categories/<category>/restore")
@for_members("manage_settings")
def restore_category(org: str, category: str) -> Response:
    _checked_button()
    categories.restore_category(current_user.id, _organisation_id(), category)
    return changed(url_for(".categories_list", org=org), "The category is in use again.")
