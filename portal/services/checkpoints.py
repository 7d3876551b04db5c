"""Signed checkpoints: once a day, every public ledger's tree head, signed and published.

A checkpoint is made at most once per UTC day (``chk_YYYY_MM_DD``) and covers each
active organisation's ledger as it stands when it is made. Before signing, each
organisation's new tree head is checked against its previous signed one: the root
is rebuilt from the previous compact range and the new entries (whose hashes and
links are recomputed), and the consistency proof from the stored tree must verify
between the two signed roots. A ledger that is not an extension of what was signed
before is refused, and nothing is written.

Formats: ``amply_verify.checkpoint`` and docs/ledger-spec.md ("Checkpoints").
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from amply_verify import checkpoint as formats
from amply_verify import merkle
from amply_verify.note import NoteError, Signer, Verifier, sign
from amply_verify.tlog_proof import format_proof
from portal.extensions import db
from portal.models import (
    Checkpoint,
    CheckpointOrganisation,
    LedgerHead,
    Organisation,
)
from portal.services import ledger, tenancy
from portal.services import merkle as trees
from portal.services.errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)

KEY_FILE_NAME = "checkpoint-signing.key"
#: Serialises checkpoint makers across processes (any constant unique to this use).
_LOCK_KEY = 0x616D706C79_0001


class SigningKeyMissing(DomainError):
    """No signing key is configured yet."""


class SigningKeyExists(Conflict):
    """A signing key is already there; replacing it needs an explicit choice."""


class CheckpointRefused(Conflict):
    """The ledgers as they stand cannot be signed: one is inconsistent with what was."""


class CheckpointNotFound(NotFound):
    """No checkpoint with that id."""


@dataclass(frozen=True)
class OrganisationLine:
    checkpoint_id: str
    organisation_id: str
    slug: str
    name: str
    tree_size: int
    root_hash: str  # base64, as in the note
    head_hash: str | None
    totals: dict[str, dict[str, int]]
    note: str


@dataclass(frozen=True)
class CheckpointSummary:
    id: str
    period: date
    timestamp: str
    previous_id: str | None
    entry_count: int
    organisation_count: int
    cumulative_hash: str
    key_name: str
    key_id: str


@dataclass(frozen=True)
class CreatedCheckpoint:
    checkpoint: CheckpointSummary
    created: bool


# --------------------------------------------------------------------------- keys


def key_file() -> Path:
    configured = current_app.config.get("CHECKPOINT_KEY_FILE") or ""
    return Path(configured) if configured else Path(current_app.instance_path) / KEY_FILE_NAME


def default_key_name() -> str:
    """The host and path of the public address: ``amply.example`` or ``example.org/amply``."""
    configured = current_app.config.get("CHECKPOINT_KEY_NAME") or ""
    if configured:
        return str(configured)
    parts = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    return (parts.netloc + parts.path.rstrip("/")) or "amply"


def generate_key(name: str | None = None, *, replace: bool = False) -> Signer:
    """Make and store a new signing key; refuse to replace one unless told to."""
    path = key_file()
    if path.exists() and not replace:
        raise SigningKeyExists(
            f"a signing key already exists ({path}); checkpoints signed with it stay"
            " verifiable only with its public key. Pass --force to replace it anyway.")
    try:
        signer = Signer.generate(name or default_key_name())
    except NoteError as exc:
        raise DomainError(str(exc), field="name") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"{signer}\n")
    temporary.replace(path)
    return signer


def signer() -> Signer:
    path = key_file()
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise SigningKeyMissing(
            "no checkpoint signing key yet: run `flask checkpoints keygen` first") from exc
    try:
        return Signer.parse(text)
    except NoteError as exc:
        raise SigningKeyMissing(f"the signing key in {path} is unreadable: {exc}") from exc


def verifier() -> Verifier | None:
    """The public key checkpoints are signed with, or None before ``keygen``."""
    try:
        return signer().verifier
    except SigningKeyMissing:
        return None


def published_keys() -> list[str]:
    """Every verifier key that has signed a published checkpoint, newest first, and the
    current key (which may not have signed one yet)."""
    keys: list[str] = []
    current = verifier()
    if current is not None:
        keys.append(str(current))
    rows = db.session.execute(
        sa.select(Checkpoint.document["verifier_key"].astext)
        .order_by(Checkpoint.period.desc())
    ).scalars()
    for key in rows:
        if key and key not in keys:
            keys.append(key)
    return keys


# ------------------------------------------------------------------- making one


def checkpoint_id_for(period: date) -> str:
    return f"chk_{period:%Y_%m_%d}"


def _previous_line(organisation_id: str) -> CheckpointOrganisation | None:
    return db.session.scalars(
        sa.select(CheckpointOrganisation)
        .join(Checkpoint, Checkpoint.id == CheckpointOrganisation.checkpoint_id)
        .where(CheckpointOrganisation.organisation_id == organisation_id)
        .order_by(Checkpoint.period.desc())
        .limit(1)
    ).first()


def _refuse(organisation: Organisation, reason: str) -> CheckpointRefused:
    log.error("checkpoint refused for %s: %s", organisation.id, reason)
    return CheckpointRefused(
        f"{organisation.name} ({organisation.id}) cannot be signed: {reason}. Nothing was"
        " signed; verify the ledger with `flask ledger verify` and investigate.")


def _walk_new_entries(
    organisation: Organisation,
    previous: CheckpointOrganisation | None,
    size: int,
    builder: merkle.TreeBuilder,
    progress: Callable[[int], None] | None,
) -> tuple[str | None, dict[str, dict[str, int]]]:
    """Feed the entries after the previous head to ``builder``, recomputing each hash and
    link; return the new head hash and totals."""
    start = previous.tree_size if previous else 0
    totals = {currency: dict(figures) for currency, figures in
              (previous.totals if previous else {}).items()}
    head_hash = previous.head_hash if previous else None
    expected = start + 1
    for entry in ledger.iter_entries(organisation.id, after_sequence=start, up_to_sequence=size):
        if entry.sequence != expected:
            raise _refuse(organisation, f"entry {expected} is missing")
        if entry.prev_entry_hash != head_hash:
            raise _refuse(organisation, f"entry {entry.sequence} does not link to the entry"
                                        " before it")
        if entry.computed_hash() != entry.entry_hash:
            raise _refuse(organisation, f"entry {entry.sequence}'s hash does not match its"
                                        " content")
        figures = totals.setdefault(entry.currency, {"entries": 0, "balance": 0, "volume": 0})
        figures["entries"] += 1
        figures["balance"] += entry.amount
        figures["volume"] += abs(entry.amount)
        builder.add_entry_hash(entry.entry_hash)
        head_hash = entry.entry_hash
        expected += 1
        if progress is not None:
            progress(1)
    if expected != size + 1:
        raise _refuse(organisation, f"its entries end at {expected - 1}, not at its head {size}")
    return head_hash, dict(sorted(totals.items()))


def _extend(
    organisation: Organisation,
    previous: CheckpointOrganisation | None,
    size: int,
    progress: Callable[[int], None] | None,
) -> tuple[bytes, str | None, dict[str, dict[str, int]]]:
    """Root, head hash and totals at ``size``, rebuilt from the previous signed head and
    the entries after it, and proven consistent with the previous signed root."""
    start = previous.tree_size if previous else 0
    if size < start:
        raise _refuse(organisation, f"its ledger has {size} entries, fewer than the"
                                    f" {start} signed before")
    builder = merkle.TreeBuilder()
    if previous is not None:
        builder = merkle.TreeBuilder.resume(start, trees.compact_range(organisation.id, start))
        if builder.root() != previous.root_hash:
            raise _refuse(organisation, f"the tree of its first {start} entries no longer has"
                                        " the root signed before")
    head_hash, totals = _walk_new_entries(organisation, previous, size, builder, progress)
    root = builder.root()
    if previous is not None:
        proof = trees.consistency_proof(organisation.id, start, size)
        try:
            merkle.verify_consistency(start, size, previous.root_hash, root, proof.path)
        except merkle.ProofError as exc:
            raise _refuse(organisation, f"its tree is not consistent with checkpoint"
                                        f" {previous.checkpoint_id}: {exc}") from exc
    elif trees.root(organisation.id, size) != root:
        raise _refuse(organisation, "its stored Merkle tree differs from its entries")
    return root, head_hash, totals


def create_checkpoint(
    now: datetime | None = None, *, progress: Callable[[int], None] | None = None
) -> CreatedCheckpoint:
    """Make and store the checkpoint of the day ``now`` falls on, unless it exists.

    Idempotent: a second call on the same day returns the day's checkpoint. Raises
    ``SigningKeyMissing`` without a key and ``CheckpointRefused`` (nothing written)
    when a ledger is inconsistent with its previous checkpoint.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    period = moment.date()
    checkpoint_id = checkpoint_id_for(period)
    key = signer()
    tenancy.platform()
    db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    existing = db.session.get(Checkpoint, checkpoint_id)
    if existing is not None:
        db.session.commit()
        return CreatedCheckpoint(_summary(existing), created=False)
    latest = db.session.scalars(
        sa.select(Checkpoint).order_by(Checkpoint.period.desc()).limit(1)).first()
    if latest is not None and latest.period > period:
        db.session.rollback()
        raise CheckpointRefused(f"checkpoint {latest.id} is later than {checkpoint_id}:"
                                " checkpoints are made in date order")

    organisations = db.session.execute(
        sa.select(Organisation, LedgerHead.sequence)
        .join(LedgerHead, LedgerHead.organisation_id == Organisation.id)
        .where(Organisation.status == "active")
        .order_by(Organisation.id)
    ).all()
    verifier_key = key.verifier
    lines: list[CheckpointOrganisation] = []
    summaries: list[dict[str, Any]] = []
    try:
        for organisation, size in organisations:
            previous = _previous_line(organisation.id)
            root, head_hash, totals = _extend(organisation, previous, size, progress)
            origin = formats.origin_for(key.name, organisation.id)
            note = sign(formats.checkpoint_text(origin, size, root), key)
            root_text = base64.b64encode(root).decode()
            lines.append(CheckpointOrganisation(
                checkpoint_id=checkpoint_id, organisation_id=organisation.id, tree_size=size,
                root_hash=root, head_hash=head_hash, totals=totals, note=note))
            summaries.append({
                "organisation_id": organisation.id, "slug": organisation.slug,
                "name": organisation.name, "tree_size": size, "root_hash": root_text,
                "head_hash": head_hash, "totals": totals, "checkpoint": note,
            })
    except CheckpointRefused:
        db.session.rollback()
        raise

    volume: dict[str, int] = {}
    for summary in summaries:
        for currency, figures in summary["totals"].items():
            volume[currency] = volume.get(currency, 0) + figures["volume"]
    document: dict[str, Any] = {
        "checkpoint_id": checkpoint_id,
        "version": formats.DOCUMENT_VERSION,
        "period": period.isoformat(),
        "timestamp": ledger.utc_timestamp(moment),
        "portal": {"name": current_app.config["PORTAL_NAME"],
                   "base_url": current_app.config["PUBLIC_BASE_URL"]},
        "hash_algorithm": "sha256",
        "merkle_tree": "RFC 6962 over each ledger's entry_hash strings, in sequence order",
        "previous_checkpoint_id": latest.id if latest else None,
        "cumulative_hash": formats.cumulative_hash(summaries),
        "entry_count": sum(s["tree_size"] for s in summaries),
        "organisation_count": len(summaries),
        "total_volume": dict(sorted(volume.items())),
        "organisation_summaries": summaries,
        "key_name": key.name,
        "key_id": f"{verifier_key.id:08x}",
        "verifier_key": str(verifier_key),
    }
    document["signature"] = key.signature(formats.signed_message(document))
    record = Checkpoint(
        id=checkpoint_id, period=period, timestamp=document["timestamp"],
        previous_id=document["previous_checkpoint_id"], entry_count=document["entry_count"],
        organisation_count=len(summaries), cumulative_hash=document["cumulative_hash"],
        key_name=key.name, key_id=document["key_id"], document=document,
    )
    db.session.add(record)
    db.session.flush()
    db.session.add_all(lines)
    db.session.commit()
    log.info("checkpoint %s signed: %d organisations, %d entries", checkpoint_id,
             len(summaries), document["entry_count"])
    return CreatedCheckpoint(_summary(record), created=True)


