"""The flask commands, as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskCliRunner

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger
from tests.conftest import as_superuser


def test_orgs_list_shows_a_table(runner: FlaskCliRunner,
                                 create_org: Callable[..., Organisation]) -> None:
    org = create_org(name="Riverside Food Bank CLI")
    ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    result = runner.invoke(args=["orgs", "list"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0].split() == ["ID", "SLUG", "NAME", "STATUS", "ENTRIES"]
    line = next(line for line in result.output.splitlines() if org.id in line)
    assert "riverside-food-bank-cli" in line
    assert line.split()[-2:] == ["active", "1"]


def test_orgs_list_as_json(runner: FlaskCliRunner,
                           create_org: Callable[..., Organisation]) -> None:
    org = create_org(status="pending")
    result = runner.invoke(args=["orgs", "list", "--json", "--status", "pending"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert {"id": org.id, "slug": org.slug, "name": org.name, "status": "pending",
            "entry_count": 0} in rows
    assert all(row["status"] == "pending" for row in rows)


def test_ledger_verify_reports_a_valid_chain(runner: FlaskCliRunner,
                                             create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    for amount in (100, 200, 300):
        ledger.append_entry(org.id, "donation_received", amount, "EUR")
    db.session.commit()
    result = runner.invoke(args=["ledger", "verify", org.slug])
    assert result.exit_code == 0
    assert f"valid: 3 entries, head {ledger.get_head(org.id).entry_hash}" in result.output


def test_ledger_verify_fails_and_names_the_broken_entry(
    runner: FlaskCliRunner, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    entries = [ledger.append_entry(org.id, "donation_received", a, "EUR") for a in (100, 200)]
    db.session.commit()
    with as_superuser():
        db.session.execute(sa.text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        db.session.execute(sa.text("UPDATE ledger_entries SET amount = 999 WHERE entry_id = :e"),
                           {"e": entries[1].entry_id})
        db.session.execute(sa.text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))
    result = runner.invoke(args=["ledger", "verify", org.id])
    assert result.exit_code == 1
    assert f"INVALID: hash_mismatch at entry {entries[1].entry_id} (sequence 2)" in result.output


def test_unknown_organisation_is_a_clear_error(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["ledger", "verify", "no-such-org"])
    assert result.exit_code == 2
    assert "no organisation 'no-such-org'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("audience", ["public", "auditor"])
def test_ledger_export_writes_the_document(
    runner: FlaskCliRunner, create_org: Callable[..., Organisation], tmp_path: Path,
    audience: str,
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "expense", -100, "EUR",
                        {"payee": "Hidden Payee", "visibility": "internal_only"})
    db.session.commit()
    target = tmp_path / "out" / "ledger.json"
    result = runner.invoke(args=["ledger", "export", org.slug, "--output", str(target),
                                 "--audience", audience])
    assert result.exit_code == 0, result.output
    assert f"wrote 1 entries ({audience})" in result.output
    document = json.loads(target.read_text())
    assert document["audience"] == audience
    assert ("Hidden Payee" in target.read_text()) == (audience == "auditor")
    assert not list(target.parent.glob(".ledger.json.*")), "temporary file left behind"
    assert target.stat().st_mode & 0o044, "an export is meant to be shared"


def test_ledger_export_to_standard_output(runner: FlaskCliRunner,
                                          create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    result = runner.invoke(args=["ledger", "export", org.slug, "-o", "-"])
    assert result.exit_code == 0
    assert json.loads(result.output)["organisation"]["id"] == org.id


def test_ledger_export_refuses_an_unknown_audience(
    runner: FlaskCliRunner, create_org: Callable[..., Organisation], tmp_path: Path
) -> None:
    org = create_org()
    result = runner.invoke(args=["ledger", "export", org.slug, "-o", str(tmp_path / "x.json"),
                                 "--audience", "everyone"])
    assert result.exit_code == 2
    assert "Invalid value for '--audience'" in result.output
    assert not (tmp_path / "x.json").exists()


def test_demo_data_builds_valid_realistic_ledgers(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["demo-data", "--orgs", "3", "--entries", "120", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "Created 3 organisations." in result.output
    orgs = db.session.scalars(sa.select(Organisation).where(
        Organisation.slug.in_(["riverside-food-bank", "open-water-rescue", "kids-code-club"])
    )).all()
    assert len(orgs) == 3
    for org in orgs:
        assert org.status == "active"
        verification = ledger.verify_chain(org.id)
        assert verification.valid
        assert verification.entry_count >= 120
        types = {entry.type for entry in ledger.iter_entries(org.id)}
        assert {"donation_received", "fee", "expense"} <= types
        assert {"adjustment", "expense_recategorized"} <= types
    kinds = db.session.execute(sa.text(
        "SELECT DISTINCT metadata->>'visibility' FROM ledger_entries e"
        " JOIN organisations o ON o.id = e.organisation_id WHERE o.slug = 'open-water-rescue'"
    )).scalars().all()
    assert "public_full" in kinds


def test_demo_data_transfers_between_organisations_of_one_currency(
    runner: FlaskCliRunner,
) -> None:
    result = runner.invoke(args=["demo-data", "--orgs", "5", "--entries", "40", "--seed", "9"])
    assert result.exit_code == 0, result.output
    transfers = db.session.execute(sa.text(
        "SELECT type, metadata->>'transfer_ref' FROM ledger_entries"
        " WHERE type IN ('transfer_in', 'transfer_out')")).all()
    refs = [ref for _, ref in transfers]
    assert transfers
    assert all(refs.count(ref) == 2 for ref in refs)


def test_demo_data_if_empty_leaves_existing_data_alone(
    runner: FlaskCliRunner, create_org: Callable[..., Organisation]
) -> None:
    create_org()
    result = runner.invoke(args=["demo-data", "--if-empty"])
    assert result.exit_code == 0
    assert "demo data not loaded" in result.output
