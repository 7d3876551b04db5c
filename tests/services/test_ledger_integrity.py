"""Tamper evidence and the database's own guards, and appends racing each other."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import DBAPIError

from amply_verify.hashing import compute_entry_hash
from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger
from tests.conftest import as_superuser, run_in_threads


def build_ledger(org: Organisation, count: int = 6) -> list[ledger.Entry]:
    entries = []
    for i in range(count):
        if i % 3 == 2:
            entries.append(ledger.append_entry(org.id, "expense", -(100 + i), "EUR",
                                               {"category": "rent", "payee": "Landlord"}))
        else:
            entries.append(ledger.append_entry(org.id, "donation_received", 1_000 + i, "EUR",
                                               {"donor_name": "Jane"}))
    db.session.commit()
    return entries


@contextmanager
def triggers_disabled() -> Iterator[None]:
    """What a database superuser could do behind the application's back."""
    with as_superuser():
        db.session.execute(sa.text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        yield
        db.session.execute(sa.text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))


def sqlstate_of(error: pytest.ExceptionInfo[DBAPIError]) -> str | None:
    orig = error.value.orig
    assert isinstance(orig, psycopg.Error)
    return orig.sqlstate


def refused(sql: str, params: dict[str, Any] | None = None) -> pytest.ExceptionInfo[DBAPIError]:
    """Run ``sql`` as a database superuser: the guards hold even against the owner."""
    with pytest.raises(DBAPIError) as info, as_superuser(), db.session.begin_nested():
        db.session.execute(sa.text(sql), params or {})
    return info


def refused_to_the_portal(sql: str, params: dict[str, Any] | None = None) -> str | None:
    """Run ``sql`` as the portal's own role; return the SQLSTATE it was refused with."""
    with pytest.raises(DBAPIError) as info, db.session.begin_nested():
        db.session.execute(sa.text(sql), params or {})
    return sqlstate_of(info)


# ------------------------------------------------------------------ tamper detection