# ------------------------------------------------------------------- reading them


def _summary(record: Checkpoint) -> CheckpointSummary:
    return CheckpointSummary(record.id, record.period, record.timestamp, record.previous_id,
                             record.entry_count, record.organisation_count,
                             record.cumulative_hash, record.key_name, record.key_id)


def list_checkpoints(*, limit: int = 50, before: str | None = None) -> list[CheckpointSummary]:
    query = sa.select(Checkpoint).order_by(Checkpoint.period.desc()).limit(limit)
    if before:
        query = query.where(Checkpoint.id < before)
    return [_summary(record) for record in db.session.scalars(query)]


def latest_checkpoint() -> CheckpointSummary | None:
    found = list_checkpoints(limit=1)
    return found[0] if found else None


def get_document(checkpoint_id: str) -> dict[str, Any]:
    """The signed document exactly as published (its key order aside)."""
    record = db.session.get(Checkpoint, checkpoint_id) if formats.CHECKPOINT_ID.fullmatch(
        checkpoint_id) else None
    if record is None:
        raise CheckpointNotFound(f"no checkpoint {checkpoint_id!r}")
    return dict(record.document)


def get_checkpoint(checkpoint_id: str) -> CheckpointSummary:
    record = db.session.get(Checkpoint, checkpoint_id) if formats.CHECKPOINT_ID.fullmatch(
        checkpoint_id) else None
    if record is None:
        raise CheckpointNotFound(f"no checkpoint {checkpoint_id!r}")
    return _summary(record)


