"""The ledger: append entries to an organisation's hash chain, correct them, verify them.

Every write goes through ``_write``: it locks the organisations' ledger heads (in id
order), computes each entry's hash with the one hash function, and inserts all rows
in one statement, which the database checks and absorbs into heads, balances and
totals. These helpers never commit; the use case that calls them does.

SQL here is assembled only from the constant column lists below; every value is a
bound parameter (hence the ``noqa: S608`` markers).
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from flask import current_app

from amply_verify.hashing import canonical_json, compute_entry_hash
from portal.extensions import db
from portal.ids import new_id, new_ids
from portal.models.ledger import ENTRY_TYPES, VISIBILITY_LEVELS, WITHHELD_LEVELS, LedgerEntry
from portal.money import is_known_currency
from portal.services import tenancy
from portal.services.errors import Conflict, DomainError, NotFound
from portal.services.merkle import check_stored_tree

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CATEGORY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")

# Metadata keys that link entries together. Only the functions that create such
# links (reversals, recategorizations, transfers) may set them.
LINK_KEYS = frozenset(
    {"reverses", "refers_to", "transfer_ref", "counterparty_organisation_id",
     "counterpart_entry_id", "old_category", "new_category"}
)
TEXT_LIMITS = {"payee": 200, "description": 2000, "reason": 1000, "donor_name": 200}
MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 8
MAX_SAFE_INTEGER = 2**53 - 1  # integers JSON readers everywhere agree on

#: Types that only exist linked to another entry, written by the function named.
LINKED_TYPES = {
    "transfer_in": "record_transfer",
    "transfer_out": "record_transfer",
    "donation_reversed": "reverse_entry",
    "expense_recategorized": "recategorize_expense",
}

#: What reversing an entry of each type appends. Types absent here cannot be reversed.
REVERSAL_TYPES = {
    "donation_received": "donation_reversed",
    "expense": "adjustment",
    "fee": "adjustment",
    "refund_issued": "adjustment",
    "adjustment": "adjustment",
}
NOT_REVERSIBLE_BECAUSE = {
    "transfer_in": "a transfer is undone by a transfer back, so both ledgers show it",
    "transfer_out": "a transfer is undone by a transfer back, so both ledgers show it",
    "expense_recategorized": "recategorize the expense again instead",
    "donation_reversed": "a reversal cannot itself be reversed; record a new entry",
    "dispute_opened": "disputes are settled by the payment processor's outcome",
    "dispute_won": "disputes are settled by the payment processor's outcome",
}


class LedgerError(DomainError):
    """The ledger refused a write; nothing was written."""


class UnknownOrganisation(LedgerError, NotFound):
    pass


class InvalidEntry(LedgerError):
    pass


class EntryNotFound(LedgerError, NotFound):
    pass


class NotReversible(LedgerError, Conflict):
    pass


class AlreadyReversed(LedgerError, Conflict):
    pass


class IdempotencyConflict(LedgerError, Conflict):
    """The idempotency key was used before for an entry with different content."""


class ChainRefused(LedgerError, Conflict):
    """The database refused an entry that does not continue the chain."""


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry before it is chained: what the caller decides."""

    type: str
    amount: int
    currency: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    #: Only for imports and demo data (``bulk_load``); appends are stamped "now".
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry as it stands in the ledger."""

    entry_id: str
    organisation_id: str
    sequence: int
    timestamp: str
    type: str
    amount: int
    currency: str
    metadata: Mapping[str, Any]
    prev_entry_hash: str | None
    entry_hash: str
    balance_after: int
    #: The part of balance_after never disclosed entry by entry (aggregated, internal).
    withheld_after: int = 0

    @property
    def visibility(self) -> str:
        return str(self.metadata.get("visibility", "public_full"))

    def computed_hash(self) -> str:
        return compute_entry_hash(
            self.entry_id, self.timestamp, self.organisation_id, self.type, self.amount,
            self.currency, self.metadata, self.prev_entry_hash,
        )


@dataclass(frozen=True, slots=True)
class Head:
    organisation_id: str
    sequence: int
    entry_hash: str | None
    timestamp: str | None


@dataclass(frozen=True, slots=True)
class ChainVerification:
    organisation_id: str
    valid: bool
    entry_count: int
    head_sequence: int
    head_hash: str | None
    #: One of ``hash_mismatch``, ``chain_link_broken``, ``sequence_gap``,
    #: ``balance_mismatch`` or ``head_mismatch``.
    error: str | None = None
    broken_entry_id: str | None = None
    broken_sequence: int | None = None
    detail: str | None = None


# --------------------------------------------------------------------------- validation


def utc_timestamp(moment: datetime | None = None) -> str:
    """The ledger's timestamp string for ``moment`` (now by default), whole seconds, UTC."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Read a ledger timestamp; refuse anything but ``YYYY-MM-DDTHH:MM:SSZ`` of a real moment."""
    if not isinstance(text, str) or not TIMESTAMP_RE.match(text):
        raise ValueError(f"{text!r} is not a timestamp of the form YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a real date and time") from exc


