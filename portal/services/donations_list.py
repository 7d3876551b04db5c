"""The organisation's donations, as members see them (every donation in full): search,
filters, keyset pages and a streamed CSV export.

Pages are cut by ledger sequence (``before=``), never by OFFSET, and walk the
``(organisation_id, type, sequence)`` index whatever the filters.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.models import LedgerEntry
from portal.money import is_known_currency, minor_units, to_decimal
from portal.services import funds, ledger, permissions, tenancy
from portal.services.errors import DomainError
from portal.spreadsheet import safe_cell

PAGE_SIZE = 50
MAX_TEXT = 100
CSV_COLUMNS = ("date", "sequence", "entry_id", "donor", "message", "amount", "currency",
               "fund", "visibility", "donation_id", "stripe_payment_intent_id", "entry_hash")
FUND_RE = re.compile(r"^fund_[0-9a-f]{24}$")
#: Query-string names of the filters (pages and CSV share them).
FILTER_PARAMS = {"text": "q", "date_from": "from", "date_to": "to", "fund": "fund",
                 "amount_min": "min", "amount_max": "max", "currency": "currency"}


class InvalidDonationFilter(DomainError):
    status_code = 400


@dataclass(frozen=True)
class DonationFilters:
    text: str = ""
    date_from: str = ""
    date_to: str = ""
    fund: str = ""
    amount_min: str = ""
    amount_max: str = ""
    currency: str = ""

    def query(self) -> dict[str, str]:
        """The filters as query-string arguments (only those set)."""
        return {FILTER_PARAMS[name]: value for name, value in asdict(self).items() if value}


@dataclass(frozen=True)
class DonationRow:
    sequence: int
    entry_id: str
    timestamp: str
    amount: int
    currency: str
    donor_name: str
    message: str
    fund_id: str
    visibility: str
    donation_id: str
    stripe_payment_intent_id: str
    entry_hash: str


@dataclass(frozen=True)
class DonationsPage:
    rows: list[DonationRow]
    #: ``after=`` for the page of newer donations, ``before=`` for older ones.
    newer: int | None
    older: int | None
    filters: DonationFilters


def _date(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidDonationFilter(f"“{text[:20]}” is not a date (YYYY-MM-DD).",
                                    field=field) from exc


def _amount(text: str, field: str) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation as exc:
        raise InvalidDonationFilter(f"“{text[:20]}” is not an amount.", field=field) from exc
    if not value.is_finite() or value < 0 or value > Decimal(10) ** 15:
        raise InvalidDonationFilter("Amounts are numbers from 0 upwards.", field=field)
    return value


def parse_filters(args: Mapping[str, str]) -> DonationFilters:
    """Read and check filters from query arguments; raise InvalidDonationFilter."""
    values = {name: str(args.get(param, "")).strip() for name, param in FILTER_PARAMS.items()}
    values["currency"] = values["currency"].upper()
    filters = DonationFilters(**values)
    if len(filters.text) > MAX_TEXT:
        raise InvalidDonationFilter(f"Search for at most {MAX_TEXT} characters.", field="q")
    start, end = _date(filters.date_from, "from"), _date(filters.date_to, "to")
    if start and end and start > end:
        raise InvalidDonationFilter("The start date is after the end date.", field="from")
    low, high = _amount(filters.amount_min, "min"), _amount(filters.amount_max, "max")
    if low is not None and high is not None and low > high:
        raise InvalidDonationFilter("The smallest amount is larger than the largest.",
                                    field="min")
    if filters.fund and not FUND_RE.match(filters.fund):
        raise InvalidDonationFilter("Choose one of the organisation's funds.", field="fund")
    if filters.currency and not is_known_currency(filters.currency):
        raise InvalidDonationFilter("Choose a currency.", field="currency")
    return filters


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _scale(value: Decimal, currency: str, rounding: str) -> int:
    return int((value * (Decimal(10) ** minor_units(currency))).to_integral_value(
        rounding=rounding))


def _query(organisation_id: str, filters: DonationFilters) -> sa.Select[Any]:
    query = tenancy.organisation_rows(LedgerEntry, organisation_id).where(
        LedgerEntry.type == "donation_received")
    if filters.text:
        pattern = f"%{_escape_like(filters.text)}%"
        query = query.where(sa.or_(
            LedgerEntry.meta["donor_name"].astext.ilike(pattern, escape="\\"),
            LedgerEntry.meta["message"].astext.ilike(pattern, escape="\\")))
    if filters.date_from:
        query = query.where(LedgerEntry.timestamp >= filters.date_from)
    if filters.date_to:
        end = date.fromisoformat(filters.date_to) + timedelta(days=1)
        query = query.where(LedgerEntry.timestamp < end.isoformat())
    if filters.fund:
        query = query.where(LedgerEntry.fund_id == filters.fund)
    if filters.currency:
        query = query.where(LedgerEntry.currency == filters.currency)
    low, high = _amount(filters.amount_min, "min"), _amount(filters.amount_max, "max")
    if low is not None or high is not None:
        # Amounts are typed in major units; each currency has its own minor units.
        currencies = ([filters.currency] if filters.currency
                      else sorted(ledger.balances(organisation_id)))
        ranges = []
        for currency in currencies:
            clause = [LedgerEntry.currency == currency]
            if low is not None:
                clause.append(LedgerEntry.amount >= _scale(low, currency, "ROUND_CEILING"))
            if high is not None:
                clause.append(LedgerEntry.amount <= _scale(high, currency, "ROUND_FLOOR"))
            ranges.append(sa.and_(*clause))
        query = query.where(sa.or_(*ranges) if ranges else sa.false())
    return query


_COLUMNS = (LedgerEntry.sequence, LedgerEntry.entry_id, LedgerEntry.timestamp,
            LedgerEntry.amount, LedgerEntry.currency, LedgerEntry.meta, LedgerEntry.entry_hash)


def _rows(query: sa.Select[Any]) -> list[DonationRow]:
    """Plain rows, not ORM objects: a long export keeps nothing in the session."""
    return [_row(found) for found in db.session.execute(query.with_only_columns(*_COLUMNS))]


def _row(entry: sa.Row[Any]) -> DonationRow:
    meta = entry.meta
    return DonationRow(
        entry.sequence, entry.entry_id, entry.timestamp, entry.amount, entry.currency,
        str(meta.get("donor_name", "")), str(meta.get("message", "")),
        str(meta.get("fund_id", "")), str(meta.get("visibility", "public_full")),
        str(meta.get("donation_id", "")), str(meta.get("stripe_payment_intent_id", "")),
        entry.entry_hash)


def donations_page(actor_id: str, organisation_id: str, filters: DonationFilters, *,
                   before: int | None = None, after: int | None = None,
                   page_size: int = PAGE_SIZE) -> DonationsPage:
    """A page of donations, newest first: the newest, or those before/after a sequence."""
    permissions.require(actor_id, organisation_id, "view_internal")
    query = _query(organisation_id, filters)
    if after is not None:
        found = _rows(query.where(LedgerEntry.sequence > after)
                      .order_by(LedgerEntry.sequence).limit(page_size + 1))
        has_newer = len(found) > page_size
        found = found[:page_size][::-1]
        has_older = bool(found) and _exists(
            query.where(LedgerEntry.sequence < found[-1].sequence))
    else:
        bounded = query.where(LedgerEntry.sequence < before) if before is not None else query
        found = _rows(bounded.order_by(LedgerEntry.sequence.desc()).limit(page_size + 1))
        has_older = len(found) > page_size
        found = found[:page_size]
        has_newer = before is not None and bool(found) and _exists(
            query.where(LedgerEntry.sequence > found[0].sequence))
    rows = found
    return DonationsPage(rows, rows[0].sequence if rows and has_newer else None,
                         rows[-1].sequence if rows and has_older else None, filters)


def _exists(query: sa.Select[Any]) -> bool:
    return db.session.execute(query.with_only_columns(sa.literal(1)).limit(1)).first() is not None


def donations_csv(actor_id: str, organisation_id: str, filters: DonationFilters,
                  chunk_size: int = 2_000) -> Iterator[str]:
    """The matching donations as CSV, oldest first, in chunks of text (for streaming).

    Permission is checked now; the rows are read as the chunks are asked for.
    """
    permissions.require(actor_id, organisation_id, "export")
    query = _query(organisation_id, filters)
    names = funds.fund_names(organisation_id)

    def chunks() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        last = 0
        while True:
            batch = _rows(query.where(LedgerEntry.sequence > last)
                          .order_by(LedgerEntry.sequence).limit(chunk_size))
            for row in batch:
                writer.writerow([
                    row.timestamp[:10], row.sequence, row.entry_id, safe_cell(row.donor_name),
                    safe_cell(row.message), to_decimal(row.amount, row.currency),
                    row.currency, safe_cell(names.get(row.fund_id, "")), row.visibility,
                    safe_cell(row.donation_id), safe_cell(row.stripe_payment_intent_id),
                    row.entry_hash])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < chunk_size:
                return
            last = batch[-1].sequence

    return chunks()
