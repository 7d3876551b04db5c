"""The JSON export: a consistent, streamable document that hides what the public may not see."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from amply_verify.hashing import compute_entry_hash
from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger, ledger_export

pytestmark = pytest.mark.usefixtures("app")


def export(org: Organisation, audience: str = "public") -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        b"".join(ledger_export.export_chunks(org, audience))  # type: ignore[arg-type]
    )
    return document


def mixed_ledger(org: Organisation) -> dict[str, ledger.Entry]:
    entries = {
        "gift": ledger.append_entry(org.id, "donation_received", 50_000, "EUR",
                                    {"donor_name": "Jane Donor"}),
        "salary": ledger.append_entry(org.id, "expense", -3_000, "EUR", {
            "category": "salaries", "payee": "Alice Secret", "description": "March salary",
            "visibility": "public_aggregated"}),
        "legal": ledger.append_entry(org.id, "expense", -700, "EUR", {
            "category": "legal", "payee": "Counsel LLP", "visibility": "internal_only"}),
        "later": ledger.append_entry(org.id, "expense", -900, "EUR", {
            "category": "security", "payee": "Locksmith", "visibility": "delayed_public",
            "reveal_at": "2099-01-01T00:00:00Z"}),
        "rent": ledger.append_entry(org.id, "expense", -1_200, "EUR", {
            "category": "rent", "payee": "Landlord"}),
    }
    db.session.commit()
    return entries


def test_public_export_redacts_hidden_entries(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    entries = mixed_ledger(org)
    document = export(org)
    text = json.dumps(document)
    for secret in ("Alice Secret", "March salary", "Counsel LLP", "Locksmith", "-3000", "-700"):
        assert secret not in text
    rows = {row["sequence"]: row for row in document["entries"]}
    assert rows[1]["metadata"]["donor_name"] == "Jane Donor"
    assert rows[2] == {
        "sequence": 2, "visibility": "public_aggregated", "redacted": True,
        "prev_entry_hash": entries["gift"].entry_hash,
        "entry_hash": entries["salary"].entry_hash,
        "timestamp": entries["salary"].timestamp, "type": "expense", "category": "salaries",
    }
    assert set(rows[3]) == {"sequence", "visibility", "redacted", "prev_entry_hash",
                            "entry_hash"}
    assert rows[4]["reveal_at"] == "2099-01-01T00:00:00Z"
    assert "amount" not in rows[4]
    assert rows[5]["metadata"]["payee"] == "Landlord"
    assert all("balance_after" not in row for row in rows.values())


def test_auditor_export_redacts_nothing(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    entries = mixed_ledger(org)
    document = export(org, "auditor")
    assert document["audience"] == "auditor"
    rows = document["entries"]
    assert [row["entry_id"] for row in rows] == [e.entry_id for e in entries.values()]
    assert rows[1]["metadata"]["payee"] == "Alice Secret"
    assert [row["balance_after"] for row in rows] == [50_000, 47_000, 46_300, 45_400, 44_200]


def test_every_full_entry_recomputes_and_every_link_holds(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    mixed_ledger(org)
    document = export(org)
    previous = None
    for row in document["entries"]:
        assert row["prev_entry_hash"] == previous
        if not row.get("redacted"):
            assert compute_entry_hash(
                row["entry_id"], row["timestamp"], row["organisation_id"], row["type"],
                row["amount"], row["currency"], row["metadata"], row["prev_entry_hash"],
            ) == row["entry_hash"]
        previous = row["entry_hash"]
    assert document["head"] == {"sequence": 5, "entry_hash": previous}


def test_header_describes_the_organisation(create_org: Callable[..., Organisation]) -> None:
    org = create_org(name="Café Zürich <Food> Bank", country="CH", default_currency="CHF")
    document = export(org)
    assert document["format"] == "amply-ledger-export"
    assert document["version"] == 1
    assert document["hash_algorithm"] == "sha256"
    assert document["organisation"]["name"] == "Café Zürich <Food> Bank"
    assert document["organisation"]["id"] == org.id
    assert document["funds"][0]["name"] == "General Fund"
    assert document["head"] == {"sequence": 0, "entry_hash": None}
    assert document["entries"] == []
    assert list(document)[-1] == "entries"


def test_export_stops_at_the_head_it_announced(create_org: Callable[..., Organisation]) -> None:
    """Entries appended while the export streams are not half-included."""
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    chunks = ledger_export.export_chunks(org, "public")
    first = next(chunks)
    ledger.append_entry(org.id, "donation_received", 200, "EUR")
    db.session.commit()
    document = json.loads(first + b"".join(chunks))
    assert document["head"]["sequence"] == 1
    assert len(document["entries"]) == 1


def test_revealed_entries_are_public_after_their_date(
    create_org: Callable[..., Organisation],
) -> None:
    from portal.services.disclosure import public_record

    org = create_org()
    entry = ledger.append_entry(org.id, "expense", -900, "EUR", {
        "payee": "Locksmith", "visibility": "delayed_public", "reveal_at": "2099-01-01T00:00:00Z"})
    before = public_record(entry, now="2098-12-31T23:59:59Z")
    after = public_record(entry, now="2099-01-01T00:00:00Z")
    assert before.get("redacted") is True
    assert "metadata" not in before
    assert after["metadata"]["payee"] == "Locksmith"
    assert after["amount"] == -900


def test_one_entry_per_line(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    mixed_ledger(org)
    text = b"".join(ledger_export.export_chunks(org, "public")).decode()
    lines = text.splitlines()
    assert lines[0].endswith('"entries":[')
    assert lines[-1] == "]}"
    assert len(lines) == 2 + 5