def _check_json(value: Any, path: str, depth: int) -> None:
    """Refuse what JSON or the ledger cannot carry exactly (floats, NUL, odd types)."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidEntry(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels",
                           field="metadata")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise InvalidEntry(f"{path} has a non-text key {key!r}", field="metadata")
            _check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
    else:
        _check_scalar(value, path)


def _check_scalar(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float):
        raise InvalidEntry(f"{path} is a float; money and counts are integers (minor units)",
                           field="metadata")
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidEntry(f"{path} is an integer too large to exchange safely",
                               field="metadata")
    elif isinstance(value, str):
        if "\x00" in value:
            raise InvalidEntry(f"{path} contains a NUL character", field="metadata")
    else:
        raise InvalidEntry(f"{path} has a value of type {type(value).__name__}, "
                           "which JSON cannot carry", field="metadata")


def _normalise_metadata(raw: Mapping[str, Any], *, allow_links: bool) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidEntry("metadata must be a JSON object", field="metadata")
    _check_json(raw, "metadata", 0)
    text = canonical_json(raw)
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        raise InvalidEntry("metadata holds text that is not valid Unicode",
                           field="metadata") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidEntry(f"metadata is larger than {MAX_METADATA_BYTES} bytes",
                           field="metadata")
    # A JSON round trip gives plain dicts and lists, and the exact value stored.
    metadata: dict[str, Any] = json.loads(text)
    if not allow_links:
        links = sorted(LINK_KEYS & metadata.keys())
        if links:
            raise InvalidEntry(
                f"metadata key {links[0]!r} is set by reversals, recategorizations and "
                "transfers only", field="metadata",
            )
    _check_visibility(metadata)
    _check_known_fields(metadata)
    return metadata


def _check_visibility(metadata: dict[str, Any]) -> None:
    visibility = metadata.setdefault("visibility", "public_full")
    if visibility not in VISIBILITY_LEVELS:
        raise InvalidEntry(
            f"unknown visibility {visibility!r}; expected one of {', '.join(VISIBILITY_LEVELS)}",
            field="visibility",
        )
    if visibility != "delayed_public":
        if "reveal_at" in metadata:
            raise InvalidEntry("reveal_at is only for delayed_public entries",
                               field="reveal_at")
        return
    if "reveal_at" not in metadata:
        raise InvalidEntry("a delayed_public entry needs a reveal_at date", field="reveal_at")
    try:
        parse_timestamp(metadata["reveal_at"])
    except ValueError as exc:
        raise InvalidEntry(f"reveal_at: {exc}", field="reveal_at") from exc


def _check_known_fields(metadata: Mapping[str, Any]) -> None:
    for key in ("category", "old_category", "new_category"):
        if key not in metadata:
            continue
        value = metadata[key]
        uncategorised = key == "old_category" and value == ""
        if not (isinstance(value, str) and (CATEGORY_RE.match(value) or uncategorised)):
            raise InvalidEntry(
                f"{key} must be a short lowercase name (letters, digits, - and _)", field=key
            )
    for key, limit in TEXT_LIMITS.items():
        if key not in metadata:
            continue
        value = metadata[key]
        if not isinstance(value, str) or not value.strip():
            raise InvalidEntry(f"{key} must be non-empty text", field=key)
        if len(value) > limit:
            raise InvalidEntry(f"{key} is longer than {limit} characters", field=key)
    if "fund_id" in metadata and not isinstance(metadata["fund_id"], str):
        raise InvalidEntry("fund_id must be a fund id", field="fund_id")


def _normalise_draft(draft: EntryDraft, *, allow_links: bool = False) -> EntryDraft:
    if draft.type not in ENTRY_TYPES:
        raise InvalidEntry(
            f"unknown entry type {draft.type!r}; expected one of {', '.join(ENTRY_TYPES)}",
            field="type",
        )
    if not allow_links and draft.type in LINKED_TYPES:
        raise InvalidEntry(
            f"a {draft.type} entry is linked to another entry; it is written by "
            f"{LINKED_TYPES[draft.type]}", field="type",
        )
    _check_amount(draft.type, draft.amount)
    if not isinstance(draft.currency, str) or not is_known_currency(draft.currency.upper()):
        raise InvalidEntry(f"unknown currency {draft.currency!r}; use an ISO 4217 code",
                           field="currency")
    metadata = _normalise_metadata(draft.metadata, allow_links=allow_links)
    if draft.type == "adjustment" and "reason" not in metadata:
        raise InvalidEntry("an adjustment needs a reason", field="reason")
    key = draft.idempotency_key
    if key is not None and (not isinstance(key, str) or not IDEMPOTENCY_KEY_RE.match(key)):
        raise InvalidEntry("idempotency key must be 1 to 200 printable ASCII characters",
                           field="idempotency_key")
    if draft.timestamp is not None:
        try:
            parse_timestamp(draft.timestamp)
        except ValueError as exc:
            raise InvalidEntry(str(exc), field="timestamp") from exc
    return EntryDraft(draft.type, draft.amount, draft.currency.upper(), metadata, key,
                      draft.timestamp)


def _check_amount(entry_type: str, amount: object) -> None:
    """The sign rules of docs/ledger-spec.md, and the configured range."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidEntry("amount must be an integer number of minor units (cents)",
                           field="amount")
    sign = ENTRY_TYPES[entry_type]
    if sign == 0:
        if amount != 0:
            raise InvalidEntry(f"a {entry_type} entry has amount 0", field="amount")
        return
    if amount == 0:
        raise InvalidEntry("amount must not be zero", field="amount")
    if sign is not None and (amount > 0) != (sign > 0):
        direction = "positive (money in)" if sign > 0 else "negative (money out)"
        raise InvalidEntry(f"a {entry_type} entry must have a {direction} amount",
                           field="amount")
    limit = int(current_app.config["LEDGER_MAX_AMOUNT"])
    if abs(amount) > limit:
        raise InvalidEntry(f"amount is outside the allowed range (at most {limit:,} minor units)",
                           field="amount")


