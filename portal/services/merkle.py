"""Roots and proofs of the organisations' Merkle trees, from the stored nodes.

The tree math (RFC 6962) lives in ``amply_verify.merkle``, shared with the offline
verifier; this module only fetches the subtree hashes a root or proof needs: inner
nodes from ``merkle_nodes``, leaves from the entries' hashes. A root or a proof for
any tree size up to the head costs one query of at most about 2·log2(n) rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from amply_verify import merkle
from portal.extensions import db
from portal.models import LedgerEntry, LedgerHead
from portal.services.errors import DomainError, NotFound

Node = tuple[int, int]  # (level, position)


@dataclass(frozen=True)
class _Leaf:
    sequence: int
    entry_hash: str


class TreeSizeError(DomainError):
    """A tree size or leaf the ledger does not have (yet)."""


class ProofEntryNotFound(NotFound):
    """No such entry in this organisation's ledger."""


@dataclass(frozen=True)
class TreeHead:
    organisation_id: str
    size: int
    root: bytes


@dataclass(frozen=True)
class InclusionProof:
    organisation_id: str
    entry_id: str
    sequence: int
    entry_hash: str
    tree_size: int
    root: bytes
    path: list[bytes]

    @property
    def leaf_index(self) -> int:
        return self.sequence - 1

    @property
    def leaf_hash(self) -> bytes:
        return merkle.entry_leaf_hash(self.entry_hash)


@dataclass(frozen=True)
class ConsistencyProof:
    organisation_id: str
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    path: list[bytes]


_NODES_SQL = sa.text(
    """
    SELECT w.level, w.position, n.hash
      FROM unnest(CAST(:levels AS smallint[]), CAST(:positions AS bigint[])) AS w(level, position)
     CROSS JOIN LATERAL (
           SELECT m.hash FROM merkle_nodes m
            WHERE m.organisation_id = :org AND m.level = w.level AND m.position = w.position
           ) AS n
    UNION ALL
    SELECT 0, e.sequence - 1, sha256('\\x00'::bytea || convert_to(e.entry_hash, 'UTF8'))
      FROM ledger_entries e
     WHERE e.organisation_id = :org AND e.sequence = ANY (CAST(:sequences AS bigint[]))
    """
)


def _fetch(organisation_id: str, nodes: Iterable[Node]) -> dict[Node, bytes]:
    wanted = set(nodes)
    if not wanted:
        return {}
    inner = [(level, position) for level, position in wanted if level > 0]
    rows = db.session.execute(_NODES_SQL, {
        "org": organisation_id,
        "levels": [level for level, _ in inner],
        "positions": [position for _, position in inner],
        "sequences": [position + 1 for level, position in wanted if level == 0],
    })
    found = {(level, position): bytes(value) for level, position, value in rows}
    if len(found) != len(wanted):
        missing = sorted(wanted - found.keys())
        raise TreeSizeError(f"the Merkle tree of {organisation_id} lacks nodes {missing[:3]}")
    return found


def _hashes(organisation_id: str, ranges: Sequence[merkle.Range]) -> list[bytes]:
    """The hashes of the given leaf ranges, fetched in one query."""
    parts = [merkle.perfect_subtrees(start, end) if start < end else [] for start, end in ranges]
    found = _fetch(organisation_id, (node for nodes in parts for node in nodes))
    return [merkle.combine([found[node] for node in nodes]) if nodes else merkle.EMPTY_ROOT
            for nodes in parts]


def _head_size(organisation_id: str) -> int:
    size = db.session.scalar(
        sa.select(LedgerHead.sequence).where(LedgerHead.organisation_id == organisation_id))
    if size is None:
        raise TreeSizeError(f"no ledger for organisation {organisation_id}")
    return size


def _check_size(organisation_id: str, size: int) -> int:
    head_size = _head_size(organisation_id)
    if not 0 <= size <= head_size:
        raise TreeSizeError(
            f"tree size {size} is not available: the ledger has {head_size} entries"
        )
    return head_size


def root(organisation_id: str, size: int) -> bytes:
    """The root of the tree of the first ``size`` entries."""
    _check_size(organisation_id, size)
    return _hashes(organisation_id, [(0, size)])[0]


def tree_head(organisation_id: str) -> TreeHead:
    size = _head_size(organisation_id)
    return TreeHead(organisation_id, size, _hashes(organisation_id, [(0, size)])[0])


def leaf_of(organisation_id: str, entry_id: str) -> tuple[int, str]:
    """(sequence, entry_hash) of an entry of this ledger."""
    entry = db.session.execute(
        sa.select(LedgerEntry.sequence, LedgerEntry.entry_hash).where(
            LedgerEntry.organisation_id == organisation_id, LedgerEntry.entry_id == entry_id)
    ).one_or_none()
    if entry is None:
        raise ProofEntryNotFound(f"no entry {entry_id} in this ledger")
    return int(entry.sequence), str(entry.entry_hash)


