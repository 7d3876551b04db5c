"""Offline proofs of inclusion in the c2sp.org/tlog-proof@v1 text format.

A proof file holds the entry's index, its inclusion path, and the signed checkpoint
it leads to; the ``extra`` line carries the leaf data (the entry's ``entry_hash``)
so that the file alone shows which entry it is about::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry_hash text>
    index <leaf index>
    <base64 hash, one per line, the leaf's sibling first>

    <the signed checkpoint>
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from amply_verify import merkle
from amply_verify.checkpoint import CheckpointError, TreeCheckpoint, open_checkpoint
from amply_verify.note import Verifier

HEADER = "c2sp.org/tlog-proof@v1"


class ProofFileError(ValueError):
    """A proof file that is malformed or does not verify."""


@dataclass(frozen=True)
class ProofFile:
    index: int
    path: list[bytes]
    checkpoint: str  # the signed note, verbatim
    extra: bytes | None = None

    @property
    def entry_hash(self) -> str | None:
        return self.extra.decode("ascii", "replace") if self.extra is not None else None


def format_proof(index: int, path: list[bytes], checkpoint: str, extra: bytes | None) -> str:
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines.extend(base64.b64encode(value).decode() for value in path)
    return "\n".join(lines) + "\n\n" + checkpoint


def parse_proof(text: str) -> ProofFile:
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise ProofFileError("a proof has its hashes, a blank line, then the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ProofFileError(f"not a tlog proof: the first line must be {HEADER}")
    position, extra = 1, None
    try:
        if len(lines) > 1 and lines[1].startswith("extra "):
            extra = base64.b64decode(lines[1][6:], validate=True)
            position = 2
        if len(lines) <= position or not lines[position].startswith("index "):
            raise ProofFileError("the proof has no index line")
        index_text = lines[position][6:]
        if not index_text.isdigit() or (index_text != "0" and index_text.startswith("0")):
            raise ProofFileError(f"the index {index_text!r} is not a decimal number")
        path = [base64.b64decode(line, validate=True) for line in lines[position + 1:]]
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, ProofFileError):
            raise
        raise ProofFileError(f"the proof has a line that is not base64: {exc}") from exc
    if any(len(value) != merkle.HASH_SIZE for value in path):
        raise ProofFileError("a proof hash is not 32 bytes")
    return ProofFile(int(index_text), path, checkpoint, extra)


def verify_proof(proof: ProofFile, leaf_data: bytes, verifier: Verifier) -> TreeCheckpoint:
    """Check the checkpoint's signature and the path from ``leaf_data`` to its root."""
    try:
        tree = open_checkpoint(proof.checkpoint, verifier)
    except CheckpointError as exc:
        raise ProofFileError(str(exc)) from exc
    try:
        merkle.verify_inclusion(proof.index, tree.size, merkle.leaf_hash(leaf_data), proof.path,
                                tree.root)
    except merkle.ProofError as exc:
        raise ProofFileError(f"the inclusion proof does not verify: {exc}") from exc
    return tree
