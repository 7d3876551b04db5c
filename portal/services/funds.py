"""Funds: where money is earmarked. One General Fund per organisation, created with it;
others are created, edited and archived (never deleted: ledger entries name them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.ids import new_id
from portal.models import FUND_TYPES, Expense, Fund, LedgerEntry, LedgerTotal
from portal.money import is_known_currency
from portal.services import activity, ledger, permissions, tenancy
from portal.services.errors import Conflict, DomainError, NotFound
from portal.services.transactions import one_transaction

NAME_MAX = 120
DESCRIPTION_MAX = 2000
FUND_TYPE_LABELS = {
    "general": "General: money given for no particular purpose",
    "project": "Project: money for one project",
    "restricted": "Restricted: the donor limited what it may be spent on",
    "emergency": "Emergency: a reserve or an appeal for an emergency",
}
#: Types a member may give a fund; the General Fund comes with the organisation.
CHOOSABLE_TYPES = tuple(t for t in FUND_TYPES if t != "general")


class InvalidFund(DomainError):
    status_code = 422


class FundNotFound(NotFound):
    pass


@dataclass(frozen=True)
class FundView:
    id: str
    name: str
    type: str
    description: str
    goal_amount: int | None
    goal_currency: str | None
    archived: bool
    #: Balance per currency; over disclosed entries only unless the member sees all.
    balances: dict[str, int]
    #: Donations received into the fund in the goal's currency (goal progress).
    raised: int

    @property
    def is_general(self) -> bool:
        return self.type == "general"

    @property
    def progress(self) -> float | None:
        if not self.goal_amount:
            return None
        return max(0.0, min(1.0, self.raised / self.goal_amount))


def _balances(organisation_id: str, *, disclosed_only: bool) -> tuple[
        dict[str, dict[str, int]], dict[tuple[str, str], int]]:
    """(fund → currency → balance, (fund, currency) → donations) from the running totals."""
    totals = (tenancy.organisation_rows(LedgerTotal, organisation_id)
              .with_only_columns(LedgerTotal.fund_id, LedgerTotal.currency,
                                 LedgerTotal.entry_type, sa.func.sum(LedgerTotal.amount))
              .group_by(LedgerTotal.fund_id, LedgerTotal.currency, LedgerTotal.entry_type))
    if disclosed_only:
        totals = totals.where(LedgerTotal.visibility == "public_full")
    rows: list[tuple[str, str, str, int]] = [
        (fund, currency, entry_type, int(amount))
        for fund, currency, entry_type, amount in db.session.execute(totals)]
    if disclosed_only:
        # Delayed entries count once their date has passed.
        revealed = (
            tenancy.organisation_rows(LedgerEntry, organisation_id)
            .with_only_columns(LedgerEntry.fund_id, LedgerEntry.currency, LedgerEntry.type,
                               sa.func.sum(LedgerEntry.amount))
            .where(LedgerEntry.visibility == "delayed_public",
                   LedgerEntry.reveal_at <= ledger.utc_timestamp())
            .group_by(LedgerEntry.fund_id, LedgerEntry.currency, LedgerEntry.type))
        rows += [(fund or "", currency, entry_type, int(amount))
                 for fund, currency, entry_type, amount in db.session.execute(revealed)]
    balances: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    raised: dict[tuple[str, str], int] = defaultdict(int)
    for fund, currency, entry_type, amount in rows:
        balances[fund][currency] += amount
        if entry_type in {"donation_received", "refund_issued", "donation_reversed",
                          "dispute_opened", "dispute_won", "transfer_in"}:
            raised[(fund, currency)] += amount
    return balances, raised


def list_funds(actor_id: str, organisation_id: str, *,
               include_archived: bool = True) -> list[FundView]:
    """The organisation's funds, General Fund first, with their balances as this member
    may see them (members who see internal entries see everything)."""
    membership = permissions.require(actor_id, organisation_id, "view")
    full = permissions.allowed(membership.role, "view_internal")
    balances, raised = _balances(organisation_id, disclosed_only=not full)
    query = tenancy.organisation_rows(Fund, organisation_id).order_by(
        Fund.type != "general", Fund.archived_at.is_not(None), sa.func.lower(Fund.name))
    if not include_archived:
        query = query.where(Fund.archived_at.is_(None))
    return [
        FundView(fund.id, fund.name, fund.type, fund.description, fund.goal_amount,
                 fund.goal_currency, fund.archived_at is not None,
                 {c: a for c, a in sorted(balances.get(fund.id, {}).items()) if a},
                 raised.get((fund.id, fund.goal_currency or ""), 0))
        for fund in db.session.scalars(query)
    ]


def active_funds(organisation_id: str) -> list[tuple[str, str]]:
    """(id, name) of funds new entries may use, General Fund first."""
    rows = db.session.execute(
        tenancy.organisation_rows(Fund, organisation_id)
        .with_only_columns(Fund.id, Fund.name)
        .where(Fund.archived_at.is_(None))
        .order_by(Fund.type != "general", sa.func.lower(Fund.name)))
    return [(row.id, row.name) for row in rows]


def fund_names(organisation_id: str) -> dict[str, str]:
    rows = db.session.execute(tenancy.organisation_rows(Fund, organisation_id)
                              .with_only_columns(Fund.id, Fund.name))
    return {row.id: row.name for row in rows}


def get_fund(organisation_id: str, fund_id: str) -> Fund:
    fund: Fund | None = db.session.scalar(
        tenancy.organisation_rows(Fund, organisation_id).where(Fund.id == fund_id))
    if fund is None:
        raise FundNotFound("There is no such fund in this organisation.")
    return fund


def require_active(organisation_id: str, fund_id: str, field: str = "fund") -> Fund:
    """The fund, if new entries may use it."""
    fund: Fund | None = db.session.scalar(
        tenancy.organisation_rows(Fund, organisation_id).where(Fund.id == fund_id))
    if fund is None:
        raise InvalidFund("Choose one of the organisation's funds.", field=field)
    if fund.archived_at is not None:
        raise InvalidFund(f"The fund “{fund.name}” is archived; choose another.", field=field)
    return fund


def _clean(organisation_id: str, name: str, description: str, goal_amount: int | None,
           goal_currency: str | None, *, fund_id: str | None = None) -> tuple[
               str, str, int | None, str | None]:
    name = " ".join(name.split())
    if not name:
        raise InvalidFund("Enter a name for the fund.", field="name")
    if len(name) > NAME_MAX:
        raise InvalidFund(f"Use at most {NAME_MAX} characters.", field="name")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidFund(f"Use at most {DESCRIPTION_MAX} characters.", field="description")
    same_name = tenancy.organisation_rows(Fund, organisation_id).where(
        sa.func.lower(Fund.name) == name.lower())
    if fund_id is not None:
        same_name = same_name.where(Fund.id != fund_id)
    if db.session.scalar(same_name) is not None:
        raise Conflict(f"There is a fund named “{name}” already.", field="name")
    if goal_amount is None:
        return name, description, None, None
    currency = (goal_currency or "").strip().upper()
    if not is_known_currency(currency):
        raise InvalidFund("Choose the currency of the goal.", field="goal_currency")
    if goal_amount <= 0:
        raise InvalidFund("A goal is an amount above zero.", field="goal_amount")
    if goal_amount > int(current_app.config["LEDGER_MAX_AMOUNT"]):
        raise InvalidFund("That goal is larger than the portal can record.",
                          field="goal_amount")
    return name, description, goal_amount, currency


def create_fund(actor_id: str, organisation_id: str, *, name: str, fund_type: str,
                description: str = "", goal_amount: int | None = None,
                goal_currency: str | None = None) -> str:
    """A new fund; its id."""
    permissions.require(actor_id, organisation_id, "manage_funds")
    if fund_type == "general":
        raise InvalidFund("An organisation has exactly one General Fund, created with it.",
                          field="type")
    if fund_type not in FUND_TYPES:
        raise InvalidFund("Choose the kind of fund.", field="type")
    name, description, goal_amount, goal_currency = _clean(
        organisation_id, name, description, goal_amount, goal_currency)
    fund_id = new_id("fund")
    with one_transaction():
        db.session.add(Fund(id=fund_id, organisation_id=organisation_id, name=name,
                            type=fund_type, description=description,
                            goal_amount=goal_amount, goal_currency=goal_currency))
        activity.record(organisation_id, actor_id, "fund_created", fund_id, name=name,
                        type=fund_type)
    return fund_id


def update_fund(actor_id: str, organisation_id: str, fund_id: str, *, name: str,
                fund_type: str, description: str = "", goal_amount: int | None = None,
                goal_currency: str | None = None) -> None:
    """Edit a fund. The General Fund stays general, and no other fund can become one."""
    permissions.require(actor_id, organisation_id, "manage_funds")
    fund = get_fund(organisation_id, fund_id)
    if (fund.type == "general") != (fund_type == "general"):
        raise InvalidFund("The General Fund stays the General Fund, and no other fund can "
                          "become one.", field="type")
    if fund_type not in FUND_TYPES:
        raise InvalidFund("Choose the kind of fund.", field="type")
    name, description, goal_amount, goal_currency = _clean(
        organisation_id, name, description, goal_amount, goal_currency, fund_id=fund_id)
    changes = {key: value for key, value in {
        "name": name, "type": fund_type, "description": description,
        "goal_amount": goal_amount, "goal_currency": goal_currency}.items()
        if getattr(fund, key) != value}
    if not changes:
        return
    with one_transaction():
        for key, value in changes.items():
            setattr(fund, key, value)
        activity.record(organisation_id, actor_id, "fund_updated", fund_id,
                        changed=sorted(changes), name=name)


def archive_fund(actor_id: str, organisation_id: str, fund_id: str) -> None:
    """Stop new entries from using a fund; its entries and figures stay as they are."""
    permissions.require(actor_id, organisation_id, "manage_funds")
    fund = get_fund(organisation_id, fund_id)
    if fund.type == "general":
        raise Conflict("The General Fund cannot be archived: money given for no particular "
                       "purpose is recorded there.")
    if fund.archived_at is not None:
        raise Conflict(f"The fund “{fund.name}” is archived already.")
    waiting = db.session.scalar(
        tenancy.organisation_rows(Expense, organisation_id)
        .with_only_columns(sa.func.count())
        .where(Expense.fund_id == fund_id, Expense.status == "submitted"))
    if waiting:
        raise Conflict(f"{waiting} expense(s) charged to “{fund.name}” are waiting for "
                       "approval; decide on them before archiving the fund.")
    with one_transaction():
        fund.archived_at = datetime.now(UTC)
        activity.record(organisation_id, actor_id, "fund_archived", fund_id, name=fund.name)


def restore_fund(actor_id: str, organisation_id: str, fund_id: str) -> None:
    permissions.require(actor_id, organisation_id, "manage_funds")
    fund = get_fund(organisation_id, fund_id)
    if fund.archived_at is None:
        raise Conflict(f"The fund “{fund.name}” is not archived.")
    with one_transaction():
        fund.archived_at = None
        activity.record(organisation_id, actor_id, "fund_restored", fund_id, name=fund.name)
