"""The public ledger: filtered, keyset-paginated pages of entries as the public may see them.

Every filter only looks at what the public may see of an entry (see
``portal.services.disclosure``): a fund, an amount or a word matches disclosed
entries only; a type, a category or a date also matches aggregated rows, whose
type, category and date are public. So neither rows nor their absence reveal a
hidden detail. Pages are cut by sequence number, never by OFFSET, so any page of a
million-entry ledger costs the same as the first.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from amply_verify.hashing import canonical_json
from portal.extensions import db
from portal.models import ENTRY_TYPES, Organisation
from portal.money import minor_units
from portal.services import ledger, ledger_cache, tenancy
from portal.services.disclosure import Disclosure, disclosure
from portal.services.errors import DomainError, NotFound

PAGE_SIZE = 50
MAX_TEXT = 100
CATEGORY_RE = ledger.CATEGORY_RE
FUND_RE = re.compile(r"^fund_[0-9a-f]{24}$")
ENTRY_ID_RE = re.compile(r"^led_[0-9a-f]{24,36}$")

# An entry shown in full, and a row whose date, type and category are public. The
# columns are generated from the metadata (migration 0002) so that, under row-level
# security, filters on them can still use their indexes.
FULL_SQL = (
    "(visibility = 'public_full' OR (visibility = 'delayed_public' AND reveal_at <= :now))"
)
ROW_SQL = f"({FULL_SQL} OR visibility = 'public_aggregated')"
# The words the public may search for: payee, donor display name, description.
PUBLIC_TEXT = (
    "to_tsvector('simple'::regconfig, COALESCE(metadata->>'payee', '') || ' ' ||"
    " COALESCE(metadata->>'donor_name', '') || ' ' || COALESCE(metadata->>'description', ''))"
)


class InvalidFilter(DomainError):
    """A filter value the ledger cannot use; the message says which and why."""


class PublicEntryNotFound(NotFound):
    pass


@dataclass(frozen=True)
class LedgerFilters:
    type: str = ""
    fund: str = ""
    category: str = ""
    date_from: str = ""
    date_to: str = ""
    amount_min: str = ""
    amount_max: str = ""
    text: str = ""

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def query(self) -> dict[str, str]:
        """The filters as query-string arguments (only those set)."""
        return {FILTER_PARAMS[f.name]: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name)}


#: Query-string names of the filters, shared by pages, CSV and the API.
FILTER_PARAMS = {"type": "type", "fund": "fund", "category": "category", "date_from": "from",
                 "date_to": "to", "amount_min": "min", "amount_max": "max", "text": "q"}


def parse_filters(args: Mapping[str, str]) -> LedgerFilters:
    """Read and check filters from query arguments; raise InvalidFilter on bad input."""
    values = {name: str(args.get(param, "")).strip() for name, param in FILTER_PARAMS.items()}
    filters = LedgerFilters(**values)
    if filters.type and filters.type not in ENTRY_TYPES:
        raise InvalidFilter(f"unknown entry type {filters.type!r}", field="type")
    if filters.fund and not FUND_RE.match(filters.fund):
        raise InvalidFilter("unknown fund", field="fund")
    if filters.category and not CATEGORY_RE.match(filters.category):
        raise InvalidFilter("a category is a short lowercase name", field="category")
    start = _date(filters.date_from, "from")
    end = _date(filters.date_to, "to")
    if start and end and start > end:
        raise InvalidFilter("the start date is after the end date", field="from")
    low = _amount(filters.amount_min, "min")
    high = _amount(filters.amount_max, "max")
    if low is not None and high is not None and low > high:
        raise InvalidFilter("the smallest amount is larger than the largest", field="min")
    if len(filters.text) > MAX_TEXT:
        raise InvalidFilter(f"search for at most {MAX_TEXT} characters", field="q")
    if filters.text and not _words(filters.text):
        raise InvalidFilter("search for at least one word of letters or digits", field="q")
    return filters


def _date(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidFilter(f"{text!r} is not a date (YYYY-MM-DD)", field=field) from exc


def _amount(text: str, field: str) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation as exc:
        raise InvalidFilter(f"{text!r} is not an amount", field=field) from exc
    if not value.is_finite() or value < 0 or value > Decimal(10) ** 15:
        raise InvalidFilter("amounts are numbers from 0 upwards", field=field)
    return value


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())[:8]


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class PublicRow:
    """One ledger entry as the public sees it; fields the level hides are None."""

    sequence: int
    level: Disclosure
    visibility: str
    prev_entry_hash: str | None
    entry_hash: str
    entry_id: str | None = None
    timestamp: str | None = None
    type: str | None = None
    category: str | None = None
    fund_id: str | None = None
    party: str | None = None
    description: str | None = None
    amount: int | None = None
    currency: str | None = None
    running_balance: int | None = None
    reveal_at: str | None = None
    metadata: Mapping[str, Any] | None = None

    @property
    def is_full(self) -> bool:
        return self.level == "full"


_ROW_COLUMNS = ("sequence, entry_id, timestamp, type, amount, currency, metadata, "
                "prev_entry_hash, entry_hash, balance_after, withheld_after")
_ROW_WIDTH = 11


class _Scheduled:
    """Amounts still waiting for disclosure, so running balances can leave them out."""

    def __init__(self, organisation_id: str, now: str) -> None:
        rows = db.session.execute(sa.text(
            "SELECT sequence, currency, amount FROM ledger_entries"
            " WHERE organisation_id = :org AND visibility = 'delayed_public'"
            "   AND reveal_at > :now ORDER BY sequence"),
            {"org": organisation_id, "now": now})
        self._sequences: dict[str, list[int]] = defaultdict(list)
        self._totals: dict[str, list[int]] = defaultdict(list)
        for sequence, currency, amount in rows:
            running = self._totals[currency][-1] if self._totals[currency] else 0
            self._sequences[currency].append(sequence)
            self._totals[currency].append(running + amount)

    def up_to(self, currency: str, sequence: int) -> int:
        position = bisect.bisect_right(self._sequences.get(currency, []), sequence)
        return self._totals[currency][position - 1] if position else 0


def _scheduled(organisation_id: str, now: str) -> _Scheduled:
    return ledger_cache.cached(organisation_id, "scheduled",
                               lambda: _Scheduled(organisation_id, now), now=now)


def _row(values: tuple[Any, ...], now: str, scheduled: _Scheduled) -> PublicRow:
    (sequence, entry_id, timestamp, entry_type, amount, currency, metadata, prev_hash,
     entry_hash, balance_after, withheld_after) = values
    level = disclosure(metadata, now)
    visibility = str(metadata.get("visibility", "public_full"))
    if level == "full":
        return PublicRow(
            sequence, level, visibility, prev_hash, entry_hash, entry_id=entry_id,
            timestamp=timestamp, type=entry_type, category=metadata.get("category"),
            fund_id=metadata.get("fund_id"),
            party=metadata.get("payee") or metadata.get("donor_name"),
            description=metadata.get("description") or metadata.get("reason"),
            amount=amount, currency=currency,
            running_balance=balance_after - withheld_after - scheduled.up_to(currency, sequence),
            metadata=metadata,
        )
    if level == "aggregated":
        return PublicRow(sequence, level, visibility, prev_hash, entry_hash,
                         timestamp=timestamp, type=entry_type,
                         category=metadata.get("category"))
    if level == "scheduled":
        return PublicRow(sequence, level, visibility, prev_hash, entry_hash,
                         reveal_at=metadata.get("reveal_at"))
    return PublicRow(sequence, level, visibility, prev_hash, entry_hash)


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class LedgerPage:
    rows: list[PublicRow]
    #: ``after=`` value for the page of newer entries, when there is one.
    newer: int | None
    #: ``before=`` value for the page of older entries, when there is one.
    older: int | None
    filters: LedgerFilters


def _conditions(organisation: Organisation, filters: LedgerFilters,
                now: str) -> tuple[list[str], dict[str, Any]]:
    where = ["organisation_id = :org"]
    params: dict[str, Any] = {"org": organisation.id, "now": now}
    if filters.type:
        where.append(f"type = :type AND {ROW_SQL}")
        params["type"] = filters.type
    if filters.category:
        where.append(f"category = :category AND {ROW_SQL}")
        params["category"] = filters.category
    if filters.fund:
        where.append(f"fund_id = :fund AND {FULL_SQL}")
        params["fund"] = filters.fund
    if filters.date_from or filters.date_to:
        low, high = _sequence_range(organisation.id, filters)
        where.append(f"sequence BETWEEN :seq_low AND :seq_high AND {ROW_SQL}")
        params.update(seq_low=low, seq_high=high)
    if filters.amount_min or filters.amount_max:
        where.append(f"{FULL_SQL} AND ({_amount_sql(organisation, filters, params)})")
    if filters.text:
        where.append(f"{FULL_SQL} AND {PUBLIC_TEXT} @@ to_tsquery('simple', :words)")
        params["words"] = " & ".join(f"'{word}':*" for word in _words(filters.text))
    return where, params


def _sequence_range(organisation_id: str, filters: LedgerFilters) -> tuple[int, int]:
    """Timestamps never go back, so a date range is a sequence range: two index probes."""
    start = filters.date_from or "0001-01-01"
    end = (date.fromisoformat(filters.date_to) + timedelta(days=1)).isoformat() \
        if filters.date_to else "9999-12-31"
    low = db.session.execute(sa.text(
        "SELECT sequence FROM ledger_entries WHERE organisation_id = :org AND timestamp >= :t"
        " ORDER BY timestamp, sequence LIMIT 1"), {"org": organisation_id, "t": start}
    ).scalar_one_or_none()
    high = db.session.execute(sa.text(
        "SELECT sequence FROM ledger_entries WHERE organisation_id = :org AND timestamp < :t"
        " ORDER BY timestamp DESC, sequence DESC LIMIT 1"), {"org": organisation_id, "t": end}
    ).scalar_one_or_none()
    if low is None or high is None:
        return 1, 0  # nothing in the range
    return int(low), int(high)


def _amount_sql(organisation: Organisation, filters: LedgerFilters,
                params: dict[str, Any]) -> str:
    """Amounts are given in major units; each currency has its own minor units."""
    low = _amount(filters.amount_min, "min")
    high = _amount(filters.amount_max, "max")
    currencies = sorted(ledger.balances(organisation.id)) or [organisation.default_currency]
    parts = []
    for index, currency in enumerate(currencies):
        scale = Decimal(10) ** minor_units(currency)
        clause = [f"currency = :cur_{index}"]
        params[f"cur_{index}"] = currency
        if low is not None:
            clause.append(f"abs(amount) >= :low_{index}")
            params[f"low_{index}"] = int((low * scale).to_integral_value(rounding="ROUND_CEILING"))
        if high is not None:
            clause.append(f"abs(amount) <= :high_{index}")
            params[f"high_{index}"] = int((high * scale).to_integral_value(rounding="ROUND_FLOOR"))
        parts.append("(" + " AND ".join(clause) + ")")
    return " OR ".join(parts)


def _select(where: list[str], order: str, limit: int | None = None, *,
            beyond: list[str] | None = None) -> sa.TextClause:
    """Rows matching ``where``; with ``beyond``, a last column saying whether any row
    matches that instead (the same for every row: the database works it out once)."""
    columns = _ROW_COLUMNS
    if beyond is not None:
        columns += (", EXISTS (SELECT 1 FROM ledger_entries WHERE "  # noqa: S608
                    + " AND ".join(beyond) + ")")
    sql = (f"SELECT {columns} FROM ledger_entries WHERE "  # noqa: S608 - constant parts
           + " AND ".join(where) + f" ORDER BY sequence {order}")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sa.text(sql)


def ledger_page(
    organisation: Organisation,
    filters: LedgerFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    page_size: int = PAGE_SIZE,
) -> LedgerPage:
    """A page of entries, newest first: the newest, or those before/after a sequence."""
    now = ledger.utc_timestamp()
    where, params = _conditions(organisation, filters, now)
    # Whether there are matching entries beyond the cursor (a page in the other
    # direction) comes with the page itself, from one index probe.
    if after is not None:
        rows = list(db.session.execute(
            _select([*where, "sequence > :after"], "ASC", page_size + 1,
                    beyond=[*where, "sequence <= :after"]),
            {**params, "after": after}))
        has_newer = len(rows) > page_size
        has_older = bool(rows) and bool(rows[0][-1])
        rows = rows[:page_size][::-1]
    else:
        if before is None:
            rows = list(db.session.execute(_select(where, "DESC", page_size + 1), params))
        else:
            rows = list(db.session.execute(
                _select([*where, "sequence < :before"], "DESC", page_size + 1,
                        beyond=[*where, "sequence >= :before"]),
                {**params, "before": before}))
        has_newer = before is not None and bool(rows) and bool(rows[0][-1])
        has_older = len(rows) > page_size
        rows = rows[:page_size]
    scheduled = _scheduled(organisation.id, now)
    public = [_row(tuple(row)[:_ROW_WIDTH], now, scheduled) for row in rows]
    return LedgerPage(
        public,
        newer=public[0].sequence if public and has_newer else None,
        older=public[-1].sequence if public and has_older else None,
        filters=filters,
    )


def latest_entries(organisation: Organisation, count: int) -> LedgerPage:
    """The newest ``count`` entries, kept while the head stands still (the organisation's
    page shows them to every visitor)."""
    now = ledger.utc_timestamp()
    return ledger_cache.cached(
        organisation.id, f"latest_entries_{count}",
        lambda: ledger_page(organisation, LedgerFilters(), page_size=count), now=now)


def iter_public_rows(organisation: Organisation, filters: LedgerFilters,
                     chunk_size: int = 2_000) -> Iterator[PublicRow]:
    """Every matching row, oldest first, streamed (for CSV downloads)."""
    now = ledger.utc_timestamp()
    where, params = _conditions(organisation, filters, now)
    scheduled = _scheduled(organisation.id, now)
    last = 0
    while True:
        chunk = list(db.session.execute(_select([*where, "sequence > :last"], "ASC", chunk_size),
                                        {**params, "last": last}))
        for row in chunk:
            yield _row(tuple(row), now, scheduled)
        if len(chunk) < chunk_size:
            return
        last = chunk[-1][0]


# --------------------------------------------------------------------------- one entry


@dataclass(frozen=True)
class Link:
    label: str
    sequence: int
    entry_id: str | None  # None when the linked entry is not disclosed
    organisation_slug: str | None = None  # another organisation's ledger


@dataclass(frozen=True)
class EntryView:
    row: PublicRow
    organisation_id: str
    previous: Link | None
    next: Link | None
    links: list[Link]
    #: The exact text whose SHA-256 is the entry hash (shown entries only).
    hash_input: str | None


def _fetch_row(organisation: Organisation, condition: str, value: Any,
               now: str, scheduled: _Scheduled) -> PublicRow | None:
    found = db.session.execute(
        sa.text(f"SELECT {_ROW_COLUMNS} FROM ledger_entries"  # noqa: S608 - constant parts
                f" WHERE organisation_id = :org AND {condition} LIMIT 1"),
        {"org": organisation.id, "value": value},
    ).first()
    return _row(tuple(found), now, scheduled) if found else None


def _link(label: str, row: PublicRow | None, slug: str | None = None) -> Link | None:
    if row is None:
        return None
    return Link(label, row.sequence, row.entry_id if row.is_full else None, slug)


def entry_view(organisation: Organisation, *, entry_id: str | None = None,
               sequence: int | None = None) -> EntryView:
    """One entry with its neighbours and the entries it is linked to."""
    now = ledger.utc_timestamp()
    scheduled = _scheduled(organisation.id, now)
    if entry_id is not None:
        if not ENTRY_ID_RE.match(entry_id):
            raise PublicEntryNotFound("no such entry in this ledger")
        row = _fetch_row(organisation, "entry_id = :value", entry_id, now, scheduled)
    else:
        row = _fetch_row(organisation, "sequence = :value", sequence, now, scheduled)
    if row is None:
        raise PublicEntryNotFound("no such entry in this ledger")
    previous = _fetch_row(organisation, "sequence = :value", row.sequence - 1, now, scheduled)
    following = _fetch_row(organisation, "sequence = :value", row.sequence + 1, now, scheduled)
    links: list[Link] = []
    hash_input = None
    if row.is_full and row.metadata is not None:
        links = _links(organisation, row, now, scheduled)
        hash_input = "|".join((
            str(row.entry_id), str(row.timestamp), organisation.id, str(row.type),
            str(row.amount), str(row.currency), canonical_json(row.metadata),
            row.prev_entry_hash or "null",
        ))
    return EntryView(row, organisation.id, _link("previous entry", previous),
                     _link("next entry", following), links, hash_input)


def _links(organisation: Organisation, row: PublicRow, now: str,
           scheduled: _Scheduled) -> list[Link]:
    meta = row.metadata or {}
    links: list[Link | None] = []
    if "reverses" in meta:
        links.append(_link("reverses", _fetch_row(
            organisation, "entry_id = :value", meta["reverses"], now, scheduled)))
    if "refers_to" in meta:
        links.append(_link("recategorizes", _fetch_row(
            organisation, "entry_id = :value", meta["refers_to"], now, scheduled)))
    links.append(_link("reversed by", _fetch_row(
        organisation, "metadata ? 'reverses' AND metadata->>'reverses' = :value",
        row.entry_id, now, scheduled)))
    for found in db.session.execute(sa.text(
        "SELECT sequence FROM ledger_entries WHERE organisation_id = :org"
        " AND metadata ? 'refers_to' AND metadata->>'refers_to' = :value ORDER BY sequence"),
            {"org": organisation.id, "value": row.entry_id}):
        links.append(_link("recategorized by", _fetch_row(
            organisation, "sequence = :value", found[0], now, scheduled)))
    if "counterpart_entry_id" in meta:
        links.append(_counterpart(meta))
    return [link for link in links if link is not None]


def _counterpart(meta: Mapping[str, Any]) -> Link | None:
    """The other side of a transfer, in the other organisation's ledger (if it is public)."""
    other = db.session.scalar(sa.select(Organisation).where(
        Organisation.id == meta.get("counterparty_organisation_id")))
    if other is None or not other.is_active:
        return None
    sequence = db.session.execute(sa.text(
        "SELECT sequence FROM ledger_entries WHERE organisation_id = :org AND entry_id = :id"),
        {"org": other.id, "id": meta["counterpart_entry_id"]}).scalar_one_or_none()
    if sequence is None:
        return None
    return Link(f"the other side, in {other.name}'s ledger", int(sequence),
                str(meta["counterpart_entry_id"]), other.slug)