@pytest.mark.usefixtures("app")
class TestTamperDetection:
    def test_an_edited_amount_is_named(self, create_org: Callable[..., Organisation]) -> None:
        org = create_org()
        entries = build_ledger(org)
        with triggers_disabled():
            db.session.execute(sa.text(
                "UPDATE ledger_entries SET amount = 99999 WHERE entry_id = :e"),
                {"e": entries[3].entry_id})
        result = ledger.verify_chain(org.id)
        assert not result.valid
        assert result.error == "hash_mismatch"
        assert (result.broken_entry_id, result.broken_sequence) == (entries[3].entry_id, 4)
        assert result.entry_count == 3

    def test_edited_metadata_is_named(self, create_org: Callable[..., Organisation]) -> None:
        org = create_org()
        entries = build_ledger(org)
        with triggers_disabled():
            db.session.execute(sa.text(
                "UPDATE ledger_entries SET metadata = metadata || '{\"payee\": \"Someone else\"}'"
                " WHERE entry_id = :e"), {"e": entries[2].entry_id})
        result = ledger.verify_chain(org.id)
        assert (result.valid, result.error, result.broken_entry_id) == (
            False, "hash_mismatch", entries[2].entry_id)

    def test_a_deleted_entry_leaves_a_gap(self, create_org: Callable[..., Organisation]) -> None:
        org = create_org()
        entries = build_ledger(org)
        with triggers_disabled():
            db.session.execute(sa.text("DELETE FROM ledger_entries WHERE entry_id = :e"),
                               {"e": entries[1].entry_id})
        result = ledger.verify_chain(org.id)
        assert (result.valid, result.error) == (False, "sequence_gap")
        assert (result.broken_entry_id, result.broken_sequence) == (entries[2].entry_id, 3)
        assert "expected sequence 2" in (result.detail or "")

    def test_a_deleted_last_entry_disagrees_with_the_head(
        self, create_org: Callable[..., Organisation]
    ) -> None:
        org = create_org()
        entries = build_ledger(org)
        with triggers_disabled():
            db.session.execute(sa.text("DELETE FROM ledger_entries WHERE entry_id = :e"),
                               {"e": entries[-1].entry_id})
        result = ledger.verify_chain(org.id)
        assert (result.valid, result.error, result.entry_count) == (False, "head_mismatch", 5)
        assert (result.broken_entry_id, result.broken_sequence) == (None, 6)
        assert "removed" in (result.detail or "")

    def test_an_edited_running_balance_is_named(
        self, create_org: Callable[..., Organisation]
    ) -> None:
        org = create_org()
        entries = build_ledger(org)
        with triggers_disabled():
            db.session.execute(sa.text(
                "UPDATE ledger_entries SET balance_after = balance_after + 1 WHERE entry_id = :e"),
                {"e": entries[4].entry_id})
        result = ledger.verify_chain(org.id)
        assert (result.valid, result.error, result.broken_entry_id) == (
            False, "balance_mismatch", entries[4].entry_id)

    def test_a_rewritten_entry_breaks_the_next_link(
        self, create_org: Callable[..., Organisation]
    ) -> None:
        """A forger who recomputes the edited entry's hash still breaks the next link."""
        org = create_org()
        entries = build_ledger(org)
        target = entries[2]
        forged_hash = compute_entry_hash(
            target.entry_id, target.timestamp, target.organisation_id, target.type, -1,
            target.currency, target.metadata, target.prev_entry_hash,
        )
        with triggers_disabled():
            db.session.execute(sa.text(
                "UPDATE ledger_entries SET amount = -1, entry_hash = :h,"
                " balance_after = balance_after - amount - 1 WHERE entry_id = :e"),
                {"h": forged_hash, "e": target.entry_id})
        result = ledger.verify_chain(org.id)
        assert (result.valid, result.error) == (False, "chain_link_broken")
        assert result.broken_entry_id == entries[3].entry_id

    def test_an_entry_slipped_in_past_the_head_is_named(
        self, create_org: Callable[..., Organisation]
    ) -> None:
        org = create_org()
        entries = build_ledger(org, 3)
        last = entries[-1]
        forged_id = "led_" + "a" * 24
        forged_hash = compute_entry_hash(forged_id, last.timestamp, org.id, "expense", -5,
                                         "EUR", {}, last.entry_hash)
        with triggers_disabled():
            db.session.execute(sa.text(
                "INSERT INTO ledger_entries (entry_id, organisation_id, sequence, timestamp,"
                " type, amount, currency, metadata, prev_entry_hash, entry_hash, balance_after)"
                " VALUES (:id, :org, 4, :ts, 'expense', -5, 'EUR', '{}', :prev, :hash, 0)"),
                {"id": forged_id, "org": org.id, "ts": last.timestamp, "prev": last.entry_hash,
                 "hash": forged_hash})
        result = ledger.verify_chain(org.id)
        assert (result.valid, result.error, result.broken_entry_id) == (
            False, "head_mismatch", forged_id)

    def test_other_ledgers_stay_valid(self, create_org: Callable[..., Organisation]) -> None:
        tampered, untouched = create_org(), create_org()
        entries = build_ledger(tampered)
        build_ledger(untouched)
        with triggers_disabled():
            db.session.execute(sa.text("UPDATE ledger_entries SET amount = 1 WHERE entry_id = :e"),
                               {"e": entries[0].entry_id})
        assert not ledger.verify_chain(tampered.id).valid
        assert ledger.verify_chain(untouched.id).valid


# ------------------------------------------------------------------ database guards


