"""Signed checkpoints: made once a day, verifiable by an independent Ed25519 library,
and refused when a ledger is not an extension of what was signed before."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
import sqlalchemy as sa
from flask import Flask

from amply_verify import checkpoint as formats
from amply_verify import merkle
from amply_verify.note import Signer
from portal.extensions import db
from portal.models import Checkpoint, CheckpointOrganisation, Organisation
from portal.services import checkpoints, ledger
from tests.conftest import as_superuser

pytestmark = pytest.mark.usefixtures("app", "signing_key")

DAY_ONE = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def day(n: int) -> datetime:
    return DAY_ONE + timedelta(days=n - 1)


def give(org: Organisation, count: int, amount: int = 1_000, currency: str = "EUR") -> None:
    for _ in range(count):
        ledger.append_entry(org.id, "donation_received", amount, currency, {"donor_name": "A"})
    db.session.commit()


def line(checkpoint_id: str, org: Organisation) -> checkpoints.OrganisationLine:
    return checkpoints.line_for(checkpoint_id, org.id)


def nacl_verify_note(note: str, signer: Signer) -> str:
    """Check a signed note with PyNaCl and the C2SP rules, written out independently."""
    text, _, signature_line = note.rpartition("\n\n")
    text += "\n"
    assert signature_line.startswith("\u2014 ") and signature_line.endswith("\n")
    name, encoded = signature_line[2:-1].split(" ")
    raw = base64.b64decode(encoded)
    public = bytes(nacl.signing.SigningKey(signer.seed).verify_key)
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    assert raw[:4] == key_id
    nacl.signing.VerifyKey(public).verify(text.encode(), raw[4:])
    return text


def test_a_checkpoint_signs_every_active_ledger(
    create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org, empty = create_org(), create_org()
    hidden = create_org(status="pending")
    give(org, 5)
    give(hidden, 2)

    made = checkpoints.create_checkpoint(day(1))
    assert made.created
    assert made.checkpoint.id == "chk_2031_03_01"
    document = checkpoints.get_document(made.checkpoint.id)
    formats.verify_document(document, signing_key.verifier)

    ids = [s["organisation_id"] for s in document["organisation_summaries"]]
    assert org.id in ids and empty.id in ids and hidden.id not in ids
    mine = line(made.checkpoint.id, org)
    hashes = [e.entry_hash for e in ledger.iter_entries(org.id)]
    assert mine.tree_size == 5
    assert mine.root_hash == base64.b64encode(merkle.root_from_entry_hashes(hashes)).decode()
    assert mine.head_hash == hashes[-1]
    assert mine.totals == {"EUR": {"entries": 5, "balance": 5_000, "volume": 5_000}}
    tree = formats.open_checkpoint(mine.note, signing_key.verifier)
    assert tree.origin == f"portal.test/ledgers/{org.id}"
    assert line(made.checkpoint.id, empty).root_hash == base64.b64encode(
        merkle.EMPTY_ROOT).decode()
    assert document["timestamp"] == "2031-03-01T12:00:00Z"


def test_signatures_verify_with_an_independent_library(
    create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org()
    give(org, 3)
    made = checkpoints.create_checkpoint(day(1))
    text = nacl_verify_note(line(made.checkpoint.id, org).note, signing_key)
    assert text.split("\n")[1] == "3"

    document = checkpoints.get_document(made.checkpoint.id)
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    import json

    message = json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode() + b"\n"
    raw = base64.b64decode(document["signature"])
    verify_key = nacl.signing.VerifyKey(bytes(nacl.signing.SigningKey(signing_key.seed)
                                              .verify_key))
    verify_key.verify(message, raw[4:])
    with pytest.raises(nacl.exceptions.BadSignatureError):
        verify_key.verify(message.replace(b'"tree_size":3', b'"tree_size":4'), raw[4:])


def test_making_the_days_checkpoint_twice_returns_the_first(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    give(org, 2)
    first = checkpoints.create_checkpoint(day(1))
    give(org, 2)
    again = checkpoints.create_checkpoint(day(1) + timedelta(hours=6))
    assert not again.created
    assert again.checkpoint == first.checkpoint
    assert line(first.checkpoint.id, org).tree_size == 2


def test_each_day_extends_the_last_and_links_to_it(
    create_org: Callable[..., Organisation], signing_key: Signer
) -> None:
    org = create_org()
    give(org, 3)
    first = checkpoints.create_checkpoint(day(1))
    give(org, 4, currency="USD")
    second = checkpoints.create_checkpoint(day(2))
    assert second.checkpoint.previous_id == first.checkpoint.id
    old, new = line(first.checkpoint.id, org), line(second.checkpoint.id, org)
    assert (old.tree_size, new.tree_size) == (3, 7)
    assert new.totals == {"EUR": {"entries": 3, "balance": 3_000, "volume": 3_000},
                          "USD": {"entries": 4, "balance": 4_000, "volume": 4_000}}
    from portal.services import merkle as trees

    proof = trees.consistency_proof(org.id, 3, 7)
    merkle.verify_consistency(3, 7, base64.b64decode(old.root_hash),
                              base64.b64decode(new.root_hash), proof.path)
    formats.verify_document(checkpoints.get_document(second.checkpoint.id), signing_key.verifier)


def test_checkpoints_are_made_in_date_order(create_org: Callable[..., Organisation]) -> None:
    create_org()
    checkpoints.create_checkpoint(day(3))
    with pytest.raises(checkpoints.CheckpointRefused, match="date order"):
        checkpoints.create_checkpoint(day(2))


def test_no_key_no_checkpoint(app: Flask, tmp_path: Any) -> None:
    app.config["CHECKPOINT_KEY_FILE"] = str(tmp_path / "missing.key")
    try:
        with pytest.raises(checkpoints.SigningKeyMissing, match="keygen"):
            checkpoints.create_checkpoint(day(1))
        assert checkpoints.verifier() is None
        signer = checkpoints.generate_key("example.org/amply")
        assert (tmp_path / "missing.key").stat().st_mode & 0o777 == 0o600
        assert checkpoints.signer().verifier == signer.verifier
        with pytest.raises(checkpoints.SigningKeyExists):
            checkpoints.generate_key()
    finally:
        app.config["CHECKPOINT_KEY_FILE"] = ""


def checkpoint_count() -> int:
    return int(db.session.execute(sa.text("SELECT count(*) FROM checkpoints")).scalar_one())


def test_an_edited_entry_is_refused_and_nothing_is_signed(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    give(org, 4)
    checkpoints.create_checkpoint(day(1))
    give(org, 2)
    with as_superuser():
        db.session.execute(sa.text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        db.session.execute(sa.text(
            "UPDATE ledger_entries SET amount = 999999 WHERE organisation_id = :o"
            " AND sequence = 5"), {"o": org.id})
        db.session.execute(sa.text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))
    before = checkpoint_count()
    with pytest.raises(checkpoints.CheckpointRefused, match="entry 5's hash"):
        checkpoints.create_checkpoint(day(2))
    assert checkpoint_count() == before


def rewrite_history(org: Organisation, keep: int) -> None:
    """What an operator with full database rights could do: cut the ledger back to
    ``keep`` entries, its tree and head too, so that new entries form a valid fork."""
    with as_superuser():
        for table in ("ledger_entries", "merkle_nodes", "ledger_heads", "ledger_totals"):
            db.session.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        db.session.execute(sa.text(
            "DELETE FROM ledger_entries WHERE organisation_id = :o AND sequence > :k"),
            {"o": org.id, "k": keep})
        db.session.execute(sa.text(
            "DELETE FROM merkle_nodes WHERE organisation_id = :o"
            " AND ((position + 1) << level) > :k"), {"o": org.id, "k": keep})
        db.session.execute(sa.text(
            "UPDATE ledger_heads h SET sequence = e.sequence, entry_hash = e.entry_hash,"
            " timestamp = e.timestamp, balances = jsonb_build_object(e.currency,"
            " e.balance_after) FROM ledger_entries e WHERE h.organisation_id = :o"
            " AND e.organisation_id = :o AND e.sequence = :k"), {"o": org.id, "k": keep})
        for table in ("ledger_entries", "merkle_nodes", "ledger_heads", "ledger_totals"):
            db.session.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def test_a_rewritten_fork_passes_the_chain_but_not_the_consistency_proof(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    give(org, 6)
    checkpoints.create_checkpoint(day(1))
    rewrite_history(org, keep=3)
    give(org, 5, amount=7)  # a different history from entry 4 on, 8 entries long
    assert ledger.verify_chain(org.id).valid  # the fork is a perfectly good chain …
    before = checkpoint_count()
    with pytest.raises(checkpoints.CheckpointRefused, match="no longer has the root"):
        checkpoints.create_checkpoint(day(2))  # … but not an extension of what was signed
    assert checkpoint_count() == before


def test_a_truncated_ledger_is_refused(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    give(org, 6)
    checkpoints.create_checkpoint(day(1))
    rewrite_history(org, keep=4)
    with pytest.raises(checkpoints.CheckpointRefused, match="fewer than the 6 signed"):
        checkpoints.create_checkpoint(day(2))


def test_a_forged_consistency_node_is_refused(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    give(org, 5)
    checkpoints.create_checkpoint(day(1))
    give(org, 4)
    with as_superuser():
        db.session.execute(sa.text("ALTER TABLE merkle_nodes DISABLE TRIGGER USER"))
        db.session.execute(sa.text(
            "UPDATE merkle_nodes SET hash = sha256('forged') WHERE organisation_id = :o"
            " AND level = 1 AND position = 3"), {"o": org.id})
        db.session.execute(sa.text("ALTER TABLE merkle_nodes ENABLE TRIGGER USER"))
    with pytest.raises(checkpoints.CheckpointRefused, match="not consistent"):
        checkpoints.create_checkpoint(day(2))


def test_checkpoints_cannot_be_changed(create_org: Callable[..., Organisation]) -> None:
    create_org()
    made = checkpoints.create_checkpoint(day(1))
    for statement in ("UPDATE checkpoints SET entry_count = 0",
                      "DELETE FROM checkpoint_organisations",
                      "TRUNCATE checkpoints CASCADE"):
        with pytest.raises(sa.exc.DBAPIError), as_superuser(), db.session.begin_nested():
            db.session.execute(sa.text(statement))
    assert db.session.get(Checkpoint, made.checkpoint.id) is not None
    assert db.session.scalars(sa.select(CheckpointOrganisation)).first() is not None


def test_only_operators_may_write_checkpoints(create_org: Callable[..., Organisation]) -> None:
    from portal.services import tenancy

    org = create_org()
    tenancy.set_scope(tenancy.Scope((org.id,)))  # an organisation's dashboard, not operators
    with pytest.raises(sa.exc.DBAPIError, match="row-level security"), \
            db.session.begin_nested():
        db.session.execute(sa.text(
            "INSERT INTO checkpoints (id, period, timestamp, entry_count, organisation_count,"
            " cumulative_hash, key_name, key_id, document) VALUES ('chk_2031_01_01',"
            " '2031-01-01', 'x', 0, 0, 'x', 'x', 'x', '{}')"))
