"""The Merkle tree math: the project's vectors, the C2SP worked example, every proof to 200."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from amply_verify import merkle
from amply_verify.merkle import ProofError

VECTORS = json.loads((Path(__file__).parent.parent / "data" / "ledger-vectors.json").read_text())
MAX_SIZE = 200


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(count)]


def reference_root(items: list[bytes]) -> bytes:
    """MTH straight from RFC 6962's recursive definition, independent of the module."""
    if not items:
        return hashlib.sha256(b"").digest()
    if len(items) == 1:
        return items[0]
    k = 1
    while k * 2 < len(items):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(items[:k]) + reference_root(items[k:])).digest()


def test_the_project_vectors_roots_are_reproduced() -> None:
    hashes = [entry["entry_hash"] for entry in VECTORS["entries"]]
    assert VECTORS["merkle_roots"]
    for size, expected in VECTORS["merkle_roots"].items():
        assert merkle.root_from_entry_hashes(hashes[: int(size)]).hex() == expected


def test_the_c2sp_worked_example() -> None:
    a, b, c, d, e, f, g = (merkle.leaf_hash(bytes([i])) for i in range(7))
    h, i, j = merkle.node_hash(a, b), merkle.node_hash(c, d), merkle.node_hash(e, f)
    # The example's labels, ``l`` renamed ``el`` (a lone ``l`` reads like a one).
    k, el = merkle.node_hash(h, i), merkle.node_hash(j, g)
    root = merkle.node_hash(k, el)
    tree = merkle.LeafList([a, b, c, d, e, f, g])

    assert tree.root() == root == merkle.root_from_leaves([a, b, c, d, e, f, g])
    assert tree.inclusion_proof(0, 7) == [b, i, el]
    assert tree.inclusion_proof(3, 7) == [c, h, el]
    assert tree.inclusion_proof(4, 7) == [f, g, k]
    assert tree.inclusion_proof(6, 7) == [j, k]
    assert tree.consistency_proof(3, 7) == [c, d, h, el]
    assert tree.consistency_proof(4, 7) == [el]
    assert tree.consistency_proof(6, 7) == [j, g, k]


def test_the_empty_tree_hashes_the_empty_string() -> None:
    assert merkle.root_from_leaves([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT


def test_every_inclusion_proof_up_to_200_verifies_and_a_wrong_one_does_not() -> None:
    items = leaves(MAX_SIZE)
    tree = merkle.LeafList(items)
    for size in range(1, MAX_SIZE + 1):
        root = reference_root(items[:size])
        assert tree.root(size) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            merkle.verify_inclusion(index, size, items[index], proof, root)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(index, size, items[(index + 1) % MAX_SIZE], proof, root)
            if proof:
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(index, size, items[index], proof[:-1], root)
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(index, size, items[index], [*proof, root], root)


def test_every_consistency_proof_up_to_200_verifies_and_a_fork_does_not() -> None:
    items = leaves(MAX_SIZE)
    tree = merkle.LeafList(items)
    roots = [reference_root(items[:size]) for size in range(MAX_SIZE + 1)]
    for second in range(1, MAX_SIZE + 1):
        for first in range(second + 1):
            proof = tree.consistency_proof(first, second)
            merkle.verify_consistency(first, second, roots[first], roots[second], proof)
            if 0 < first < second:
                # A history rewritten before ``first`` cannot be proven to extend it.
                forged = roots[first - 1] if first > 1 else hashlib.sha256(b"x").digest()
                with pytest.raises(ProofError):
                    merkle.verify_consistency(first, second, forged, roots[second], proof)
                with pytest.raises(ProofError):
                    merkle.verify_consistency(first, second, roots[first], roots[second - 1],
                                              proof)


def test_a_rewritten_fork_fails_the_consistency_proof_against_the_old_root() -> None:
    honest = leaves(50)
    forked = [*honest[:20], merkle.leaf_hash(b"rewritten"), *honest[21:]]
    old_root = merkle.root_from_leaves(honest[:30])
    fork = merkle.LeafList(forked)
    with pytest.raises(ProofError):
        merkle.verify_consistency(30, 50, old_root, fork.root(), fork.consistency_proof(30, 50))


@pytest.mark.parametrize(("index", "size"), [(-1, 5), (5, 5), (0, 0)])
def test_impossible_inclusion_parameters_are_refused(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        merkle.inclusion_ranges(index, size)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, merkle.leaf_hash(b""), [], merkle.EMPTY_ROOT)


def test_proof_hashes_must_be_32_bytes() -> None:
    items = leaves(4)
    tree = merkle.LeafList(items)
    proof = tree.inclusion_proof(1, 4)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(1, 4, items[1], [proof[0][:31], proof[1]], tree.root())


def test_a_consistency_proof_between_equal_sizes_is_empty() -> None:
    tree = merkle.LeafList(leaves(6))
    merkle.verify_consistency(6, 6, tree.root(), tree.root(), [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(6, 6, tree.root(), tree.root(5), [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(7, 6, tree.root(), tree.root(), [])