# --------------------------------------------------------------------------- reading


# Column order matches ``Entry``'s fields, so a row builds an Entry positionally.
_ENTRY_FIELDS = (
    "entry_id", "organisation_id", "sequence", "timestamp", "type", "amount", "currency",
    "metadata", "prev_entry_hash", "entry_hash", "balance_after", "withheld_after",
)


def _columns(alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in _ENTRY_FIELDS)


_ENTRY_COLUMNS = _columns()


def _entry_from_row(row: Sequence[Any]) -> Entry:
    return Entry(*row)


def _entry_from_model(model: LedgerEntry) -> Entry:
    return Entry(
        model.entry_id, model.organisation_id, model.sequence, model.timestamp, model.type,
        model.amount, model.currency, model.meta, model.prev_entry_hash, model.entry_hash,
        model.balance_after, model.withheld_after,
    )


def get_entry(organisation_id: str, entry_id: str) -> Entry:
    model = db.session.scalar(
        sa.select(LedgerEntry).where(
            LedgerEntry.organisation_id == organisation_id, LedgerEntry.entry_id == entry_id
        )
    )
    if model is None:
        raise EntryNotFound(f"no entry {entry_id} in this ledger")
    return _entry_from_model(model)


def get_head(organisation_id: str) -> Head:
    memo = tenancy.public_read_memo()
    if memo is not None and ("head", organisation_id) in memo:
        return memo[("head", organisation_id)]  # type: ignore[no-any-return]
    row = db.session.execute(
        sa.text("SELECT sequence, entry_hash, timestamp FROM ledger_heads"
                " WHERE organisation_id = :org"),
        {"org": organisation_id},
    ).one_or_none()
    if row is None:
        raise UnknownOrganisation(f"unknown organisation {organisation_id}")
    head = Head(organisation_id, row.sequence, row.entry_hash, row.timestamp)
    remember_head(head)  # the read began the transaction if none was open
    return head


def remember_head(head: Head) -> None:
    """Keep a head read along with something else, for ``get_head`` in this transaction.

    A public page reads its ledger's head in several places; one read stands for the
    page, which also keeps its figures consistent with one another. Only where the
    scope cannot append (the public one) is anything kept.
    """
    memo = tenancy.public_read_memo()
    if memo is not None:
        memo[("head", head.organisation_id)] = head


def balances(organisation_id: str) -> dict[str, int]:
    """The organisation's balance per currency, over every entry."""
    found = db.session.execute(
        sa.text("SELECT balances FROM ledger_heads WHERE organisation_id = :org"),
        {"org": organisation_id},
    ).scalar_one_or_none()
    if found is None:
        raise UnknownOrganisation(f"unknown organisation {organisation_id}")
    return {currency: int(found[currency]) for currency in sorted(found)}


# --------------------------------------------------------------------------- writing


@dataclass(slots=True)
class _LockedLedger:
    """A ledger whose head this transaction holds, and what appending needs to know."""

    organisation_id: str
    sequence: int
    entry_hash: str | None
    timestamp: str | None
    balances: dict[str, int]
    withheld: dict[str, int]


def _driver_connection() -> psycopg.Connection[Any]:
    """The session's own psycopg connection, for the hot path and for COPY and cursors.

    Statements sent here run in the session's transaction; pending ORM changes are
    flushed first so that they are visible to them.
    """
    db.session.flush()
    raw = db.session.connection().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


# Which organisation owns a fund never changes, and funds are archived, never
# deleted, so what was found once stays true: appends skip the lookup after that.
_fund_owner: dict[str, str] = {}
_general_fund: dict[str, str] = {}
_FUND_CACHE_LIMIT = 100_000


def _learn_funds(organisation_ids: Iterable[str], fund_ids: Iterable[str] = ()) -> None:
    orgs = [org for org in set(organisation_ids) if org not in _general_fund]
    funds = [fund for fund in set(fund_ids) if fund not in _fund_owner]
    if not orgs and not funds:
        return
    if len(_fund_owner) > _FUND_CACHE_LIMIT:
        _fund_owner.clear()
    rows = _driver_connection().execute(
        "SELECT id, organisation_id, type FROM funds"
        " WHERE id = ANY(%s) OR (type = 'general' AND organisation_id = ANY(%s))",
        (funds, orgs),
    )
    for fund_id, organisation_id, fund_type in rows:
        _fund_owner[fund_id] = organisation_id
        if fund_type == "general":
            _general_fund[organisation_id] = fund_id


def _learn_all_funds(organisation_id: str) -> None:
    """Know every fund of one organisation (before a bulk load, which cannot stop to ask)."""
    rows = _driver_connection().execute(
        "SELECT id, type FROM funds WHERE organisation_id = %s", (organisation_id,))
    for fund_id, fund_type in rows:
        _fund_owner[fund_id] = organisation_id
        if fund_type == "general":
            _general_fund[organisation_id] = fund_id


