"""Expenses with four eyes: one member submits, another approves (which writes the ledger
entry) or rejects with a reason. Nobody decides on their own expense; the database's
``ck_expenses_four_eyes`` refuses it too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.ids import new_id
from portal.models import VISIBILITY_LEVELS, Expense, User
from portal.money import is_known_currency
from portal.services import activity, categories, funds, ledger, permissions, receipts, tenancy
from portal.services.errors import Conflict, DomainError, NotFound
from portal.services.permissions import Forbidden
from portal.services.transactions import one_transaction

PAYEE_MAX = 200
DESCRIPTION_MAX = 2000
REASON_MAX = 1000
PAGE_SIZE = 50
VISIBILITY_LABELS = {
    "public_full": "Public: everything is shown",
    "public_aggregated": "Aggregated: the public sees the date and category, not the "
                         "amount or payee (salaries, payments to individuals)",
    "delayed_public": "Delayed: hidden until a date, then shown in full",
    "internal_only": "Internal: only its place in the chain is public",
}
STATUS_LABELS = {"submitted": "Waiting for approval", "approved": "Approved",
                 "rejected": "Rejected", "withdrawn": "Withdrawn"}


class InvalidExpense(DomainError):
    status_code = 422


class ExpenseNotFound(NotFound):
    pass


class AlreadyDecided(Conflict):
    pass


@dataclass(frozen=True)
class ExpenseRow:
    id: str
    amount: int
    currency: str
    payee: str
    description: str
    category: str
    fund_id: str
    spent_on: date
    visibility: str
    reveal_at: datetime | None
    status: str
    submitted_by: str
    submitter: str
    created_at: datetime
    decided_by: str | None
    decider: str | None
    decided_at: datetime | None
    rejection_reason: str | None
    ledger_entry_id: str | None
    receipt_name: str | None
    receipt_size: int | None
    receipt_sha256: str | None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class ExpenseDetail:
    expense: ExpenseRow
    #: What the member looking at it may do with it now.
    can_decide: bool
    can_withdraw: bool
    #: Why a member who could otherwise decide may not (their own expense).
    decide_refusal: str | None


@dataclass(frozen=True)
class ExpensePage:
    rows: list[ExpenseRow]
    older: str | None


def _person(user: User | None) -> str:
    if user is None:
        return "Someone no longer on the portal"
    return user.display_name or user.email


def _rows(query: sa.Select[Any]) -> list[ExpenseRow]:
    submitter, decider = aliased(User), aliased(User)
    rows = db.session.execute(
        query.add_columns(submitter, decider)
        .outerjoin(submitter, submitter.id == Expense.submitted_by)
        .outerjoin(decider, decider.id == Expense.decided_by)
    ).all()
    return [
        ExpenseRow(
            e.id, e.amount, e.currency, e.payee, e.description, e.category, e.fund_id,
            e.spent_on, e.visibility, e.reveal_at, e.status, e.submitted_by, _person(who),
            e.created_at, e.decided_by, _person(by) if e.decided_by else None, e.decided_at,
            e.rejection_reason, e.ledger_entry_id, e.receipt_name, e.receipt_size,
            e.receipt_sha256)
        for e, who, by in rows
    ]


def list_expenses(actor_id: str, organisation_id: str, status: str, *,
                  before: str | None = None, page_size: int = PAGE_SIZE) -> ExpensePage:
    """Expenses of one status, newest first, cut by expense (``before=`` an id)."""
    permissions.require(actor_id, organisation_id, "view_internal")
    if status not in STATUS_LABELS:
        raise InvalidExpense("Unknown status.", field="status")
    query = tenancy.organisation_rows(Expense, organisation_id).where(Expense.status == status)
    if before is not None:
        edge = db.session.scalar(
            tenancy.organisation_rows(Expense, organisation_id).where(Expense.id == before))
        if edge is None:
            raise ExpenseNotFound("There is no such expense in this organisation.")
        query = query.where(sa.tuple_(Expense.created_at, Expense.id)
                            < sa.tuple_(edge.created_at, edge.id))
    rows = _rows(query.order_by(Expense.created_at.desc(), Expense.id.desc())
                 .limit(page_size + 1))
    older = rows[page_size - 1].id if len(rows) > page_size else None
    return ExpensePage(rows[:page_size], older)


def waiting(organisation_id: str, limit: int = 20) -> list[ExpenseRow]:
    """Expenses waiting for a decision, oldest first (the overview's queue)."""
    return _rows(tenancy.organisation_rows(Expense, organisation_id)
                 .where(Expense.status == "submitted")
                 .order_by(Expense.created_at, Expense.id).limit(limit))


def _get(organisation_id: str, expense_id: str, *, lock: bool = False) -> Expense:
    query = tenancy.organisation_rows(Expense, organisation_id).where(Expense.id == expense_id)
    if lock:
        query = query.with_for_update()
    expense: Expense | None = db.session.scalar(query)
    if expense is None:
        raise ExpenseNotFound("There is no such expense in this organisation.")
    return expense


def expense_detail(actor_id: str, organisation_id: str, expense_id: str) -> ExpenseDetail:
    membership = permissions.require(actor_id, organisation_id, "view_internal")
    _get(organisation_id, expense_id)
    row = _rows(tenancy.organisation_rows(Expense, organisation_id)
                .where(Expense.id == expense_id))[0]
    waiting_now = row.status == "submitted"
    own = row.submitted_by == actor_id
    may_approve = permissions.allowed(membership.role, "approve_expense")
    return ExpenseDetail(
        row,
        can_decide=waiting_now and may_approve and not own,
        can_withdraw=waiting_now and own,
        decide_refusal=("You submitted this expense, so another member has to approve or "
                        "reject it." if waiting_now and may_approve and own else None),
    )


def _clean_text(value: str, field: str, limit: int, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidExpense("This is needed.", field=field)
    if len(value) > limit:
        raise InvalidExpense(f"Use at most {limit:,} characters.", field=field)
    return value


def submit_expense(
    actor_id: str,
    organisation_id: str,
    *,
    amount: int,
    currency: str,
    fund_id: str,
    category: str,
    payee: str,
    description: str,
    spent_on: date,
    visibility: str,
    reveal_on: date | None = None,
    receipt: receipts.ReceiptUpload | None = None,
) -> str:
    """Record an expense for a second member to approve; its id."""
    permissions.require(actor_id, organisation_id, "submit_expense")
    currency = currency.strip().upper()
    if not is_known_currency(currency):
        raise InvalidExpense("Choose a currency.", field="currency")
    if amount <= 0:
        raise InvalidExpense("Enter an amount above zero.", field="amount")
    if amount > int(current_app.config["LEDGER_MAX_AMOUNT"]):
        raise InvalidExpense("That amount is larger than the ledger can record.",
                             field="amount")
    funds.require_active(organisation_id, fund_id)
    categories.require_active(organisation_id, category)
    payee = _clean_text(payee, "payee", PAYEE_MAX, required=True)
    description = _clean_text(description, "description", DESCRIPTION_MAX, required=False)
    today = datetime.now(UTC).date()
    if spent_on > today + timedelta(days=1):  # a day of slack for time zones ahead of UTC
        raise InvalidExpense("The date spent cannot be in the future.", field="spent_on")
    if visibility not in VISIBILITY_LEVELS:
        raise InvalidExpense("Choose what the public sees of this expense.",
                             field="visibility")
    reveal_at = None
    if visibility == "delayed_public":
        if reveal_on is None:
            raise InvalidExpense("Choose the date on which the expense becomes public.",
                                 field="reveal_on")
        if reveal_on <= today:
            raise InvalidExpense("The disclosure date must be in the future.",
                                 field="reveal_on")
        reveal_at = datetime.combine(reveal_on, time(), tzinfo=UTC)
    elif reveal_on is not None:
        raise InvalidExpense("Only delayed expenses have a disclosure date.",
                             field="reveal_on")
    expense_id = new_id("exp")
    with one_transaction():
        db.session.add(Expense(
            id=expense_id, organisation_id=organisation_id, submitted_by=actor_id,
            amount=amount, currency=currency, fund_id=fund_id, category=category,
            payee=payee, description=description, spent_on=spent_on, visibility=visibility,
            reveal_at=reveal_at, status="submitted",
            receipt_sha256=receipt.sha256 if receipt else None,
            receipt_name=receipt.name if receipt else None,
            receipt_mime=receipt.mime if receipt else None,
            receipt_size=receipt.size if receipt else None,
        ))
        activity.record(organisation_id, actor_id, "expense_submitted", expense_id,
                        amount=amount, currency=currency, payee=payee)
        if receipt is not None:
            receipts.store(receipt)
    return expense_id


def _decidable(actor_id: str, organisation_id: str, expense_id: str) -> Expense:
    permissions.require(actor_id, organisation_id, "approve_expense")
    expense = _get(organisation_id, expense_id, lock=True)
    if expense.status != "submitted":
        raise AlreadyDecided(f"This expense is {STATUS_LABELS[expense.status].lower()} "
                             "already; nothing was changed.")
    if expense.submitted_by == actor_id:
        raise Forbidden("You submitted this expense, so another member has to approve or "
                        "reject it.")
    return expense


def ledger_metadata(expense: Expense) -> dict[str, Any]:
    """What the expense's ledger entry records (and hashes)."""
    metadata: dict[str, Any] = {
        "category": expense.category,
        "payee": expense.payee,
        "fund_id": expense.fund_id,
        "visibility": expense.visibility,
        "expense_id": expense.id,
        "spent_on": expense.spent_on.isoformat(),
    }
    if expense.description:
        metadata["description"] = expense.description
    if expense.reveal_at is not None:
        metadata["reveal_at"] = ledger.utc_timestamp(expense.reveal_at)
    if expense.receipt_sha256:
        metadata["receipt_sha256"] = expense.receipt_sha256
    return metadata


def approve_expense(actor_id: str, organisation_id: str, expense_id: str) -> ledger.Entry:
    """Approve someone else's expense: its ledger entry is written in the same transaction."""
    with one_transaction():
        expense = _decidable(actor_id, organisation_id, expense_id)
        if expense.reveal_at is not None and expense.reveal_at <= datetime.now(UTC):
            raise AlreadyDecided(
                "The disclosure date of this expense has passed while it waited; reject it "
                "so that it can be submitted again with a new date.")
        entry = ledger.append_entry(organisation_id, "expense", -expense.amount,
                                    expense.currency, ledger_metadata(expense),
                                    idempotency_key=f"expense:{expense.id}")
        expense.status = "approved"
        expense.decided_by = actor_id
        expense.decided_at = datetime.now(UTC)
        expense.ledger_entry_id = entry.entry_id
        db.session.flush()
        activity.record(organisation_id, actor_id, "expense_approved", expense.id,
                        entry_id=entry.entry_id, sequence=entry.sequence)
    return entry


def reject_expense(actor_id: str, organisation_id: str, expense_id: str, reason: str) -> None:
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidExpense("Say why the expense is rejected; the submitter will see it.",
                             field="reason")
    if len(reason) > REASON_MAX:
        raise InvalidExpense(f"Use at most {REASON_MAX:,} characters.", field="reason")
    with one_transaction():
        expense = _decidable(actor_id, organisation_id, expense_id)
        expense.status = "rejected"
        expense.decided_by = actor_id
        expense.decided_at = datetime.now(UTC)
        expense.rejection_reason = reason
        db.session.flush()
        activity.record(organisation_id, actor_id, "expense_rejected", expense.id,
                        reason=reason)


def withdraw_expense(actor_id: str, organisation_id: str, expense_id: str) -> None:
    """The submitter takes back an expense nobody has decided on yet."""
    permissions.require(actor_id, organisation_id, "submit_expense")
    with one_transaction():
        expense = _get(organisation_id, expense_id, lock=True)
        if expense.submitted_by != actor_id:
            raise Forbidden("Only the member who submitted an expense can withdraw it.")
        if expense.status != "submitted":
            raise AlreadyDecided(f"This expense is {STATUS_LABELS[expense.status].lower()} "
                                 "already; nothing was changed.")
        expense.status = "withdrawn"
        db.session.flush()
        activity.record(organisation_id, actor_id, "expense_withdrawn", expense.id)
