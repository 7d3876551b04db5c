"""The ledger as a member sees it in the dashboard.

Members whose role may see internal entries (``view_internal``) see every entry in
full; the others (viewers) see exactly what the public sees, so the dashboard never
shows them more than the public pages do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from amply_verify.hashing import canonical_json
from portal.extensions import db
from portal.models import LedgerEntry, Organisation
from portal.services import ledger, permissions, public_ledger, tenancy
from portal.services.disclosure import Disclosure, disclosure

PAGE_SIZE = 50


@dataclass(frozen=True)
class MemberRow:
    """One entry as this member may see it; what the member may not see is None."""

    sequence: int
    entry_hash: str
    prev_entry_hash: str | None
    #: What the public sees of it: full, aggregated, scheduled or internal.
    public_level: Disclosure
    #: Whether this member sees it in full.
    shown: bool
    visibility: str
    entry_id: str | None = None
    timestamp: str | None = None
    type: str | None = None
    category: str | None = None
    fund_id: str | None = None
    party: str | None = None
    description: str | None = None
    amount: int | None = None
    currency: str | None = None
    balance_after: int | None = None
    reveal_at: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberLedgerPage:
    rows: list[MemberRow]
    newer: int | None
    older: int | None
    full_view: bool


@dataclass(frozen=True)
class Link:
    label: str
    entry_id: str
    sequence: int


@dataclass(frozen=True)
class MemberEntry:
    row: MemberRow
    full_view: bool
    links: list[Link]
    #: The text whose SHA-256 is the entry's hash (entries shown in full).
    hash_input: str | None
    #: The expense's current category, after recategorizations (expenses only).
    current_category: str | None
    #: None when the entry can be reversed, otherwise why not.
    not_reversible_because: str | None
    can_recategorize: bool


def sees_everything(actor_id: str, organisation_id: str) -> bool:
    membership = permissions.require(actor_id, organisation_id, "view")
    return permissions.allowed(membership.role, "view_internal")


def _full_row(entry: LedgerEntry, now: str) -> MemberRow:
    meta = entry.meta
    return MemberRow(
        entry.sequence, entry.entry_hash, entry.prev_entry_hash, disclosure(meta, now), True,
        str(meta.get("visibility", "public_full")), entry.entry_id, entry.timestamp,
        entry.type, meta.get("category"), meta.get("fund_id"),
        meta.get("payee") or meta.get("donor_name"),
        meta.get("description") or meta.get("reason"), entry.amount, entry.currency,
        entry.balance_after, meta.get("reveal_at"), meta)


def _public_row(row: public_ledger.PublicRow) -> MemberRow:
    return MemberRow(
        row.sequence, row.entry_hash, row.prev_entry_hash, row.level, row.is_full,
        row.visibility, row.entry_id, row.timestamp, row.type, row.category, row.fund_id,
        row.party, row.description, row.amount, row.currency, row.running_balance,
        row.reveal_at, row.metadata or {})


def entries_page(actor_id: str, organisation: Organisation, *, before: int | None = None,
                 after: int | None = None, page_size: int = PAGE_SIZE) -> MemberLedgerPage:
    """A page of the ledger, newest first, cut by sequence."""
    if not sees_everything(actor_id, organisation.id):
        page = public_ledger.ledger_page(organisation, public_ledger.LedgerFilters(),
                                         before=before, after=after, page_size=page_size)
        return MemberLedgerPage([_public_row(r) for r in page.rows], page.newer, page.older,
                                False)
    query = tenancy.organisation_rows(LedgerEntry, organisation.id)
    now = ledger.utc_timestamp()
    if after is not None:
        found = list(db.session.scalars(query.where(LedgerEntry.sequence > after)
                                        .order_by(LedgerEntry.sequence).limit(page_size + 1)))
        has_newer = len(found) > page_size
        found = found[:page_size][::-1]
        has_older = bool(found) and found[-1].sequence > 1
    else:
        bounded = query.where(LedgerEntry.sequence < before) if before is not None else query
        found = list(db.session.scalars(bounded.order_by(LedgerEntry.sequence.desc())
                                        .limit(page_size + 1)))
        has_older = len(found) > page_size
        found = found[:page_size]
        has_newer = before is not None and bool(found) and (
            found[0].sequence < ledger.get_head(organisation.id).sequence)
    rows = [_full_row(entry, now) for entry in found]
    return MemberLedgerPage(rows, rows[0].sequence if rows and has_newer else None,
                            rows[-1].sequence if rows and has_older else None, True)


def _linked(organisation_id: str, condition: sa.ColumnElement[bool]) -> list[LedgerEntry]:
    return list(db.session.scalars(tenancy.organisation_rows(LedgerEntry, organisation_id)
                                   .where(condition).order_by(LedgerEntry.sequence)))


def entry(actor_id: str, organisation: Organisation, entry_id: str) -> MemberEntry:
    """One entry with what links to it, and what corrections it still allows."""
    if not sees_everything(actor_id, organisation.id):
        view = public_ledger.entry_view(organisation, entry_id=entry_id)
        return MemberEntry(_public_row(view.row), False, [], view.hash_input, None,
                           "only members who see every entry in full correct entries", False)
    found = db.session.scalar(tenancy.organisation_rows(LedgerEntry, organisation.id)
                              .where(LedgerEntry.entry_id == entry_id))
    if found is None:
        raise ledger.EntryNotFound("There is no such entry in this ledger.")
    row = _full_row(found, ledger.utc_timestamp())
    meta = found.meta
    links: list[Link] = []
    for key, label in (("reverses", "Reverses"), ("refers_to", "Recategorizes")):
        if key in meta:
            links += [Link(label, e.entry_id, e.sequence) for e in _linked(
                organisation.id, LedgerEntry.entry_id == str(meta[key]))]
    reversals = _linked(organisation.id, sa.and_(
        LedgerEntry.meta.has_key("reverses"),
        LedgerEntry.meta["reverses"].astext == found.entry_id))
    links += [Link("Reversed by", e.entry_id, e.sequence) for e in reversals]
    moves = _linked(organisation.id, sa.and_(
        LedgerEntry.type == "expense_recategorized",
        LedgerEntry.meta["refers_to"].astext == found.entry_id))
    links += [Link("Recategorized by", e.entry_id, e.sequence) for e in moves]
    if found.type not in ledger.REVERSAL_TYPES:
        why: str | None = ledger.NOT_REVERSIBLE_BECAUSE.get(
            found.type, "this kind of entry cannot be reversed")
    elif "reverses" in meta:
        why = "this entry is itself a reversal"
    elif reversals:
        why = "it has been reversed already"
    else:
        why = None
    current_category = None
    if found.type == "expense":
        current_category = (str(moves[-1].meta.get("new_category")) if moves
                            else str(meta.get("category", "")))
    hash_input = "|".join((found.entry_id, found.timestamp, found.organisation_id, found.type,
                           str(found.amount), found.currency, canonical_json(meta),
                           found.prev_entry_hash or "null"))
    return MemberEntry(row, True, links, hash_input, current_category, why,
                       found.type == "expense" and not reversals)


def recent(actor_id: str, organisation: Organisation, count: int = 10) -> MemberLedgerPage:
    return entries_page(actor_id, organisation, page_size=count)