def _line(row: CheckpointOrganisation, organisation: Organisation) -> OrganisationLine:
    return OrganisationLine(
        row.checkpoint_id, row.organisation_id, organisation.slug, organisation.name,
        row.tree_size, base64.b64encode(row.root_hash).decode(), row.head_hash,
        dict(row.totals), row.note)


def organisation_lines(checkpoint_id: str) -> list[OrganisationLine]:
    rows = db.session.execute(
        sa.select(CheckpointOrganisation, Organisation)
        .join(Organisation, Organisation.id == CheckpointOrganisation.organisation_id)
        .where(CheckpointOrganisation.checkpoint_id == checkpoint_id)
        .order_by(Organisation.name)
    ).all()
    return [_line(row, organisation) for row, organisation in rows]


def line_for(checkpoint_id: str, organisation_id: str) -> OrganisationLine:
    found = db.session.execute(
        sa.select(CheckpointOrganisation, Organisation)
        .join(Organisation, Organisation.id == CheckpointOrganisation.organisation_id)
        .where(CheckpointOrganisation.checkpoint_id == checkpoint_id,
               CheckpointOrganisation.organisation_id == organisation_id)
    ).first()
    if found is None:
        raise CheckpointNotFound(f"checkpoint {checkpoint_id} has no line for {organisation_id}")
    return _line(*found)