@pytest.mark.usefixtures("app")
class TestDatabaseGuards:
    @pytest.mark.parametrize("statement", [
        "UPDATE ledger_entries SET amount = amount WHERE organisation_id = :o",
        "DELETE FROM ledger_entries WHERE organisation_id = :o",
        "TRUNCATE ledger_entries",
        "UPDATE ledger_totals SET amount = 0 WHERE organisation_id = :o",
    ])
    def test_the_portal_role_has_no_right_to_change_history(
        self, create_org: Callable[..., Organisation], statement: str
    ) -> None:
        org = create_org()
        build_ledger(org, 2)
        assert refused_to_the_portal(statement, {"o": org.id}) == "42501"  # insufficient privilege

    def test_update_is_refused(self, create_org: Callable[..., Organisation]) -> None:
        org = create_org()
        build_ledger(org, 2)
        info = refused("UPDATE ledger_entries SET amount = amount WHERE organisation_id = :o",
                       {"o": org.id})
        assert sqlstate_of(info) == "AL001"
        assert "append-only" in str(info.value)

    def test_delete_is_refused(self, create_org: Callable[..., Organisation]) -> None:
        org = create_org()
        build_ledger(org, 2)
        info = refused("DELETE FROM ledger_entries WHERE organisation_id = :o", {"o": org.id})
        assert sqlstate_of(info) == "AL001"
        assert ledger.verify_chain(org.id).entry_count == 2

    @pytest.mark.parametrize("table", ["ledger_entries", "ledger_heads", "ledger_totals"])
    def test_truncate_is_refused(self, table: str) -> None:
        assert sqlstate_of(refused(f"TRUNCATE {table} CASCADE")) == "AL001"

    @pytest.mark.parametrize("statement", [
        "UPDATE ledger_heads SET sequence = 0 WHERE organisation_id = :o",
        "DELETE FROM ledger_heads WHERE organisation_id = :o",
        "UPDATE ledger_heads SET balances = '{}' WHERE organisation_id = :o",
        "UPDATE ledger_totals SET amount = 1 WHERE organisation_id = :o",
        "INSERT INTO ledger_totals (organisation_id, currency, entry_type, category, fund_id,"
        " visibility, entry_count, amount) VALUES (:o, 'JPY', 'fee', '', '', 'public_full', 1, -9)",
    ])
    def test_derived_tables_are_written_by_the_ledger_only(
        self, create_org: Callable[..., Organisation], statement: str
    ) -> None:
        org = create_org()
        build_ledger(org, 2)
        assert sqlstate_of(refused(statement, {"o": org.id})) == "AL001"

    def _forge(self, org: Organisation, **changes: Any) -> pytest.ExceptionInfo[DBAPIError]:
        head = ledger.get_head(org.id)
        balance = ledger.balances(org.id).get("EUR", 0)
        values: dict[str, Any] = {
            "id": "led_" + "b" * 24, "org": org.id, "seq": head.sequence + 1,
            "ts": head.timestamp or "2030-01-01T00:00:00Z", "amount": -5,
            "prev": head.entry_hash, "balance": balance - 5,
        }
        values.update(changes)
        values.setdefault("hash", compute_entry_hash(
            values["id"], values["ts"], org.id, "expense", values["amount"], "EUR", {},
            values["prev"]))
        return refused(
            "INSERT INTO ledger_entries (entry_id, organisation_id, sequence, timestamp, type,"
            " amount, currency, metadata, prev_entry_hash, entry_hash, balance_after)"
            " VALUES (:id, :org, :seq, :ts, 'expense', :amount, 'EUR', '{}', :prev, :hash,"
            " :balance)", values)

    @pytest.mark.parametrize(("changes", "sqlstate", "words"), [
        ({"seq": 5}, "AL002", "sequence does not follow"),
        ({"prev": "sha256:" + "0" * 64}, "AL002", "prev_entry_hash does not match"),
        ({"ts": "2000-01-01T00:00:00Z"}, "AL002", "timestamp is earlier"),
        ({"balance": 123}, "AL002", "balance_after"),
        ({"hash": "md5:abc"}, "23514", "entry_hash"),
        ({"amount": 5}, "23514", "sign"),
        ({"ts": "yesterday"}, "23514", "timestamp"),
    ], ids=["sequence", "prev-hash", "time", "balance", "hash-format", "sign", "ts-format"])
    def test_a_forged_insert_is_refused(
        self, create_org: Callable[..., Organisation], changes: dict[str, Any], sqlstate: str,
        words: str,
    ) -> None:
        org = create_org()
        build_ledger(org, 3)
        before = ledger.get_head(org.id)
        info = self._forge(org, **changes)
        assert sqlstate_of(info) == sqlstate
        assert words in str(info.value)
        assert ledger.get_head(org.id) == before

    def test_a_correct_insert_is_accepted_by_the_database(
        self, create_org: Callable[..., Organisation]
    ) -> None:
        """The forging helper is right when nothing is changed: so the refusals above mean it."""
        org = create_org()
        build_ledger(org, 3)
        head = ledger.get_head(org.id)
        balance = ledger.balances(org.id)["EUR"]
        entry_hash = compute_entry_hash("led_" + "c" * 24, head.timestamp or "", org.id,
                                        "expense", -5, "EUR", {}, head.entry_hash)
        db.session.execute(sa.text(
            "INSERT INTO ledger_entries (entry_id, organisation_id, sequence, timestamp, type,"
            " amount, currency, metadata, prev_entry_hash, entry_hash, balance_after)"
            " VALUES (:id, :org, :seq, :ts, 'expense', -5, 'EUR', '{}', :prev, :hash, :bal)"),
            {"id": "led_" + "c" * 24, "org": org.id, "seq": head.sequence + 1,
             "ts": head.timestamp, "prev": head.entry_hash, "hash": entry_hash,
             "bal": balance - 5})
        assert ledger.get_head(org.id).sequence == 4
        assert ledger.verify_chain(org.id).valid

    @pytest.mark.parametrize(("entry_type", "amount"), [
        ("transfer_out", -5), ("transfer_in", 5), ("donation_reversed", -5)])
    def test_linked_types_need_their_links(
        self, create_org: Callable[..., Organisation], entry_type: str, amount: int
    ) -> None:
        org = create_org()
        info = refused(
            "INSERT INTO ledger_entries (entry_id, organisation_id, sequence, timestamp, type,"
            " amount, currency, metadata, prev_entry_hash, entry_hash, balance_after)"
            " VALUES (:id, :org, 1, '2026-01-01T00:00:00Z', :type, :amount, 'EUR', '{}', NULL,"
            " :hash, :amount)",
            {"id": "led_" + "e" * 24, "org": org.id, "type": entry_type, "amount": amount,
             "hash": "sha256:" + "2" * 64})
        assert sqlstate_of(info) == "23514"

    def test_an_entry_of_an_unknown_organisation_is_refused(self) -> None:
        info = refused(
            "INSERT INTO ledger_entries (entry_id, organisation_id, sequence, timestamp, type,"
            " amount, currency, metadata, prev_entry_hash, entry_hash, balance_after)"
            " VALUES (:id, 'org_nobody', 1, '2030-01-01T00:00:00Z', 'expense', -5, 'EUR', '{}',"
            " NULL, :hash, -5)", {"id": "led_" + "d" * 24, "hash": "sha256:" + "1" * 64})
        assert sqlstate_of(info) in {"23503", "AL002"}