# The head row holds everything an append needs. When the lock had to wait,
# PostgreSQL re-reads the row at its latest version, so what comes back is current.
_LOCK_SQL = (
    "SELECT organisation_id, sequence, entry_hash, timestamp, balances, withheld"
    " FROM ledger_heads"
    " WHERE organisation_id = ANY(%s) ORDER BY organisation_id FOR UPDATE"
)


def _lock(
    organisation_ids: Iterable[str], fund_ids: Iterable[str] = ()
) -> dict[str, _LockedLedger]:
    """Lock the heads of these ledgers, in id order so that two writers never deadlock."""
    wanted = sorted(set(organisation_ids))
    _learn_funds(wanted, fund_ids)
    rows = _driver_connection().execute(_LOCK_SQL, (wanted,)).fetchall()
    locked = {row[0]: _LockedLedger(row[0], row[1], row[2], row[3], dict(row[4]), dict(row[5]))
              for row in rows}
    missing = [org for org in wanted if org not in locked]
    if missing:
        raise UnknownOrganisation(f"unknown organisation {missing[0]}")
    return locked


def _chain(ledger: _LockedLedger, draft: EntryDraft, entry_id: str, now: str) -> Entry:
    """Give ``draft`` its place after the ledger's head; advance the head in memory."""
    timestamp = draft.timestamp or now
    if timestamp > now:
        raise InvalidEntry(f"timestamp {timestamp} is in the future", field="timestamp")
    if ledger.timestamp is not None and timestamp < ledger.timestamp:
        if draft.timestamp is not None:
            raise InvalidEntry(
                f"timestamp {timestamp} is earlier than the ledger's last entry "
                f"({ledger.timestamp})", field="timestamp",
            )
        timestamp = ledger.timestamp  # the clock stepped back: never let the ledger do so
    metadata = dict(draft.metadata)
    if draft.type != "expense_recategorized":
        fund_id = metadata.get("fund_id")
        if fund_id is None:
            general = _general_fund.get(ledger.organisation_id)
            if general is not None:
                metadata["fund_id"] = general
        elif _fund_owner.get(fund_id) != ledger.organisation_id:
            raise InvalidEntry(f"fund {fund_id} does not belong to this organisation",
                               field="fund_id")
    reveal_at = metadata.get("reveal_at")
    if reveal_at is not None and reveal_at <= timestamp:
        raise InvalidEntry("reveal_at must be later than the entry itself", field="reveal_at")
    balance = ledger.balances.get(draft.currency, 0) + draft.amount
    withheld = ledger.withheld.get(draft.currency, 0)
    if metadata.get("visibility") in WITHHELD_LEVELS:
        withheld += draft.amount
    prev_hash = ledger.entry_hash
    sequence = ledger.sequence + 1
    entry_hash = compute_entry_hash(
        entry_id, timestamp, ledger.organisation_id, draft.type, draft.amount, draft.currency,
        metadata, prev_hash,
    )
    ledger.sequence, ledger.entry_hash, ledger.timestamp = sequence, entry_hash, timestamp
    ledger.balances[draft.currency] = balance
    ledger.withheld[draft.currency] = withheld
    return Entry(entry_id, ledger.organisation_id, sequence, timestamp, draft.type,
                 draft.amount, draft.currency, metadata, prev_hash, entry_hash, balance,
                 withheld)


_INSERT_COLUMNS = (*_ENTRY_FIELDS, "idempotency_key")


def _row_values(entry: Entry, key: str | None) -> tuple[Any, ...]:
    return (entry.entry_id, entry.organisation_id, entry.sequence, entry.timestamp, entry.type,
            entry.amount, entry.currency, canonical_json(entry.metadata),
            entry.prev_entry_hash, entry.entry_hash, entry.balance_after, entry.withheld_after,
            key)


def _insert_sql(rows: int) -> str:
    row = "(" + ", ".join("%s::jsonb" if c == "metadata" else "%s" for c in _INSERT_COLUMNS) + ")"
    return (f"INSERT INTO ledger_entries ({', '.join(_INSERT_COLUMNS)}) VALUES "  # noqa: S608
            + ", ".join([row] * rows))


_INSERT_ONE = _insert_sql(1)
# Bulk loads go through a temporary table that COPY can fill, since COPY cannot
# write to a table under row-level security.
_STAGING_TABLE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS ledger_staging"
    " (LIKE ledger_entries INCLUDING DEFAULTS)"
)
_BULK_WORK_MEM = "64MB"
_COPY_TO_STAGING = f"COPY ledger_staging ({', '.join(_INSERT_COLUMNS)}) FROM STDIN"
_INSERT_FROM_STAGING = (
    f"INSERT INTO ledger_entries ({', '.join(_INSERT_COLUMNS)})"  # noqa: S608
    f" SELECT {', '.join(_INSERT_COLUMNS)} FROM ledger_staging ORDER BY sequence"
)


def _insert(entries: Sequence[tuple[Entry, str | None]]) -> None:
    """Insert chained entries in one statement, so the database takes all or none."""
    statement = _INSERT_ONE if len(entries) == 1 else _insert_sql(len(entries))
    params = [value for entry, key in entries for value in _row_values(entry, key)]
    try:
        _driver_connection().execute(statement, params)
    except psycopg.Error as exc:
        raise _translate(exc) from exc


