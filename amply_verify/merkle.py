"""The Merkle tree over a ledger (RFC 6962, section 2.1; c2sp.org/merkle-tree).

One tree per organisation, over its entries in sequence order. The data of leaf
``i`` is the ASCII text of entry ``i + 1``'s ``entry_hash`` (``sha256:…``):

- leaf hash  ``SHA-256(0x00 || data)``
- node hash  ``SHA-256(0x01 || left || right)``
- the empty tree's root ``SHA-256("")``

This module computes roots (streaming, in constant memory), generates inclusion
and consistency proofs from any source of subtree hashes, and verifies proofs with
the algorithms of RFC 9162, section 2.1.3.2 and 2.1.4.2. Standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not verify, or its parameters are impossible."""


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def entry_leaf_hash(entry_hash: str) -> bytes:
    """The leaf hash of a ledger entry: its ``entry_hash`` text is the leaf data."""
    return _sha256(b"\x00" + entry_hash.encode("ascii")).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


class TreeBuilder:
    """The root of a growing tree in O(log n) memory: feed leaf hashes in order.

    It keeps the roots of the perfect subtrees the leaves so far form (at most one per
    power of two), as a transparency log's "compact range" does.
    """

    __slots__ = ("_on_node", "_stack", "size")

    def __init__(self, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        """``on_node(level, position, hash)`` is told every inner node as it completes."""
        self._stack: list[tuple[int, bytes]] = []  # (level, hash), the largest first
        self._on_node = on_node
        self.size = 0

    def append(self, leaf: bytes) -> None:
        level, value = 0, leaf
        stack = self._stack
        while stack and stack[-1][0] == level:
            value = node_hash(stack.pop()[1], value)
            level += 1
            if self._on_node is not None:
                self._on_node(level, self.size >> level, value)
        stack.append((level, value))
        self.size += 1

    @classmethod
    def resume(cls, size: int, subtrees: Sequence[bytes]) -> TreeBuilder:
        """Continue a tree of ``size`` leaves from the hashes of its perfect subtrees,
        largest first (``perfect_subtrees(0, size)``): its "compact range"."""
        levels = [level for level, _ in perfect_subtrees(0, size)] if size else []
        if len(levels) != len(subtrees):
            raise ProofError(f"a tree of {size} leaves has {len(levels)} perfect subtrees")
        builder = cls()
        builder._stack = list(zip(levels, subtrees, strict=True))
        builder.size = size
        return builder

    def add_entry_hash(self, entry_hash: str) -> None:
        self.append(entry_leaf_hash(entry_hash))

    def root(self) -> bytes:
        """The root of the tree of the leaves appended so far."""
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value


def root_from_leaves(leaves: Iterable[bytes]) -> bytes:
    builder = TreeBuilder()
    for leaf in leaves:
        builder.append(leaf)
    return builder.root()


def root_from_entry_hashes(entry_hashes: Iterable[str]) -> bytes:
    builder = TreeBuilder()
    for entry_hash in entry_hashes:
        builder.add_entry_hash(entry_hash)
    return builder.root()


# --- Proof generation --------------------------------------------------------------
#
# A proof is a list of subtree hashes MTH(D[start:end]). The functions below name the
# ranges a proof needs (RFC 6962's PATH and SUBPROOF); a caller turns ranges into hashes
# from whatever it has: a full list of leaves, or the stored nodes of a database.

Range = tuple[int, int]


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form the inclusion proof of leaf ``index`` in ``size``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()  # PATH lists the leaf's sibling first, the root's child last
    return ranges


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose hashes form the consistency proof from ``first`` to ``second``."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    ranges: list[Range] = []
    start, end, m, include_root = 0, second, first, True
    while True:
        n = end - start
        if m == n:
            if not include_root:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, include_root = start + k, m - k, False
    ranges.reverse()
    return ranges


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into perfect subtrees, as ``(level, index)``, left to right.

    A subtree at ``level`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``.
    The ranges roots and proofs need start at a multiple of the smallest power of two
    not below their size, so they split into the perfect subtrees of their size's binary
    digits, largest first: at most log2(n) of the subtrees a log keeps.
    """
    size = end - start
    if size <= 0 or start % (1 << (size - 1).bit_length()):
        raise ProofError(f"[{start}, {end}) is not a range of a Merkle proof")
    parts: list[tuple[int, int]] = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append((level, start >> level))
            start += 1 << level
    return parts


def combine(parts: Sequence[bytes]) -> bytes:
    """The hash of a range from its perfect subtrees' hashes, left to right.

    The left-balanced tree hashes the rightmost parts together first.
    """
    value = parts[-1]
    for left in reversed(parts[:-1]):
        value = node_hash(left, value)
    return value


def range_hash(start: int, end: int, subtree: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[start:end]) from ``subtree(level, index)``; the empty range has the empty root."""
    if start == end:
        return EMPTY_ROOT
    return combine([subtree(level, index) for level, index in perfect_subtrees(start, end)])


class LeafList:
    """Subtree hashes computed from a full list of leaf hashes (tests, small ledgers)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves

    def subtree(self, level: int, index: int) -> bytes:
        start = index << level
        return root_from_leaves(self.leaves[start:start + (1 << level)])

    def root(self, size: int | None = None) -> bytes:
        return range_hash(0, len(self.leaves) if size is None else size, self.subtree)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return [range_hash(a, b, self.subtree) for a, b in inclusion_ranges(index, size)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return [range_hash(a, b, self.subtree) for a, b in consistency_ranges(first, second)]


# --- Proof verification (RFC 9162) -------------------------------------------------


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root the proof leads to from ``leaf`` (RFC 9162, 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hashes(proof)
    fn, sn, value = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the inclusion proof has too many hashes")
        if fn & 1 or fn == sn:
            value = node_hash(sibling, value)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            value = node_hash(value, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof has too few hashes")
    return value


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``leaf`` at ``index`` under ``root``."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof does not lead to the root")


def _trivial_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check the cases without a path (equal sizes, the empty tree); True if handled."""
    if first == second:
        if proof:
            raise ProofError("trees of the same size need an empty consistency proof")
        if first_root != second_root:
            raise ProofError("the two roots of the same tree size differ")
        return True
    if first == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree is empty")
        return True
    if not proof:
        raise ProofError("the consistency proof is empty")
    return False


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``ProofError`` unless the tree of ``second`` extends the tree of ``first``
    (RFC 9162, 2.1.4.2)."""
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    _check_hashes(proof)
    if _trivial_consistency(first, second, first_root, second_root, proof):
        return
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for value in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(value, fr)
            sr = node_hash(value, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, value)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof has too few hashes")
    if fr != first_root:
        raise ProofError("the consistency proof does not lead to the first root")
    if sr != second_root:
        raise ProofError("the consistency proof does not lead to the second root")


def _check_hashes(proof: Sequence[bytes]) -> None:
    for value in proof:
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError("a proof hash is not 32 bytes")