def inclusion_proof(
    organisation_id: str,
    entry_id: str,
    tree_size: int | None = None,
    *,
    leaf: tuple[int, str] | None = None,
    signed_size: bool = False,
) -> InclusionProof:
    """The proof that ``entry_id`` is in the tree of ``tree_size`` entries (default: all).

    ``leaf`` spares the lookup of an entry already read; ``signed_size`` says the size
    comes from a checkpoint, which never exceeds the head, so it is not checked again.
    """
    sequence, entry_hash = leaf or leaf_of(organisation_id, entry_id)
    if signed_size and tree_size is not None:
        size = tree_size
    else:
        head_size = _check_size(organisation_id, tree_size if tree_size is not None else 0)
        size = head_size if tree_size is None else tree_size
    entry = _Leaf(sequence, entry_hash)
    if entry.sequence > size:
        raise TreeSizeError(
            f"entry {entry_id} is entry {entry.sequence}: it is not in a tree of {size} entries"
        )
    ranges = merkle.inclusion_ranges(entry.sequence - 1, size)
    hashes = _hashes(organisation_id, [*ranges, (0, size)])
    return InclusionProof(organisation_id, entry_id, entry.sequence, entry.entry_hash, size,
                          hashes[-1], hashes[:-1])


def consistency_proof(organisation_id: str, first: int, second: int) -> ConsistencyProof:
    """The proof that the tree of ``second`` entries extends the tree of ``first``."""
    if first > second:
        raise TreeSizeError(f"the first tree size ({first}) is larger than the second ({second})")
    _check_size(organisation_id, second)
    ranges = merkle.consistency_ranges(first, second)
    hashes = _hashes(organisation_id, [*ranges, (0, first), (0, second)])
    return ConsistencyProof(organisation_id, first, second, hashes[-2], hashes[-1], hashes[:-2])


_LEVEL_ONE_CHECK = sa.text(
    """
    SELECT c.position
      FROM (SELECT l.sequence, l.sequence / 2 - 1 AS position,
                   sha256('\\x01'::bytea || lag(l.leaf) OVER (ORDER BY l.sequence) || l.leaf)
                       AS expected
              FROM (SELECT e.sequence,
                           sha256('\\x00'::bytea || convert_to(e.entry_hash, 'UTF8')) AS leaf
                      FROM ledger_entries e
                     WHERE e.organisation_id = :org AND e.sequence <= :size) AS l) AS c
      LEFT JOIN merkle_nodes n
        ON n.organisation_id = :org AND n.level = 1 AND n.position = c.position
     WHERE c.sequence % 2 = 0 AND n.hash IS DISTINCT FROM c.expected
     ORDER BY c.position
     LIMIT 1
    """
)

# Both joins compare plain columns: under row-level security a qual with a function
# that is not leakproof (such as a division) cannot use the index, and the join turns
# quadratic.
_UPPER_LEVEL_CHECK = sa.text(
    """
    SELECT c.parent
      FROM (SELECT m.position, m.position / 2 AS parent,
                   sha256('\\x01'::bytea || lag(m.hash) OVER (ORDER BY m.position) || m.hash)
                       AS expected
              FROM merkle_nodes m
             WHERE m.organisation_id = :org AND m.level = :below
               AND m.position < :count_below) AS c
      LEFT JOIN merkle_nodes n
        ON n.organisation_id = :org AND n.level = :above AND n.position = c.parent
     WHERE c.position % 2 = 1 AND n.hash IS DISTINCT FROM c.expected
     ORDER BY c.position
     LIMIT 1
    """
)


def check_stored_tree(organisation_id: str, size: int) -> str | None:
    """Compare every stored node of the tree of the first ``size`` entries with the node
    its children make, level by level; the first difference, or None.

    Level 1 is rebuilt from the entries' hashes, each level above from the stored level
    below it (already checked), so a changed, missing or swapped node anywhere is found.
    It runs in the database, in a few passes over the ordered nodes.
    """
    level, count = 1, size // 2
    while count:
        if level == 1:
            found = db.session.execute(_LEVEL_ONE_CHECK,
                                       {"org": organisation_id, "size": size}).scalar()
        else:
            found = db.session.execute(_UPPER_LEVEL_CHECK, {
                "org": organisation_id, "below": level - 1, "above": level,
                "count_below": count * 2,
            }).scalar()
        if found is not None:
            first, last = int(found) << level, ((int(found) + 1) << level) - 1
            return (f"the stored Merkle tree node over entries {first + 1} to {last + 1}"
                    " differs from the one its children make, or is missing: its nodes"
                    " were changed")
        level, count = level + 1, count // 2
    return None


def compact_range(organisation_id: str, size: int) -> list[bytes]:
    """The hashes of the perfect subtrees of the first ``size`` leaves, largest first:
    enough to compute the root and to continue the tree (``TreeBuilder.resume``)."""
    if size == 0:
        return []
    nodes = merkle.perfect_subtrees(0, size)
    found = _fetch(organisation_id, nodes)
    return [found[node] for node in nodes]