def _translate(exc: psycopg.Error) -> Exception:
    """Name what the database refused in the ledger's words."""
    state = exc.sqlstate
    message = exc.diag.message_primary or str(exc)
    if state in {"AL001", "AL002"}:
        return ChainRefused(message)
    if state == "23505" and "uq_ledger_entries_reverses" in str(exc):
        return AlreadyReversed("this entry has already been reversed")
    if state == "23505" and "uq_ledger_entries_idempotency" in str(exc):
        return IdempotencyConflict("this idempotency key has just been used")
    if state in {"23505", "23514", "23503"}:
        return ChainRefused(message)
    return exc


def _existing_for_keys(organisation_id: str, keys: Sequence[str]) -> dict[str, Entry]:
    if not keys:
        return {}
    rows = db.session.execute(
        sa.text(f"SELECT idempotency_key, {_ENTRY_COLUMNS} FROM ledger_entries"  # noqa: S608
                " WHERE organisation_id = :org AND idempotency_key = ANY(CAST(:keys AS text[]))"),
        {"org": organisation_id, "keys": list(keys)},
    )
    return {row[0]: _entry_from_row(row[1:]) for row in rows}


def _same_content(existing: Entry, draft: EntryDraft) -> bool:
    stored = dict(existing.metadata)
    wanted = dict(draft.metadata)
    if "fund_id" not in wanted:
        stored.pop("fund_id", None)  # filled in with the General Fund when it was written
    return (existing.type, existing.amount, existing.currency, stored) == (
        draft.type, draft.amount, draft.currency, wanted
    )


def _write(
    plan: Sequence[tuple[str, EntryDraft, str]], *, allow_links: bool = False
) -> list[Entry]:
    """Append drafts ``(organisation_id, draft, entry_id)`` across one or more ledgers.

    Drafts whose idempotency key was seen return the entry written then. Either every
    new entry is written or none is.
    """
    drafts = [(org, _normalise_draft(draft, allow_links=allow_links), entry_id)
              for org, draft, entry_id in plan]
    ledgers = _lock(
        (org for org, _, _ in drafts),
        fund_ids=(str(draft.metadata["fund_id"]) for _, draft, _ in drafts
                  if "fund_id" in draft.metadata),
    )
    keys_by_org: dict[str, list[str]] = {}
    for org, draft, _ in drafts:
        if draft.idempotency_key is not None:
            keys_by_org.setdefault(org, []).append(draft.idempotency_key)
    seen = {
        (org, key): entry
        for org, keys in keys_by_org.items()
        for key, entry in _existing_for_keys(org, keys).items()
    }
    now = utc_timestamp()
    results: list[Entry] = []
    fresh: list[tuple[Entry, str | None]] = []
    batch_keys: set[tuple[str, str]] = set()
    for org, draft, entry_id in drafts:
        key = draft.idempotency_key
        if key is not None:
            existing = seen.get((org, key))
            if existing is not None:
                if not _same_content(existing, draft):
                    raise IdempotencyConflict(
                        f"idempotency key {key!r} was already used for a different entry "
                        f"({existing.entry_id})", field="idempotency_key",
                    )
                results.append(existing)
                continue
            if (org, key) in batch_keys:
                raise InvalidEntry(f"idempotency key {key!r} appears twice",
                                   field="idempotency_key")
            batch_keys.add((org, key))
        entry = _chain(ledgers[org], draft, entry_id, now)
        fresh.append((entry, key))
        results.append(entry)
    if fresh:
        _insert(fresh)
    return results


def append_entry(
    organisation_id: str,
    entry_type: str,
    amount: int,
    currency: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
) -> Entry:
    """Append one entry to the organisation's ledger. Flushes; the caller commits."""
    draft = EntryDraft(entry_type, amount, currency, metadata or {}, idempotency_key)
    return _write([(organisation_id, draft, new_id("led"))])[0]


def append_entries(organisation_id: str, drafts: Sequence[EntryDraft]) -> list[Entry]:
    """Append several entries to one ledger at once (a donation and its fee, say)."""
    if any(draft.timestamp is not None for draft in drafts):
        raise InvalidEntry("appended entries are stamped with the current time",
                           field="timestamp")
    ids = new_ids("led", len(drafts))
    return _write([(organisation_id, draft, entry_id)
                   for draft, entry_id in zip(drafts, ids, strict=True)])


def _current_category(original: Entry) -> str:
    latest = db.session.execute(
        sa.text("SELECT metadata->>'new_category' FROM ledger_entries"
                " WHERE organisation_id = :org AND metadata->>'refers_to' = :entry"
                "   AND metadata ? 'refers_to' AND type = 'expense_recategorized'"
                " ORDER BY sequence DESC LIMIT 1"),
        {"org": original.organisation_id, "entry": original.entry_id},
    ).scalar_one_or_none()
    if latest is not None:
        return str(latest)
    return str(original.metadata.get("category", ""))


def _reversal_of(original: Entry) -> str | None:
    return db.session.execute(
        sa.text("SELECT entry_id FROM ledger_entries WHERE organisation_id = :org"
                " AND metadata ? 'reverses' AND metadata->>'reverses' = :entry"),
        {"org": original.organisation_id, "entry": original.entry_id},
    ).scalar_one_or_none()