@dataclass(frozen=True)
class PublicFund:
    """A fund as its organisation's public pages show it."""

    id: str
    name: str
    type: str
    description: str
    goal_amount: int | None
    goal_currency: str | None
    archived: bool


# The organisation's funds as one JSON value, general fund first, archived ones last.
_FUNDS_JSON = (
    "(SELECT coalesce(jsonb_agg(jsonb_build_object("
    "'id', f.id, 'name', f.name, 'type', f.type, 'description', f.description,"
    " 'goal_amount', f.goal_amount, 'goal_currency', f.goal_currency,"
    " 'archived', f.archived_at IS NOT NULL)"
    " ORDER BY f.type <> 'general', f.archived_at IS NOT NULL, f.name), '[]')"
    " FROM funds f WHERE f.organisation_id = {owner})"
)


def funds_column(owner: str) -> sa.ColumnElement[Any]:
    """The funds of the organisation whose id is the SQL expression ``owner``, as one
    JSON value: to read along with the organisation (see ``remember_funds``)."""
    return sa.literal_column(_FUNDS_JSON.format(owner=owner))


def remember_funds(organisation_id: str, funds: list[dict[str, Any]]) -> None:
    """Funds read along with something else, for ``public_funds`` in this transaction."""
    memo = tenancy.public_read_memo()
    if memo is not None:
        memo[("funds", organisation_id)] = [PublicFund(**fund) for fund in funds]


