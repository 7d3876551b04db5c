"""Expenses: submit one with its receipt, and (another member) approve or reject it."""

from __future__ import annotations

from datetime import date

from flask import Response, abort, current_app, g, request, url_for
from flask_login import current_user
from werkzeug.datastructures import FileStorage

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import for_members
from portal.blueprints.dashboard.forms import EmptyForm, ExpenseForm, ReasonForm
from portal.blueprints.dashboard.responses import changed, refused
from portal.services import categories, expenses, funds, receipts
from portal.services.errors import DomainError
from portal.web import attachment_response, render


def _organisation_id() -> str:
    return str(g.organisation.id)


def _expense_form() -> ExpenseForm:
    organisation_id = _organisation_id()
    return ExpenseForm(
        funds=funds.active_funds(organisation_id),
        categories=[(c.slug, c.label) for c in categories.active_categories(organisation_id)],
        data={"currency": g.organisation.default_currency, "visibility": "public_full"},
    )


def _spent_on(form: ExpenseForm) -> date:
    assert form.spent_on.data is not None  # the field is required
    return form.spent_on.data


def _receipt(form: ExpenseForm) -> receipts.ReceiptUpload | None:
    """The uploaded receipt, checked, or None when none was chosen."""
    upload = form.receipt.data
    if not isinstance(upload, FileStorage) or not upload.filename:
        return None
    # One byte more than allowed is enough to know that it is too large.
    content = upload.stream.read(int(current_app.config["RECEIPT_MAX_BYTES"]) + 1)
    return receipts.check(content, upload.filename, upload.mimetype or "")


@bp.get("/<org>/expenses")
@for_members("view_internal")
def expenses_list(org: str) -> Response:
    status = request.args.get("status", "submitted")
    if status not in expenses.STATUS_LABELS:
        abort(404)
    page = expenses.list_expenses(current_user.id, _organisation_id(), status,
                                  before=request.args.get("before") or None)
    return render("dashboard/expenses.html", "expenses_table", page=page, tab=status,
                  statuses=expenses.STATUS_LABELS,
                  fund_names=funds.fund_names(_organisation_id()),
                  category_labels=categories.labels(_organisation_id()))


@bp.route("/<org>/expenses/new", methods=["GET", "POST"])
@for_members("submit_expense")
def new_expense(org: str) -> Response:
    form = _expense_form()
    template, block = "dashboard/expense_form.html", "expense_form"
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render(template, block, status=status, form=form)
    try:
        expense_id = expenses.submit_expense(
            current_user.id, _organisation_id(), amount=form.amount_minor,
            currency=form.currency.data or "", fund_id=form.fund.data or "",
            category=form.category.data or "", payee=form.payee.data or "",
            description=form.description.data or "", spent_on=_spent_on(form),
            visibility=form.visibility.data or "",
            reveal_on=form.reveal_on.data if form.visibility.data == "delayed_public" else None,
            receipt=_receipt(form))
    except DomainError as error:
        return refused(template, block, form, error)
    return changed(url_for(".expense", org=org, expense_id=expense_id),
                   "The expense is submitted. Another member has to approve it before it "
                   "is recorded in the ledger.")


def _expense_page(expense_id: str, *, status: int = 200,
                  reject_form: ReasonForm | None = None) -> Response:
    organisation_id = _organisation_id()
    return render("dashboard/expense.html", "decision", status=status,
                  detail=expenses.expense_detail(current_user.id, organisation_id, expense_id),
                  reject_form=reject_form or ReasonForm(formdata=None),
                  fund_names=funds.fund_names(organisation_id),
                  category_labels=categories.labels(organisation_id))


@bp.get("/<org>/expenses/<expense_id>")
@for_members("view_internal")
def expense(org: str, expense_id: str) -> Response:
    return _expense_page(expense_id)


@bp.get("/<org>/expenses/<expense_id>/receipt")
@for_members("view_internal")
def expense_receipt(org: str, expense_id: str) -> Response:
    found = receipts.member_receipt(current_user.id, _organisation_id(), expense_id)
    return attachment_response(found.path, found.mime, found.download_name)


@bp.post("/<org>/expenses/<expense_id>/approve")
@for_members("approve_expense")
def approve_expense(org: str, expense_id: str) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    entry = expenses.approve_expense(current_user.id, _organisation_id(), expense_id)
    return changed(url_for(".expense", org=org, expense_id=expense_id),
                   f"Approved: the expense is entry #{entry.sequence} of the ledger.")


@bp.post("/<org>/expenses/<expense_id>/reject")
@for_members("approve_expense")
def reject_expense(org: str, expense_id: str) -> Response:
    form = ReasonForm()
    if not form.validate_on_submit():
        return _expense_page(expense_id, status=422, reject_form=form)
    try:
        expenses.reject_expense(current_user.id, _organisation_id(), expense_id,
                                form.reason.data or "")
    except DomainError as error:
        if error.field != "reason":
            raise
        form.reason.errors = [*form.reason.errors, error.message]
        return _expense_page(expense_id, status=422, reject_form=form)
    return changed(url_for(".expense", org=org, expense_id=expense_id),
                   "The expense is rejected; the submitter can see why.")


@bp.post("/<org>/expenses/<expense_id>/withdraw")
@for_members("submit_expense")
def withdraw_expense(org: str, expense_id: str) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    expenses.withdraw_expense(current_user.id, _organisation_id(), expense_id)
    return changed(url_for(".expense", org=org, expense_id=expense_id),
                   "The expense is withdrawn.")