def _replayed(organisation_id: str, key: str | None, link: str, target: str) -> Entry | None:
    """The correction written before under ``key``, if this call repeats it.

    Checked before anything else, so a retry gets its first answer even though the
    state it was checked against has since changed (the entry is now reversed).
    """
    if key is None:
        return None
    previous = _existing_for_keys(organisation_id, [key]).get(key)
    if previous is None:
        return None
    if previous.metadata.get(link) != target:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for a different entry "
            f"({previous.entry_id})", field="idempotency_key",
        )
    return previous


def reverse_entry(
    organisation_id: str, entry_id: str, reason: str, *, idempotency_key: str | None = None
) -> Entry:
    """Append the opposite of an entry, linked to it. An entry can be reversed once."""
    _lock([organisation_id])
    replayed = _replayed(organisation_id, idempotency_key, "reverses", entry_id)
    if replayed is not None:
        return replayed
    original = get_entry(organisation_id, entry_id)
    if original.type not in REVERSAL_TYPES:
        why = NOT_REVERSIBLE_BECAUSE.get(original.type, "this kind of entry is not reversible")
        raise NotReversible(f"a {original.type} entry cannot be reversed: {why}")
    if "reverses" in original.metadata:
        raise NotReversible("this entry is itself a reversal and cannot be reversed")
    if _reversal_of(original) is not None:
        raise AlreadyReversed("this entry has already been reversed")
    metadata: dict[str, Any] = {"reverses": original.entry_id, "reason": reason}
    for key in ("fund_id", "visibility", "reveal_at"):
        if key in original.metadata:
            metadata[key] = original.metadata[key]
    if metadata.get("visibility") == "delayed_public" and str(metadata["reveal_at"]) <= (
        utc_timestamp()
    ):
        metadata["visibility"] = "public_full"  # already disclosed: the reversal is too
        del metadata["reveal_at"]
    category = (_current_category(original) if original.type == "expense"
                else original.metadata.get("category"))
    if category:
        metadata["category"] = category
    draft = EntryDraft(REVERSAL_TYPES[original.type], -original.amount, original.currency,
                       metadata, idempotency_key)
    return _write([(organisation_id, draft, new_id("led"))], allow_links=True)[0]


def recategorize_expense(
    organisation_id: str,
    entry_id: str,
    new_category: str,
    *,
    reason: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    """Move an expense to another category by appending an ``expense_recategorized`` entry."""
    _lock([organisation_id])
    replayed = _replayed(organisation_id, idempotency_key, "refers_to", entry_id)
    if replayed is not None:
        return replayed
    original = get_entry(organisation_id, entry_id)
    if original.type != "expense":
        raise InvalidEntry(f"only expenses can be recategorized, not a {original.type} entry",
                           field="entry_id")
    if _reversal_of(original) is not None:
        raise NotReversible("this expense was reversed; there is nothing left to recategorize")
    old_category = _current_category(original)
    if new_category == old_category:
        raise InvalidEntry(f"the expense is already in category {new_category!r}",
                           field="new_category")
    metadata: dict[str, Any] = {
        "refers_to": original.entry_id,
        "old_category": old_category,
        "new_category": new_category,
        "visibility": original.visibility,
    }
    if "reveal_at" in original.metadata:
        metadata["reveal_at"] = original.metadata["reveal_at"]
        if str(metadata["reveal_at"]) <= utc_timestamp():
            metadata["visibility"] = "public_full"
            del metadata["reveal_at"]
    if reason:
        metadata["reason"] = reason
    draft = EntryDraft("expense_recategorized", 0, original.currency, metadata,
                       idempotency_key)
    return _write([(organisation_id, draft, new_id("led"))], allow_links=True)[0]


def record_transfer(
    from_organisation_id: str,
    to_organisation_id: str,
    amount: int,
    currency: str,
    *,
    description: str,
    from_fund_id: str | None = None,
    to_fund_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Entry, Entry]:
    """Write ``transfer_out`` and ``transfer_in`` sharing one ``txf_`` reference, or neither."""
    if from_organisation_id == to_organisation_id:
        raise InvalidEntry("an organisation cannot transfer to itself",
                           field="to_organisation_id")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidEntry("a transfer amount must be a positive integer of minor units",
                           field="amount")
    # The one write that crosses tenants: the receiving ledger joins this scope.
    tenancy.include(to_organisation_id)
    out_id, in_id = new_ids("led", 2)
    reference = new_id("txf")
    common = {"transfer_ref": reference, "description": description,
              "visibility": "public_full"}
    out_meta = {**common, "counterparty_organisation_id": to_organisation_id,
                "counterpart_entry_id": in_id}
    in_meta = {**common, "counterparty_organisation_id": from_organisation_id,
               "counterpart_entry_id": out_id}
    if from_fund_id:
        out_meta["fund_id"] = from_fund_id
    if to_fund_id:
        in_meta["fund_id"] = to_fund_id
    if idempotency_key is not None:
        _lock([from_organisation_id, to_organisation_id])
        done_out = _existing_for_keys(from_organisation_id, [idempotency_key])
        done_in = _existing_for_keys(to_organisation_id, [idempotency_key])
        if done_out and done_in:
            first, second = done_out[idempotency_key], done_in[idempotency_key]
            if (first.type, second.type, first.amount, first.currency) != (
                "transfer_out", "transfer_in", -amount, currency.upper()
            ) or first.metadata.get("transfer_ref") != second.metadata.get("transfer_ref"):
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was already used for another transfer",
                    field="idempotency_key",
                )
            return first, second
        if done_out or done_in:
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} was already used in one of the ledgers",
                field="idempotency_key",
            )
    out_entry, in_entry = _write(
        [
            (from_organisation_id,
             EntryDraft("transfer_out", -amount, currency, out_meta, idempotency_key), out_id),
            (to_organisation_id,
             EntryDraft("transfer_in", amount, currency, in_meta, idempotency_key), in_id),
        ],
        allow_links=True,
    )
    return out_entry, in_entry