def public_funds(organisation_id: str) -> list[PublicFund]:
    """Every fund of the organisation (archived ones too), general fund first."""
    memo = tenancy.public_read_memo()
    if memo is not None and ("funds", organisation_id) in memo:
        return list(memo[("funds", organisation_id)])
    found = db.session.execute(sa.text(f"SELECT {_FUNDS_JSON.format(owner=':org')}"),
                               {"org": organisation_id}).scalar_one()
    return [PublicFund(**fund) for fund in found]


def fund_names(organisation_id: str) -> dict[str, str]:
    return {fund.id: fund.name for fund in public_funds(organisation_id)}


def public_categories(organisation_id: str) -> list[str]:
    """Categories the public can filter by: those of aggregated or disclosed rows."""
    now = ledger.utc_timestamp()
    return ledger_cache.cached(organisation_id, "categories",
                               lambda: _public_categories(organisation_id, now), now=now)


def _public_categories(organisation_id: str, now: str) -> list[str]:
    return list(db.session.scalars(sa.text(
        "SELECT category FROM ledger_totals WHERE organisation_id = :org AND category <> ''"
        " AND visibility IN ('public_full', 'public_aggregated') AND entry_count > 0"
        " UNION SELECT category FROM ledger_entries WHERE organisation_id = :org"
        " AND visibility = 'delayed_public' AND reveal_at <= :now AND category IS NOT NULL"
        " ORDER BY 1"),
        {"org": organisation_id, "now": now}))


