"""Checking an export's chain, one record at a time (docs/ledger-spec.md, "Verifying").

``ChainChecker`` is fed the records in file order. It checks sequence continuity,
every link (through redacted records too), every disclosed entry's hash, and, at
the end, the announced head; meanwhile it builds the Merkle tree over the entries
and keeps per-currency totals, so a checkpoint can be compared in the same pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from amply_verify import merkle
from amply_verify.export import ExportError, ExportHeader
from amply_verify.hashing import KNOWN_FUTURE_PREFIXES, compute_entry_hash

HASH_RE = re.compile(r"sha256:[0-9a-f]{64}")
SUPPORTED = "sha256"


class ChainBroken(Exception):
    """The chain is invalid: names the first entry that is wrong, and why."""

    def __init__(self, sequence: int, entry_id: str | None, reason: str) -> None:
        where = f"entry {sequence}" + (f" ({entry_id})" if entry_id else "")
        super().__init__(f"{where}: {reason}")
        self.sequence, self.entry_id, self.reason = sequence, entry_id, reason


@dataclass
class Totals:
    entries: int = 0
    balance: int = 0
    volume: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"entries": self.entries, "balance": self.balance, "volume": self.volume}


@dataclass
class Snapshot:
    """The chain as it stood after a given entry (a checkpoint's tree size)."""

    size: int
    root: bytes
    head_hash: str | None
    totals: dict[str, dict[str, int]]
    redacted: int


@dataclass
class ChainResult:
    entry_count: int
    head_hash: str | None
    root: bytes
    redacted: int
    unsupported: list[int] = field(default_factory=list)
    snapshot: Snapshot | None = None


def _text(record: dict[str, Any], key: str, sequence: int) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise ExportError(f"entry {sequence}: {key!r} should be text, found"
                          f" {type(value).__name__}")
    return value


def _integer(record: dict[str, Any], key: str, sequence: int | str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ExportError(f"entry {sequence}: {key!r} should be a whole number, found"
                          f" {type(value).__name__}")
    return value


class ChainChecker:
    """Feed records with ``add``; ``finish`` checks the head and returns the result."""

    def __init__(self, header: ExportHeader, *, snapshot_at: int | None = None) -> None:
        self.header = header
        self.previous: str | None = None
        self.count = 0
        self.redacted = 0
        self.unsupported: list[int] = []
        self.tree = merkle.TreeBuilder()
        self.totals: dict[str, Totals] = {}
        self.snapshot_at = snapshot_at
        self.snapshot: Snapshot | None = None
        if snapshot_at == 0:
            self.snapshot = Snapshot(0, merkle.EMPTY_ROOT, None, {}, 0)

    def _hash_of(self, record: dict[str, Any], sequence: int, key: str) -> str | None:
        value = record.get(key)
        if value is None and key == "prev_entry_hash":
            return None
        if not isinstance(value, str):
            raise ExportError(f"entry {sequence}: {key!r} should be a hash string")
        if HASH_RE.fullmatch(value) or value.startswith(KNOWN_FUTURE_PREFIXES):
            return value
        prefix = value.partition(":")[0] if ":" in value else value[:12]
        raise ExportError(f"entry {sequence}: {key} has an unknown hash prefix {prefix!r}"
                          f" (this verifier knows sha256, and recognises"
                          f" {', '.join(p[:-1] for p in KNOWN_FUTURE_PREFIXES)})")

    def add(self, record: dict[str, Any]) -> None:
        expected = self.count + 1
        sequence = _integer(record, "sequence", expected)
        if sequence != expected:
            raise ChainBroken(expected, None, f"sequence {sequence} found where {expected} was"
                                              " expected: an entry is missing or out of order")
        entry_hash = self._hash_of(record, sequence, "entry_hash")
        assert entry_hash is not None
        prev = self._hash_of(record, sequence, "prev_entry_hash")
        entry_id = record.get("entry_id") if isinstance(record.get("entry_id"), str) else None
        if prev != self.previous:
            raise ChainBroken(sequence, entry_id,
                              f"its prev_entry_hash {prev} is not the previous entry's hash"
                              f" {self.previous}: an entry was changed, inserted or removed")
        if record.get("redacted") is True:
            self.redacted += 1
        elif entry_hash.startswith(KNOWN_FUTURE_PREFIXES):
            self.unsupported.append(sequence)
        else:
            self._check_content(record, sequence, entry_hash)
        self.tree.add_entry_hash(entry_hash)
        self.previous = entry_hash
        self.count = sequence
        if sequence == self.snapshot_at:
            self.snapshot = Snapshot(sequence, self.tree.root(), entry_hash,
                                     {c: t.as_dict() for c, t in sorted(self.totals.items())},
                                     self.redacted)

    def _check_content(self, record: dict[str, Any], sequence: int, entry_hash: str) -> None:
        entry_id = _text(record, "entry_id", sequence)
        organisation_id = _text(record, "organisation_id", sequence)
        if organisation_id != self.header.organisation_id:
            raise ChainBroken(sequence, entry_id, f"it belongs to {organisation_id}, not to"
                                                  f" {self.header.organisation_id}")
        amount = _integer(record, "amount", sequence)
        currency = _text(record, "currency", sequence)
        metadata = record.get("metadata")
        if not isinstance(metadata, dict):
            raise ExportError(f"entry {sequence}: 'metadata' should be a JSON object")
        try:
            computed = compute_entry_hash(
                entry_id, _text(record, "timestamp", sequence), organisation_id,
                _text(record, "type", sequence), amount, currency, metadata,
                record.get("prev_entry_hash"))
        except (TypeError, ValueError) as exc:
            raise ExportError(f"entry {sequence}: its metadata cannot be hashed: {exc}") from exc
        if computed != entry_hash:
            raise ChainBroken(sequence, entry_id, f"its content hashes to {computed}, not to the"
                                                  f" recorded {entry_hash}: it was changed")
        figures = self.totals.setdefault(currency.upper(), Totals())
        figures.entries += 1
        figures.balance += amount
        figures.volume += abs(amount)

    def finish(self) -> ChainResult:
        header = self.header
        if (header.head_sequence, header.head_hash) != (self.count, self.previous):
            raise ChainBroken(self.count + 1, None,
                              f"the entries end at {self.count} ({self.previous}), but the"
                              f" header announces {header.head_sequence}"
                              f" ({header.head_hash}): entries were removed or added")
        return ChainResult(self.count, self.previous, self.tree.root(), self.redacted,
                           self.unsupported, self.snapshot)
