"""Verification outside a caller's transaction: the stored tree is checked in the
database, on a connection of its own, while the chain is walked."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger


def test_verification_checks_the_tree_beside_the_chain_on_its_own_connection(
    committed_app: Flask, create_org: Callable[..., Organisation], superuser_engine: sa.Engine,
) -> None:
    """Outside a caller's transaction the tree is checked in the database while the
    chain is walked; a changed node is still found, and put back afterwards."""
    org = create_org(status="suspended")  # kept out of other tests' checkpoints
    for i in range(40):
        ledger.append_entry(org.id, "donation_received", 100 + i, "EUR", {})
    db.session.commit()
    assert ledger.verify_chain(org.id).valid
    where = "organisation_id = :o AND level = 3 AND position = 2"
    with superuser_engine.begin() as connection:
        original = connection.execute(sa.text(f"SELECT hash FROM merkle_nodes WHERE {where}"),
                                      {"o": org.id}).scalar_one()
        connection.execute(sa.text("ALTER TABLE merkle_nodes DISABLE TRIGGER USER"))
        connection.execute(sa.text(f"UPDATE merkle_nodes SET hash = sha256('x') WHERE {where}"),
                           {"o": org.id})
        connection.execute(sa.text("ALTER TABLE merkle_nodes ENABLE TRIGGER USER"))
    try:
        result = ledger.verify_chain(org.id)
        assert not result.valid and result.error == "merkle_mismatch"
        assert "entries 17 to 24" in (result.detail or "")
    finally:
        with superuser_engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE merkle_nodes DISABLE TRIGGER USER"))
            connection.execute(sa.text(f"UPDATE merkle_nodes SET hash = :h WHERE {where}"),
                               {"o": org.id, "h": original})
            connection.execute(sa.text("ALTER TABLE merkle_nodes ENABLE TRIGGER USER"))
    assert ledger.verify_chain(org.id).valid
