"""Transfers to another organisation on the portal: both ledgers in one transaction.

The sending organisation chooses the receiver among the active organisations; the
ledger writes ``transfer_out`` and ``transfer_in`` in one statement, each naming the
other, and both organisations' activity logs record it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.models import LedgerEntry, LedgerHead, Organisation
from portal.money import is_known_currency
from portal.services import activity, funds, ledger, permissions, tenancy
from portal.services.errors import DomainError
from portal.services.transactions import one_transaction

DESCRIPTION_MAX = ledger.TEXT_LIMITS["description"]


class InvalidTransfer(DomainError):
    status_code = 422


@dataclass(frozen=True)
class Recipient:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class TransferRow:
    entry_id: str
    sequence: int
    timestamp: str
    type: str
    amount: int
    currency: str
    description: str
    counterparty: str


class InsufficientBalance(InvalidTransfer):
    """More than the organisation holds in that currency."""


def _lock_heads(*organisation_ids: str) -> dict[str, dict[str, int]]:
    """Lock both ledgers' heads, in id order as the ledger does (so no deadlock), and
    return their balances: the balance checked is the one the transfer continues from."""
    balances = {}
    for organisation_id in sorted(organisation_ids):
        tenancy.include(organisation_id)
        head = db.session.scalar(tenancy.organisation_rows(LedgerHead, organisation_id)
                                 .with_for_update()
                                 .execution_options(populate_existing=True))
        if head is None:
            raise InvalidTransfer("That organisation cannot receive transfers.",
                                  field="recipient")
        balances[organisation_id] = {c: int(a) for c, a in head.balances.items()}
    return balances


def _active_organisations() -> sa.Select[Any]:
    return sa.select(Organisation).where(Organisation.status == "active")


def recipients(actor_id: str, organisation_id: str) -> list[Recipient]:
    """The organisations a transfer may go to: every other active one, by name."""
    permissions.require(actor_id, organisation_id, "make_transfer")
    # Active organisations are public; read them as the public would, for this query.
    with tenancy.scoped(replace(tenancy.current(), public_read=True)):
        rows = db.session.scalars(
            _active_organisations().where(Organisation.id != organisation_id)
            .order_by(sa.func.lower(Organisation.name)))
        return [Recipient(o.id, o.slug, o.name) for o in rows]


def _recipient(organisation_id: str, reference: str) -> Recipient:
    """The active organisation with this address name, or else with exactly this name."""
    reference = " ".join(reference.split())
    found = None
    with tenancy.scoped(replace(tenancy.current(), public_read=True)):
        if reference:
            found = db.session.scalar(_active_organisations().where(
                Organisation.slug == reference.lower()))
        if found is None and reference:
            named = db.session.scalars(_active_organisations().where(
                sa.func.lower(Organisation.name) == reference.lower()).limit(2)).all()
            found = named[0] if len(named) == 1 else None
    if found is None:
        raise InvalidTransfer("Choose an active organisation on the portal.",
                              field="recipient")
    if found.id == organisation_id:
        raise InvalidTransfer("An organisation cannot transfer to itself.", field="recipient")
    return Recipient(found.id, found.slug, found.name)


def make_transfer(actor_id: str, organisation_id: str, *, recipient: str, amount: int,
                  currency: str, description: str, fund_id: str) -> ledger.Entry:
    """Send ``amount`` to the organisation with address name ``recipient``; the sender's
    ``transfer_out`` entry. Refused when the balance in that currency is too small."""
    permissions.require(actor_id, organisation_id, "make_transfer")
    receiver = _recipient(organisation_id, recipient)
    currency = currency.strip().upper()
    if not is_known_currency(currency):
        raise InvalidTransfer("Choose a currency.", field="currency")
    if amount <= 0:
        raise InvalidTransfer("Enter an amount above zero.", field="amount")
    if amount > int(current_app.config["LEDGER_MAX_AMOUNT"]):
        raise InvalidTransfer("That amount is larger than the ledger can record.",
                              field="amount")
    description = " ".join(description.split())
    if not description:
        raise InvalidTransfer("Say what the transfer is for; both ledgers publish it.",
                              field="description")
    if len(description) > DESCRIPTION_MAX:
        raise InvalidTransfer(f"Use at most {DESCRIPTION_MAX:,} characters.",
                              field="description")
    funds.require_active(organisation_id, fund_id)
    with one_transaction():
        held = _lock_heads(organisation_id, receiver.id)[organisation_id].get(currency, 0)
        if held < amount:
            raise InsufficientBalance(
                f"The organisation holds less than that in {currency}: a transfer cannot "
                "take a balance below zero.", field="amount")
        sent, received = ledger.record_transfer(
            organisation_id, receiver.id, amount, currency, description=description,
            from_fund_id=fund_id)
        activity.record(organisation_id, actor_id, "transfer_sent", sent.entry_id,
                        amount=amount, currency=currency, to=receiver.slug)
        activity.record(receiver.id, actor_id, "transfer_received", received.entry_id,
                        amount=amount, currency=currency, sender=organisation_id)
    return sent


def recent_transfers(actor_id: str, organisation_id: str, limit: int = 20) -> list[TransferRow]:
    """The latest transfers in and out, newest first, with the other organisation's name."""
    permissions.require(actor_id, organisation_id, "view")
    entries = db.session.scalars(
        tenancy.organisation_rows(LedgerEntry, organisation_id)
        .where(LedgerEntry.type.in_(("transfer_in", "transfer_out")))
        .order_by(LedgerEntry.sequence.desc()).limit(limit)).all()
    others = {str(e.meta.get("counterparty_organisation_id", "")) for e in entries}
    with tenancy.scoped(replace(tenancy.current(), public_read=True)):
        names = {row.id: row.name for row in db.session.execute(
            sa.select(Organisation.id, Organisation.name).where(Organisation.id.in_(others)))}
    return [
        TransferRow(e.entry_id, e.sequence, e.timestamp, e.type, e.amount, e.currency,
                    str(e.meta.get("description", "")),
                    names.get(str(e.meta.get("counterparty_organisation_id")),
                              "an organisation no longer on the portal"))
        for e in entries
    ]