# --------------------------------------------------------------------------- bulk loading


@dataclass(slots=True)
class _PreparedBatch:
    """Chained rows of one batch, and the head they were chained onto."""

    rows: list[tuple[Any, ...]]
    after_sequence: int
    after_hash: str | None


def _prepare_batches(
    app: Any, ledger: _LockedLedger, drafts: Iterable[EntryDraft], batch_size: int,
    ready: queue.Queue[_PreparedBatch | BaseException | None], stop: threading.Event,
) -> None:
    """Validate and hash batches ahead of the database (runs in a thread of its own)."""
    try:
        with app.app_context():
            for batch in _batches(drafts, batch_size):
                if stop.is_set():
                    return
                prepared = _PreparedBatch([], ledger.sequence, ledger.entry_hash)
                now = utc_timestamp()
                for draft, entry_id in zip(batch, new_ids("led", len(batch)), strict=True):
                    entry = _chain(ledger, _normalise_draft(draft), entry_id, now)
                    prepared.rows.append(_row_values(entry, draft.idempotency_key))
                ready.put(prepared)
    except BaseException as exc:  # handed over to the loading thread, which raises it
        ready.put(exc)
        return
    ready.put(None)


def bulk_load(
    organisation_id: str,
    drafts: Iterable[EntryDraft],
    *,
    batch_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append many entries fast (demo data, imports), committing after each batch.

    Entries are validated and hashed exactly as ``append_entry`` does, by a helper
    thread that stays one batch ahead, while this thread copies the previous batch
    into a temporary table and moves it into the ledger with one INSERT … SELECT
    (COPY cannot write to a table under row-level security); the database checks each
    batch like any other insert. Drafts may carry their own timestamps, which must
    not go back in time nor lie in the future. A refused batch writes nothing; the
    batches before it stay. Entries appended by someone else meanwhile stop the load.
    """
    _learn_all_funds(organisation_id)
    ledger = _lock([organisation_id])[organisation_id]
    ready: queue.Queue[_PreparedBatch | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()
    worker = threading.Thread(
        target=_prepare_batches, name="ledger-bulk-load", daemon=True,
        args=(current_app._get_current_object(), ledger, drafts, batch_size,  # type: ignore[attr-defined]
              ready, stop),
    )
    worker.start()
    written = 0
    try:
        while (prepared := ready.get()) is not None:
            if isinstance(prepared, BaseException):
                raise prepared
            _store_batch(organisation_id, prepared)
            written += len(prepared.rows)
            if progress is not None:
                progress(len(prepared.rows))
    finally:
        stop.set()
        while worker.is_alive():  # unblock a helper waiting to hand over a batch
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        worker.join()
    return written


def _store_batch(organisation_id: str, prepared: _PreparedBatch) -> None:
    """Write one prepared batch in a transaction of its own, or nothing of it."""
    try:
        head = _lock([organisation_id])[organisation_id]
        if (head.sequence, head.entry_hash) != (prepared.after_sequence, prepared.after_hash):
            raise ChainRefused("the ledger received other entries while it was being loaded; "
                               "the entries loaded so far are kept")
        connection = _driver_connection()
        # Room to sort a batch, and the triggers' passes over it, in memory.
        connection.execute(f"SET LOCAL work_mem = '{_BULK_WORK_MEM}'")
        connection.execute(_STAGING_TABLE)
        with connection.cursor() as cursor, cursor.copy(_COPY_TO_STAGING) as copy:
            for row in prepared.rows:
                copy.write_row(row)
        connection.execute(_INSERT_FROM_STAGING)
        connection.execute("TRUNCATE ledger_staging")
    except psycopg.Error as exc:
        db.session.rollback()
        raise _translate(exc) from exc
    except LedgerError:
        db.session.rollback()
        raise
    db.session.commit()


def _batches(items: Iterable[EntryDraft], size: int) -> Iterator[list[EntryDraft]]:
    batch: list[EntryDraft] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- verifying


def _stream(
    query: str, params: Sequence[Any] | Mapping[str, Any], chunk_size: int
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``query`` through a server-side cursor: flat memory however many there are.

    Runs inside the session's transaction, which the session opens on first use.
    """
    with _driver_connection().cursor(name=new_id("ses")) as cursor:
        cursor.itersize = chunk_size
        cursor.execute(query, params)
        yield from cursor


def iter_entries(
    organisation_id: str,
    *,
    up_to_sequence: int | None = None,
    after_sequence: int = 0,
    chunk_size: int = 5_000,
) -> Iterator[Entry]:
    """Stream an organisation's entries in sequence order, after ``after_sequence`` and up
    to ``up_to_sequence`` (inclusive)."""
    query = (f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries"  # noqa: S608
             " WHERE organisation_id = %s AND sequence > %s AND sequence <= %s"
             " ORDER BY sequence")
    limit = up_to_sequence if up_to_sequence is not None else 2**62
    for row in _stream(query, (organisation_id, after_sequence, limit), chunk_size):
        yield Entry(*row)


class _StoredTreeCheck:
    """The stored Merkle tree's check (``merkle.check_stored_tree``), run in the database
    while this process walks the chain: on its own connection, in a thread, when the
    session may open one; in line when the session is held to one connection (a
    caller's transaction, whose uncommitted rows another connection would not see)."""

    def __init__(self, organisation_id: str, size: int) -> None:
        self.organisation_id, self.size = organisation_id, size
        self.outcome: list[str | None] = []
        self.failure: list[BaseException] = []
        self.thread: threading.Thread | None = None
        if isinstance(db.session.get_bind(), sa.engine.Connection):
            return
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        scope = tenancy.current()

        def run() -> None:
            with app.app_context():
                tenancy.set_scope(scope)
                try:
                    self.outcome.append(check_stored_tree(organisation_id, size))
                except BaseException as exc:  # reported by result(), in the caller's thread
                    self.failure.append(exc)
                finally:
                    db.session.remove()

        self.thread = threading.Thread(target=run, name="merkle-check", daemon=True)
        self.thread.start()

    def result(self) -> str | None:
        if self.thread is None:
            return check_stored_tree(self.organisation_id, self.size)
        self.thread.join()
        if self.failure:
            raise self.failure[0]
        return self.outcome[0]


def verify_chain(  # noqa: PLR0912 - one flat loop on purpose: it runs per entry
    organisation_id: str, *, progress: Callable[[int], None] | None = None
) -> ChainVerification:
    """Recompute every hash, link and running balance; name the first entry that is wrong.

    The head is read in the same statement as the entries (one snapshot), so entries
    appended meanwhile are not half-seen and rows beyond the head are noticed.
    """
    head = get_head(organisation_id)
    query = (
        "SELECT (SELECT h.sequence FROM ledger_heads h WHERE h.organisation_id = %(org)s),"
        " (SELECT h.entry_hash FROM ledger_heads h WHERE h.organisation_id = %(org)s),"
        " e.sequence, e.entry_id, e.timestamp, e.type, e.amount, e.currency, e.metadata,"
        " e.prev_entry_hash, e.entry_hash, e.balance_after, e.withheld_after"
        " FROM ledger_entries e WHERE e.organisation_id = %(org)s ORDER BY e.sequence"
    )
    previous_hash: str | None = None
    balances: dict[str, int] = {}
    withheld: dict[str, int] = {}
    count = 0
    step = 10_000
    problem: tuple[str, str] | None = None
    broken: tuple[Any, ...] | None = None
    entry_hash_of = compute_entry_hash  # a local name: this loop runs a million times
    tree = _StoredTreeCheck(organisation_id, head.sequence)
    for row in _stream(query, {"org": organisation_id}, 2_000):
        (head_sequence, head_hash, sequence, entry_id, timestamp, entry_type, amount,
         currency, metadata, prev_hash, stored_hash, balance_after, withheld_after) = row
        if count == 0:
            head = Head(organisation_id, head_sequence, head_hash, head.timestamp)
        balance = balances.get(currency, 0) + amount
        withheld_now = withheld.get(currency, 0)
        if metadata.get("visibility") in WITHHELD_LEVELS:
            withheld_now += amount
        if sequence > head_sequence:
            problem = ("head_mismatch", f"entry {sequence} lies beyond the head "
                       f"({head_sequence}): it was not appended through the ledger")
        elif sequence != count + 1:
            problem = ("sequence_gap", f"expected sequence {count + 1}, found {sequence}")
        elif prev_hash != previous_hash:
            problem = ("chain_link_broken", f"prev_entry_hash is {prev_hash} but the "
                       f"previous entry's hash is {previous_hash}")
        elif (computed := entry_hash_of(entry_id, timestamp, organisation_id, entry_type,
                                        amount, currency, metadata, prev_hash)) != stored_hash:
            problem = ("hash_mismatch", f"stored hash {stored_hash}, recomputed {computed}")
        elif balance != balance_after:
            problem = ("balance_mismatch", f"balance_after is {balance_after} but the entries "
                       f"add up to {balance} {currency}")
        elif withheld_now != withheld_after:
            problem = ("balance_mismatch", f"withheld_after is {withheld_after} but the "
                       f"withheld entries add up to {withheld_now} {currency}")
        if problem is not None:
            broken = row
            break
        balances[currency] = balance
        withheld[currency] = withheld_now
        previous_hash = stored_hash
        count += 1
        if progress is not None and count % step == 0:
            progress(step)
    if progress is not None and count % step:
        progress(count % step)
    if problem is None and (count != head.sequence or previous_hash != head.entry_hash):
        problem = ("head_mismatch", f"the ledger's head says {head.sequence} entries ending in "
                   f"{head.entry_hash}, but the entries end at sequence {count} with "
                   f"{previous_hash}: entries were removed")
    tree_problem = tree.result()
    if problem is None and tree_problem is not None:
        problem = ("merkle_mismatch", tree_problem)
    if problem is None:
        return ChainVerification(organisation_id, True, count, head.sequence, head.entry_hash)
    error, detail = problem
    entry_id_at, sequence_at = (broken[3], broken[2]) if broken else (None, count + 1)
    return ChainVerification(organisation_id, False, count, head.sequence, head.entry_hash,
                             error, entry_id_at, sequence_at, detail)
