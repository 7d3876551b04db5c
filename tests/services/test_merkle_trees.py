"""The Merkle trees the database keeps: built by appends of every kind, proofs served
from stored nodes for every size up to 200, guarded like the ledger, and checked by
verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import DBAPIError

from amply_verify import merkle
from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger
from portal.services import merkle as trees
from portal.services.ledger import EntryDraft
from tests.conftest import as_superuser

pytestmark = pytest.mark.usefixtures("app")

SIZE = 200


def gift(i: int) -> EntryDraft:
    return EntryDraft("donation_received", 100 + i, "EUR", {"donor_name": f"Donor {i}"})


def grow(org: Organisation, total: int) -> list[str]:
    """Append ``total`` entries one by one, in batches of odd sizes, and by bulk load."""
    i = 0
    while i < min(total, 37):  # single appends
        ledger.append_entry(org.id, "donation_received", 100 + i, "EUR", {"donor_name": "A"})
        i += 1
    for size in (1, 2, 3, 5, 8, 13, 21):  # batches crossing many subtree boundaries
        if i + size > total:
            break
        ledger.append_entries(org.id, [gift(i + k) for k in range(size)])
        i += size
    db.session.commit()
    if i < total:
        ledger.bulk_load(org.id, (gift(i + k) for k in range(total - i)), batch_size=64)
    return [e.entry_hash for e in ledger.iter_entries(org.id)]


def test_stored_proofs_match_the_reference_for_every_size_and_index(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    hashes = grow(org, SIZE)
    assert len(hashes) == SIZE
    reference = merkle.LeafList([merkle.entry_leaf_hash(h) for h in hashes])
    entry_ids = [e.entry_id for e in ledger.iter_entries(org.id)]

    assert trees.tree_head(org.id).root == merkle.root_from_entry_hashes(hashes)
    for size in range(SIZE + 1):
        root = trees.root(org.id, size)
        assert root == reference.root(size)
        for index in range(size):
            proof = trees.inclusion_proof(org.id, entry_ids[index], size)
            assert proof.path == reference.inclusion_proof(index, size)
            assert proof.root == root
            merkle.verify_inclusion(index, size, proof.leaf_hash, proof.path, root)
    for first in range(SIZE + 1):
        consistency = trees.consistency_proof(org.id, first, SIZE)
        assert consistency.path == reference.consistency_proof(first, SIZE)
        merkle.verify_consistency(first, SIZE, consistency.first_root, consistency.second_root,
                                  consistency.path)


def test_every_consistency_proof_between_stored_sizes(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    hashes = grow(org, 64)
    reference = merkle.LeafList([merkle.entry_leaf_hash(h) for h in hashes])
    for second in range(65):
        for first in range(second + 1):
            proof = trees.consistency_proof(org.id, first, second)
            assert proof.path == reference.consistency_proof(first, second)
            assert (proof.first_root, proof.second_root) == (reference.root(first),
                                                             reference.root(second))


def test_a_transfer_grows_both_trees(create_org: Callable[..., Organisation]) -> None:
    sender, receiver = create_org(), create_org()
    for org in (sender, receiver):
        ledger.append_entry(org.id, "donation_received", 5_000, "EUR", {"donor_name": "A"})
    ledger.record_transfer(sender.id, receiver.id, 1_000, "EUR", description="Shared project")
    db.session.commit()
    for org in (sender, receiver):
        hashes = [e.entry_hash for e in ledger.iter_entries(org.id)]
        assert len(hashes) == 2
        assert trees.tree_head(org.id).root == merkle.root_from_entry_hashes(hashes)


def test_proofs_beyond_the_head_or_for_other_ledgers_are_refused(
    create_org: Callable[..., Organisation],
) -> None:
    org, other = create_org(), create_org()
    grow(org, 5)
    stranger = ledger.append_entry(other.id, "donation_received", 1, "EUR", {})
    first = next(iter(ledger.iter_entries(org.id)))
    with pytest.raises(trees.TreeSizeError):
        trees.root(org.id, 6)
    with pytest.raises(trees.TreeSizeError):
        trees.inclusion_proof(org.id, first.entry_id, 0)
    with pytest.raises(trees.TreeSizeError):
        trees.consistency_proof(org.id, 3, 6)
    with pytest.raises(trees.TreeSizeError):
        trees.consistency_proof(org.id, 4, 3)
    with pytest.raises(trees.ProofEntryNotFound):
        trees.inclusion_proof(org.id, stranger.entry_id)
    assert trees.root(org.id, 0) == merkle.EMPTY_ROOT


def node_count(organisation_id: str) -> int:
    return int(db.session.execute(
        sa.text("SELECT count(*) FROM merkle_nodes WHERE organisation_id = :o"),
        {"o": organisation_id}).scalar_one())


@pytest.mark.parametrize("statement", [
    "UPDATE merkle_nodes SET hash = sha256('x') WHERE organisation_id = :o",
    "DELETE FROM merkle_nodes WHERE organisation_id = :o",
    "INSERT INTO merkle_nodes VALUES (:o, 9, 9, sha256('x'))",
    "TRUNCATE merkle_nodes",
])
def test_the_tree_cannot_be_changed_even_by_its_owner(
    create_org: Callable[..., Organisation], statement: str
) -> None:
    org = create_org()
    grow(org, 8)
    before = node_count(org.id)
    with pytest.raises(DBAPIError) as info, db.session.begin_nested():
        db.session.execute(sa.text(statement), {"o": org.id})
    assert "permission denied" in str(info.value)
    with pytest.raises(DBAPIError) as info, as_superuser(), db.session.begin_nested():
        db.session.execute(sa.text(statement), {"o": org.id})
    assert "refused" in str(info.value)
    assert node_count(org.id) == before == 7  # 4 + 2 + 1 inner nodes over 8 leaves


def test_verification_notices_a_rewritten_tree_node(
    app: Flask, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    grow(org, 12)
    assert ledger.verify_chain(org.id).valid
    with as_superuser():
        db.session.execute(sa.text("ALTER TABLE merkle_nodes DISABLE TRIGGER USER"))
        db.session.execute(sa.text(
            "UPDATE merkle_nodes SET hash = sha256('forged') "
            "WHERE organisation_id = :o AND level = 2 AND position = 1"), {"o": org.id})
        db.session.execute(sa.text("ALTER TABLE merkle_nodes ENABLE TRIGGER USER"))
    result = ledger.verify_chain(org.id)
    assert not result.valid
    assert result.error == "merkle_mismatch"
    assert "nodes were changed" in (result.detail or "")


def test_the_tree_of_a_ledger_is_private_until_the_organisation_is_public(
    app: Flask, create_org: Callable[..., Organisation]
) -> None:
    from portal.services import tenancy

    pending = create_org(status="pending")
    grow(pending, 4)
    tenancy.public_reading()
    visible: Any = db.session.execute(
        sa.text("SELECT count(*) FROM merkle_nodes WHERE organisation_id = :o"),
        {"o": pending.id}).scalar_one()
    assert visible == 0
    tenancy.platform()
    assert node_count(pending.id) == 3
