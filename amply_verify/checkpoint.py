"""Checkpoints: an organisation's signed tree head, and the platform's signed document.

Formats (docs/ledger-spec.md, "Checkpoints"):

- An **organisation checkpoint** is a c2sp.org/tlog-checkpoint signed note: the
  origin ``<key name>/ledgers/<organisation id>``, the tree size, the base64 root.
- The **platform checkpoint** is a JSON document naming every public organisation's
  checkpoint, with totals, signed as a whole: the signature covers the canonical
  JSON of the document without its ``signature`` member, plus a newline, so that
  text and signature also form a signed note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amply_verify.hashing import canonical_json
from amply_verify.note import NoteError, Verifier, open_note, split_note

CHECKPOINT_ID = re.compile(r"chk_\d{4}_\d{2}_\d{2}")
DOCUMENT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is malformed, unsigned, or inconsistent with itself."""


@dataclass(frozen=True)
class TreeCheckpoint:
    origin: str
    size: int
    root: bytes

    @property
    def root_base64(self) -> str:
        return base64.b64encode(self.root).decode()


def origin_for(key_name: str, organisation_id: str) -> str:
    return f"{key_name}/ledgers/{organisation_id}"


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The note text of a tree head: origin, size, base64 root, one per line."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint_text(text: str) -> TreeCheckpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
        raise CheckpointError("a checkpoint has an origin, a tree size and a root, one per line")
    origin, size_text, root_text = lines[:3]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError(f"the tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError("the root hash is not valid base64") from exc
    if len(root) != 32:
        raise CheckpointError("the root hash is not 32 bytes")
    return TreeCheckpoint(origin, int(size_text), root)


def open_checkpoint(note: str, verifier: Verifier) -> TreeCheckpoint:
    """Check a signed organisation checkpoint and read it."""
    try:
        text = open_note(note, verifier)
    except NoteError as exc:
        raise CheckpointError(f"the checkpoint's signature: {exc}") from exc
    return parse_checkpoint_text(text)


def read_unverified(note: str) -> TreeCheckpoint:
    """Read a checkpoint without checking its signature (for display only)."""
    try:
        text, _ = split_note(note)
    except NoteError as exc:
        raise CheckpointError(str(exc)) from exc
    return parse_checkpoint_text(text)


def cumulative_hash(summaries: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 over ``"<organisation id> <tree size> <base64 root>\\n"`` per organisation,
    in the document's order (by organisation id)."""
    digest = hashlib.sha256()
    for summary in summaries:
        line = f"{summary['organisation_id']} {summary['tree_size']} {summary['root_hash']}\n"
        digest.update(line.encode())
    return "sha256:" + digest.hexdigest()


def signed_message(document: Mapping[str, Any]) -> bytes:
    """What the platform signature covers: the document without ``signature``."""
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    return (canonical_json(unsigned) + "\n").encode()


def load_document(data: bytes | str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"the checkpoint document is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CheckpointError("the checkpoint document is not a JSON object")
    return document


def _field(document: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"the checkpoint's {name!r} is missing or has the wrong type")
    return value


def _verify_signature(document: Mapping[str, Any], verifier: Verifier) -> None:
    if document.get("key_name") != verifier.name or document.get("key_id") != f"{verifier.id:08x}":
        raise CheckpointError(
            f"the checkpoint was signed by {document.get('key_name')!r}"
            f" ({document.get('key_id')}), not by the key given"
            f" ({verifier.name}, {verifier.id:08x})")
    signature = _field(document, "signature", str)
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError("the signature is not valid base64") from exc
    if raw[:4] != verifier.id.to_bytes(4, "big") or not verifier.verify(
            signed_message(document), raw[4:]):
        raise CheckpointError("the platform signature does not verify: the document was changed"
                              " or signed by another key")


def _verify_summaries(document: Mapping[str, Any], verifier: Verifier) -> None:
    summaries = _field(document, "organisation_summaries", list)
    ids = [s["organisation_id"] for s in summaries
           if isinstance(s, dict) and isinstance(s.get("organisation_id"), str)]
    if len(ids) != len(summaries) or ids != sorted(ids) or len(set(ids)) != len(ids):
        raise CheckpointError("the organisation summaries are not one per organisation, by id")
    volume: dict[str, int] = {}
    for summary in summaries:
        tree = open_checkpoint(_field(summary, "checkpoint", str), verifier)
        if tree.origin != origin_for(verifier.name, summary["organisation_id"]):
            raise CheckpointError(f"the checkpoint of {summary['organisation_id']} names"
                                  f" another log: {tree.origin}")
        if (tree.size, tree.root_base64) != (summary.get("tree_size"), summary.get("root_hash")):
            raise CheckpointError(f"the summary of {summary['organisation_id']} differs from"
                                  " its signed checkpoint")
        for currency, figures in _field(summary, "totals", dict).items():
            volume[currency] = volume.get(currency, 0) + int(figures["volume"])
    if document.get("cumulative_hash") != cumulative_hash(summaries):
        raise CheckpointError("the cumulative hash does not match the organisations' roots")
    if document.get("entry_count") != sum(s["tree_size"] for s in summaries):
        raise CheckpointError("the entry count is not the sum of the tree sizes")
    if document.get("organisation_count") != len(summaries):
        raise CheckpointError("the organisation count does not match the summaries")
    if document.get("total_volume") != volume:
        raise CheckpointError("the total volume is not the sum of the organisations' volumes")


def verify_document(document: Mapping[str, Any], verifier: Verifier) -> None:
    """Check a platform checkpoint: signature, every organisation's note, and its sums.

    Raises ``CheckpointError`` naming the first problem.
    """
    checkpoint_id = _field(document, "checkpoint_id", str)
    if not CHECKPOINT_ID.fullmatch(checkpoint_id):
        raise CheckpointError(f"{checkpoint_id!r} is not a checkpoint id (chk_YYYY_MM_DD)")
    if document.get("version") != DOCUMENT_VERSION:
        raise CheckpointError(f"unsupported checkpoint version {document.get('version')!r}")
    if document.get("hash_algorithm") != "sha256":
        raise CheckpointError(
            f"hash algorithm {document.get('hash_algorithm')!r} is not supported (sha256 only)")
    _verify_signature(document, verifier)
    try:
        _verify_summaries(document, verifier)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"the organisation summaries are malformed: {exc}") from exc


def summary_for(document: Mapping[str, Any], organisation_id: str) -> dict[str, Any]:
    for summary in document.get("organisation_summaries", []):
        if isinstance(summary, dict) and summary.get("organisation_id") == organisation_id:
            return summary
    raise CheckpointError(
        f"checkpoint {document.get('checkpoint_id')} has no line for {organisation_id}")