def latest_line(organisation_id: str, *, covering: int = 0) -> OrganisationLine | None:
    """The organisation's line in the newest checkpoint, if it covers entry ``covering``."""
    found = db.session.execute(
        sa.select(CheckpointOrganisation, Organisation)
        .join(Organisation, Organisation.id == CheckpointOrganisation.organisation_id)
        .join(Checkpoint, Checkpoint.id == CheckpointOrganisation.checkpoint_id)
        .where(CheckpointOrganisation.organisation_id == organisation_id)
        .order_by(Checkpoint.period.desc())
        .limit(1)
    ).first()
    if found is None or found[0].tree_size < covering:
        return None
    return _line(*found)


# ------------------------------------------------------------------- proving entries


@dataclass(frozen=True)
class ProvenEntry:
    """An entry's inclusion proof, against a signed checkpoint when one covers it."""

    proof: trees.InclusionProof
    line: OrganisationLine | None

    def tlog_proof(self) -> str | None:
        """The proof as a c2sp.org/tlog-proof file, or None without a checkpoint."""
        if self.line is None:
            return None
        return format_proof(self.proof.leaf_index, self.proof.path, self.line.note,
                            self.proof.entry_hash.encode("ascii"))


def _line_with_size(organisation_id: str, size: int) -> OrganisationLine | None:
    found = db.session.execute(
        sa.select(CheckpointOrganisation, Organisation)
        .join(Organisation, Organisation.id == CheckpointOrganisation.organisation_id)
        .join(Checkpoint, Checkpoint.id == CheckpointOrganisation.checkpoint_id)
        .where(CheckpointOrganisation.organisation_id == organisation_id,
               CheckpointOrganisation.tree_size == size)
        .order_by(Checkpoint.period.desc())
        .limit(1)
    ).first()
    return _line(*found) if found else None


def prove_entry(
    organisation_id: str, entry_id: str, tree_size: int | None = None
) -> ProvenEntry:
    """Prove ``entry_id`` against the newest checkpoint that covers it (or the given tree
    size); without such a checkpoint, against the ledger's current head."""
    if tree_size is None:
        leaf = trees.leaf_of(organisation_id, entry_id)
        line = latest_line(organisation_id, covering=leaf[0])
        proof = trees.inclusion_proof(organisation_id, entry_id,
                                      line.tree_size if line else None, leaf=leaf,
                                      signed_size=line is not None)
        return ProvenEntry(proof, line)
    proof = trees.inclusion_proof(organisation_id, entry_id, tree_size)
    return ProvenEntry(proof, _line_with_size(organisation_id, tree_size))


def entries_to_sign() -> int:
    """How many entries the next checkpoint will walk: those appended since each active
    ledger's last signed head (for progress bars)."""
    last_signed = (
        sa.select(CheckpointOrganisation.organisation_id,
                  sa.func.max(CheckpointOrganisation.tree_size).label("size"))
        .group_by(CheckpointOrganisation.organisation_id).subquery()
    )
    total = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(
            LedgerHead.sequence - sa.func.coalesce(last_signed.c.size, 0)), 0))
        .join(Organisation, Organisation.id == LedgerHead.organisation_id)
        .outerjoin(last_signed, last_signed.c.organisation_id == LedgerHead.organisation_id)
        .where(Organisation.status == "active")
    )
    return int(total or 0)