# ------------------------------------------------------------------ concurrency


def test_eight_writers_on_one_ledger_make_one_contiguous_chain(
    committed_app: Flask, create_org: Callable[..., Organisation]
) -> None:
    org_id = create_org().id  # plain values cross threads; ORM objects do not
    per_thread = 30

    def work(index: int) -> None:
        for n in range(per_thread):
            ledger.append_entry(org_id, "donation_received", 100 + index, "EUR",
                                {"donor_name": f"writer {index}", "n": n})
            db.session.commit()

    assert run_in_threads(committed_app, 8, work) == []
    result = ledger.verify_chain(org_id)
    assert result.valid, result.detail
    assert result.entry_count == 8 * per_thread
    sequences = [e.sequence for e in ledger.iter_entries(org_id)]
    assert sequences == list(range(1, 8 * per_thread + 1))
    assert ledger.balances(org_id) == {"EUR": sum((100 + i) * per_thread for i in range(8))}


def test_transfers_both_ways_at_once_do_not_deadlock(
    committed_app: Flask, create_org: Callable[..., Organisation]
) -> None:
    a, b = create_org().id, create_org().id

    def work(index: int) -> None:
        giver, receiver = (a, b) if index % 2 else (b, a)
        for _ in range(10):
            ledger.record_transfer(giver, receiver, 100, "EUR", description="swap")
            db.session.commit()

    assert run_in_threads(committed_app, 6, work) == []
    for org_id in (a, b):
        result = ledger.verify_chain(org_id)
        assert result.valid and result.entry_count == 60
    assert ledger.balances(a) == ledger.balances(b) == {"EUR": 0}


def test_concurrent_idempotent_appends_write_once(
    committed_app: Flask, create_org: Callable[..., Organisation]
) -> None:
    org_id = create_org().id

    def work(index: int) -> None:
        ledger.append_entry(org_id, "donation_received", 4_200, "EUR", {"donation_id": "don_x"},
                            idempotency_key="pi_same")
        db.session.commit()

    assert run_in_threads(committed_app, 8, work) == []
    assert ledger.verify_chain(org_id).entry_count == 1


def test_the_database_refuses_a_fund_of_another_organisation(
    app: Flask, create_org: Callable[..., Organisation]
) -> None:
    import sqlalchemy as sa

    from portal.models import Fund

    org, other = create_org(), create_org()
    foreign = db.session.scalar(sa.select(Fund.id).where(Fund.organisation_id == other.id))
    entry_hash = compute_entry_hash("led_" + "f" * 24, "2026-01-01T00:00:00Z", org.id,
                                    "donation_received", 5, "EUR", {"fund_id": foreign}, None)
    info = refused(
        "INSERT INTO ledger_entries (entry_id, organisation_id, sequence, timestamp, type,"
        " amount, currency, metadata, prev_entry_hash, entry_hash, balance_after)"
        " VALUES (:id, :org, 1, '2026-01-01T00:00:00Z', 'donation_received', 5, 'EUR',"
        " CAST(:meta AS jsonb), NULL, :hash, 5)",
        {"id": "led_" + "f" * 24, "org": org.id, "meta": f'{{"fund_id": "{foreign}"}}',
         "hash": entry_hash})
    assert sqlstate_of(info) == "AL002"
    assert "does not belong" in str(info.value)
