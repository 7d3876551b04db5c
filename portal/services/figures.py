"""An organisation's money in figures: income, spending, balance, categories, funds.

Figures come from the running totals the database keeps per organisation, currency,
type, category, fund and visibility, so they include every entry, hidden ones too,
and the books add up: income minus spending is the balance, in each currency. What the public
may not see entry by entry is reported as one "undisclosed" line per currency.

Definitions (docs/ledger-spec.md names the entry types):

- raised: donations net of refunds, reversals and disputes;
- spending: expenses, fees, transfers to other organisations, and adjustments that
  carry a category (corrections of spending), as a positive number;
- income: everything else that came in (raised, transfers received, other adjustments);
- where the money goes: spending by category; fees without a category count as
  payment fees, transfers out as transfers to other organisations.

Privacy: an aggregated entry's category is public, so its amount counts in its
category; internal entries and entries still waiting for disclosure reveal nothing
but their amount in aggregate, so they count in an "undisclosed" category and are
left out of fund figures (a fund is a detail, too).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger, ledger_cache, public_ledger

DONATION_TYPES = frozenset(
    {"donation_received", "refund_issued", "donation_reversed", "dispute_opened", "dispute_won"}
)
SPENDING_TYPES = frozenset({"expense", "fee", "transfer_out"})
TRANSFERS_OUT = "transfers-out"
UNDISCLOSED = "undisclosed"
UNCATEGORISED = "uncategorised"
PAYMENT_FEES = "payment-fees"


@dataclass
class CurrencyFigures:
    currency: str
    income: int = 0
    spending: int = 0
    raised: int = 0
    transfers_in: int = 0
    entry_count: int = 0
    undisclosed_count: int = 0
    undisclosed_net: int = 0
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def balance(self) -> int:
        return self.income - self.spending

    def spending_by_category(self) -> list[tuple[str, int]]:
        """Categories with net spending, largest first."""
        return sorted(((c, a) for c, a in self.categories.items() if a > 0),
                      key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True)
class FundFigures:
    id: str
    name: str
    type: str
    description: str
    currency: str
    raised: int
    spent: int
    goal: int | None
    archived: bool

    @property
    def progress(self) -> float | None:
        """Share of the goal raised, 0 to 1 (capped), or None without a goal."""
        if not self.goal:
            return None
        return max(0.0, min(1.0, self.raised / self.goal))


@dataclass(frozen=True)
class OrganisationFigures:
    currencies: list[CurrencyFigures]
    funds: list[FundFigures]
    entry_count: int
    disclosed_count: int

    @property
    def public_share(self) -> float:
        """Share of entries shown in full (1.0 for an empty ledger)."""
        return self.disclosed_count / self.entry_count if self.entry_count else 1.0

    def currency(self, code: str) -> CurrencyFigures | None:
        return next((c for c in self.currencies if c.currency == code), None)


def category_of(entry_type: str, category: str) -> str | None:
    """The spending category a totals row counts in, or None when it is not spending."""
    if entry_type == "transfer_out":
        return TRANSFERS_OUT
    if entry_type == "fee":
        return category or PAYMENT_FEES
    if entry_type == "expense":
        return category or UNCATEGORISED
    if entry_type == "adjustment" and category:
        return category
    return None


@dataclass(frozen=True)
class _ScheduledTotal:
    organisation_id: str
    currency: str
    entry_type: str
    category: str
    fund_id: str
    count: int
    amount: int


def _scheduled(organisation_ids: list[str]) -> list[_ScheduledTotal]:
    """Entries still waiting for disclosure, grouped like the running totals."""
    rows = db.session.execute(
        sa.text(
            "SELECT organisation_id, currency, type, COALESCE(category, ''),"
            " COALESCE(fund_id, ''), count(*), sum(amount) FROM ledger_entries"
            " WHERE organisation_id = ANY(:orgs) AND visibility = 'delayed_public'"
            "   AND reveal_at > :now GROUP BY 1, 2, 3, 4, 5"
        ),
        {"orgs": organisation_ids, "now": ledger.utc_timestamp()},
    )
    return [_ScheduledTotal(row[0], row[1], row[2], row[3], row[4], int(row[5]), int(row[6]))
            for row in rows]


def _add_category(figure: CurrencyFigures, category: str, spent: int) -> None:
    figure.categories[category] = figure.categories.get(category, 0) + spent


def currency_figures(organisation_ids: list[str]) -> dict[str, list[CurrencyFigures]]:
    """Figures per currency for several organisations at once (the directory uses it)."""
    rows = db.session.execute(
        sa.text(
            "SELECT organisation_id, currency, entry_type, category, visibility,"
            " sum(entry_count), sum(amount) FROM ledger_totals"
            " WHERE organisation_id = ANY(:orgs)"
            " GROUP BY organisation_id, currency, entry_type, category, visibility"
        ),
        {"orgs": organisation_ids},
    )
    figures: dict[str, dict[str, CurrencyFigures]] = defaultdict(dict)
    for org, currency, entry_type, category, visibility, row_count, row_amount in rows:
        figure = figures[org].setdefault(currency, CurrencyFigures(currency))
        count, amount = int(row_count), int(row_amount)
        figure.entry_count += count
        spent_in = category_of(entry_type, category)
        if spent_in is not None:
            figure.spending -= amount
            _add_category(figure, UNDISCLOSED if visibility == "internal_only" else spent_in,
                          -amount)
        else:
            figure.income += amount
        if entry_type in DONATION_TYPES:
            figure.raised += amount
        elif entry_type == "transfer_in":
            figure.transfers_in += amount
        if visibility in {"public_aggregated", "internal_only"}:
            figure.undisclosed_count += count
            figure.undisclosed_net += amount
    for waiting in _scheduled(organisation_ids):
        figure = figures[waiting.organisation_id].setdefault(
            waiting.currency, CurrencyFigures(waiting.currency))
        figure.undisclosed_count += waiting.count
        figure.undisclosed_net += waiting.amount
        spent_in = category_of(waiting.entry_type, waiting.category)
        if spent_in is not None:
            _add_category(figure, spent_in, waiting.amount)
            _add_category(figure, UNDISCLOSED, -waiting.amount)
    return {
        org: sorted(by_currency.values(), key=lambda f: (-f.entry_count, f.currency))
        for org, by_currency in figures.items()
    }


def _fund_figures(organisation: Organisation) -> list[FundFigures]:
    """Raised and spent per fund, from disclosed entries only (a fund is a detail)."""
    raised, spent = ledger_cache.cached(organisation.id, "fund_totals",
                                        lambda: _fund_totals(organisation.id))
    result = []
    for fund in public_ledger.public_funds(organisation.id):
        currency = fund.goal_currency or organisation.default_currency
        result.append(FundFigures(
            fund.id, fund.name, fund.type, fund.description, currency,
            raised.get((fund.id, currency), 0), spent.get((fund.id, currency), 0),
            fund.goal_amount, fund.archived,
        ))
    return result


FundTotals = dict[tuple[str, str], int]


def _fund_totals(organisation_id: str) -> tuple[FundTotals, FundTotals]:
    """(raised, spent) per (fund, currency): figures of the ledger alone, so they are
    kept while its head stands still; the funds' names and goals are read each time."""
    rows = db.session.execute(
        sa.text(
            "SELECT fund_id, currency, entry_type, category, sum(amount) FROM ledger_totals"
            " WHERE organisation_id = :org AND visibility IN ('public_full', 'delayed_public')"
            " GROUP BY fund_id, currency, entry_type, category"
        ),
        {"org": organisation_id},
    )
    raised: FundTotals = defaultdict(int)
    spent: FundTotals = defaultdict(int)

    def count(fund_id: str, currency: str, entry_type: str, category: str, amount: int) -> None:
        if entry_type in DONATION_TYPES:
            raised[(fund_id, currency)] += amount
        elif category_of(entry_type, category) is not None:
            spent[(fund_id, currency)] -= amount

    for fund_id, currency, entry_type, category, amount in rows:
        count(fund_id, currency, entry_type, category, int(amount))
    for waiting in _scheduled([organisation_id]):
        count(waiting.fund_id, waiting.currency, waiting.entry_type, waiting.category,
              -waiting.amount)
    return dict(raised), dict(spent)


def organisation_figures(organisation: Organisation) -> OrganisationFigures:
    by_currency = ledger_cache.cached(
        organisation.id, "currency_figures",
        lambda: currency_figures([organisation.id]).get(organisation.id, []),
    )
    total = ledger.get_head(organisation.id).sequence
    undisclosed = sum(f.undisclosed_count for f in by_currency)
    return OrganisationFigures(
        currencies=by_currency,
        funds=_fund_figures(organisation),
        entry_count=total,
        disclosed_count=total - undisclosed,
    )
