"""What the public may see of an entry: one rule set for pages, exports, CSV and the API.

- ``public_full``: everything.
- ``public_aggregated``: the row (sequence, date, type, category) without amount or details.
- ``delayed_public``: like ``internal_only`` until ``reveal_at``, then everything.
- ``internal_only``: sequence and hashes only.

Amounts of hidden entries still count in totals, which are published in aggregate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from portal.services.ledger import Entry, utc_timestamp

Disclosure = Literal["full", "aggregated", "scheduled", "internal"]

#: Fields every redacted entry keeps, so that the chain's links can still be checked.
LINK_FIELDS = ("sequence", "prev_entry_hash", "entry_hash")


def disclosure(metadata: Mapping[str, Any], now: str | None = None) -> Disclosure:
    """How much of an entry with this metadata the public sees at ``now``."""
    visibility = metadata.get("visibility", "public_full")
    if visibility == "public_full":
        return "full"
    if visibility == "public_aggregated":
        return "aggregated"
    if visibility == "delayed_public":
        if str(metadata.get("reveal_at", "")) <= (now or utc_timestamp()):
            return "full"
        return "scheduled"
    return "internal"


def is_disclosed(entry: Entry, now: str | None = None) -> bool:
    return disclosure(entry.metadata, now) == "full"


def full_record(entry: Entry, *, with_balance: bool) -> dict[str, Any]:
    """Every hashed field of the entry (what the verifier recomputes the hash from)."""
    record: dict[str, Any] = {
        "sequence": entry.sequence,
        "entry_id": entry.entry_id,
        "timestamp": entry.timestamp,
        "organisation_id": entry.organisation_id,
        "type": entry.type,
        "amount": entry.amount,
        "currency": entry.currency,
        "metadata": dict(entry.metadata),
        "prev_entry_hash": entry.prev_entry_hash,
        "entry_hash": entry.entry_hash,
        "visibility": entry.visibility,
    }
    if with_balance:
        record["balance_after"] = entry.balance_after
    return record


def public_record(entry: Entry, now: str | None = None) -> dict[str, Any]:
    """The entry as the public may see it: full, or redacted to what its level allows."""
    level = disclosure(entry.metadata, now)
    if level == "full":
        return full_record(entry, with_balance=False)
    record: dict[str, Any] = {
        "sequence": entry.sequence,
        "visibility": entry.visibility,
        "redacted": True,
        "prev_entry_hash": entry.prev_entry_hash,
        "entry_hash": entry.entry_hash,
    }
    if level == "aggregated":
        record["timestamp"] = entry.timestamp
        record["type"] = entry.type
        if "category" in entry.metadata:
            record["category"] = entry.metadata["category"]
    elif level == "scheduled":
        record["reveal_at"] = entry.metadata["reveal_at"]
    return record
