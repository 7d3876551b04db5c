"""The ledger service against a real PostgreSQL: chaining, corrections, refusals, totals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from amply_verify.hashing import compute_entry_hash
from portal.extensions import db
from portal.ids import new_id
from portal.models import Fund, Organisation
from portal.services import ledger
from portal.services.ledger import (
    AlreadyReversed,
    EntryDraft,
    IdempotencyConflict,
    InvalidEntry,
    NotReversible,
    UnknownOrganisation,
)

pytestmark = pytest.mark.usefixtures("app")


def entry_count(organisation_id: str) -> int:
    return int(db.session.execute(
        sa.text("SELECT count(*) FROM ledger_entries WHERE organisation_id = :o"),
        {"o": organisation_id},
    ).scalar_one())


def donate(org: Organisation, amount: int = 10_000, **metadata: Any) -> ledger.Entry:
    entry = ledger.append_entry(org.id, "donation_received", amount, org.default_currency,
                                {"donor_name": "Jane Donor", **metadata})
    db.session.commit()
    return entry


def spend(org: Organisation, amount: int = 2_500, **metadata: Any) -> ledger.Entry:
    entry = ledger.append_entry(org.id, "expense", -amount, org.default_currency,
                                {"category": "programs", "payee": "Metro", **metadata})
    db.session.commit()
    return entry


# ------------------------------------------------------------------ chaining


def test_entries_chain_in_sequence(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    first = donate(org, 10_000)
    second = ledger.append_entry(org.id, "fee", -320, "eur", {"description": "Card fee"})
    third = spend(org, 4_550)

    assert [first.sequence, second.sequence, third.sequence] == [1, 2, 3]
    assert first.prev_entry_hash is None
    assert second.prev_entry_hash == first.entry_hash
    assert third.prev_entry_hash == second.entry_hash
    assert second.currency == "EUR"
    assert [first.balance_after, second.balance_after, third.balance_after] == [
        10_000, 9_680, 5_130]
    head = ledger.get_head(org.id)
    assert (head.sequence, head.entry_hash) == (3, third.entry_hash)
    assert ledger.balances(org.id) == {"EUR": 5_130}


def test_stored_hash_is_the_formula_over_stored_fields(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    entry = spend(org, 4_550, payee="Café Zürich — Ünïcødé ✓", nested={"b": [1, {"z": None}]})
    stored = ledger.get_entry(org.id, entry.entry_id)
    assert stored.entry_hash == compute_entry_hash(
        stored.entry_id, stored.timestamp, stored.organisation_id, stored.type, stored.amount,
        stored.currency, stored.metadata, stored.prev_entry_hash,
    )
    assert stored.metadata["payee"] == "Café Zürich — Ünïcødé ✓"
    assert stored.entry_id.startswith("led_") and len(stored.entry_id) == 28


def test_meaning_lives_in_metadata_with_defaults(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    entry = donate(org)
    general = db.session.scalar(sa.select(Fund.id).where(
        Fund.organisation_id == org.id, Fund.type == "general"))
    assert entry.metadata["visibility"] == "public_full"
    assert entry.metadata["fund_id"] == general


def test_timestamps_never_go_backwards(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    stamps = [donate(org, 100 + i).timestamp for i in range(5)]
    assert stamps == sorted(stamps)
    for stamp in stamps:
        ledger.parse_timestamp(stamp)


def test_verify_chain_on_a_good_ledger(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    empty = ledger.verify_chain(org.id)
    assert empty.valid and empty.entry_count == 0 and empty.head_hash is None
    for i in range(12):
        donate(org, 1_000 + i)
    result = ledger.verify_chain(org.id)
    assert result.valid
    assert result.entry_count == 12
    assert result.head_hash == ledger.get_head(org.id).entry_hash
    assert result.error is None


def test_append_entries_writes_several_in_one_go(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    donation, fee = ledger.append_entries(org.id, [
        EntryDraft("donation_received", 5_000, "EUR", {"donation_id": "don_1"}),
        EntryDraft("fee", -100, "EUR", {"donation_id": "don_1"}),
    ])
    db.session.commit()
    assert fee.prev_entry_hash == donation.entry_hash
    assert entry_count(org.id) == 2


def test_balances_are_kept_per_currency(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 5_000, "EUR")
    usd = ledger.append_entry(org.id, "donation_received", 700, "USD")
    eur = ledger.append_entry(org.id, "expense", -1_000, "EUR", {"category": "rent"})
    db.session.commit()
    assert usd.balance_after == 700
    assert eur.balance_after == 4_000
    assert ledger.balances(org.id) == {"EUR": 4_000, "USD": 700}


# ------------------------------------------------------------------ totals


def expected_totals(organisation_id: str) -> dict[tuple[str, ...], list[int]]:
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    entries = {e.entry_id: e for e in ledger.iter_entries(organisation_id)}
    for entry in entries.values():
        meta = entry.metadata
        key = (entry.currency, entry.type, meta.get("category", ""), meta.get("fund_id", ""),
               entry.visibility)
        totals[key][0] += 1
        totals[key][1] += entry.amount
        if entry.type == "expense_recategorized":
            original = entries[meta["refers_to"]]
            base = (original.currency, original.type)
            rest = (original.metadata.get("fund_id", ""), original.visibility)
            old = (*base, meta["old_category"], *rest)
            new = (*base, meta["new_category"], *rest)
            totals[old][0] -= 1
            totals[old][1] -= original.amount
            totals[new][0] += 1
            totals[new][1] += original.amount
    return {key: value for key, value in totals.items() if value != [0, 0]}


def stored_totals(organisation_id: str) -> dict[tuple[str, ...], list[int]]:
    rows = db.session.execute(sa.text(
        "SELECT currency, entry_type, category, fund_id, visibility, entry_count, amount"
        " FROM ledger_totals WHERE organisation_id = :o"), {"o": organisation_id})
    return {tuple(row[:5]): [row[5], row[6]] for row in rows if (row[5], row[6]) != (0, 0)}


def test_running_totals_follow_every_entry(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    donate(org, 50_000)
    spend(org, 1_000, category="rent")
    secret = spend(org, 2_000, category="salaries", visibility="public_aggregated")
    moved = spend(org, 3_000, category="travel")
    ledger.recategorize_expense(org.id, moved.entry_id, "training", reason="Course, not trip")
    ledger.reverse_entry(org.id, secret.entry_id, "Paid twice")
    db.session.commit()
    assert stored_totals(org.id) == expected_totals(org.id)
    training = db.session.execute(sa.text(
        "SELECT sum(amount) FROM ledger_totals WHERE organisation_id = :o"
        " AND entry_type = 'expense' AND category = 'training'"), {"o": org.id}).scalar_one()
    assert training == -3_000


# ------------------------------------------------------------------ corrections


def test_reverse_a_donation(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    gift = donate(org, 10_000)
    reversal = ledger.reverse_entry(org.id, gift.entry_id, "duplicate charge")
    db.session.commit()
    assert reversal.type == "donation_reversed"
    assert reversal.amount == -10_000
    assert reversal.metadata["reverses"] == gift.entry_id
    assert reversal.metadata["reason"] == "duplicate charge"
    assert ledger.balances(org.id) == {"EUR": 0}


def test_reverse_an_expense_keeps_its_category_and_fund(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    donate(org, 10_000)
    expense = spend(org, 2_500, category="rent")
    ledger.recategorize_expense(org.id, expense.entry_id, "operations")
    reversal = ledger.reverse_entry(org.id, expense.entry_id, "cancelled invoice")
    assert reversal.type == "adjustment"
    assert reversal.amount == 2_500
    assert reversal.metadata["category"] == "operations"
    assert reversal.metadata["fund_id"] == expense.metadata["fund_id"]


def test_an_entry_is_reversed_once(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    gift = donate(org)
    ledger.reverse_entry(org.id, gift.entry_id, "first")
    db.session.commit()
    with pytest.raises(AlreadyReversed):
        ledger.reverse_entry(org.id, gift.entry_id, "second")
    assert entry_count(org.id) == 2


def test_the_database_refuses_a_second_reversal_too(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    gift = donate(org)
    ledger.reverse_entry(org.id, gift.entry_id, "first")
    db.session.commit()
    draft = EntryDraft("donation_reversed", -gift.amount, "EUR",
                       {"reverses": gift.entry_id, "reason": "again"})
    with pytest.raises(AlreadyReversed), db.session.begin_nested():
        ledger._write([(org.id, draft, new_id("led"))], allow_links=True)


@pytest.mark.parametrize("entry_type", ["transfer_out", "expense_recategorized"])
def test_some_entries_cannot_be_reversed(
    create_org: Callable[..., Organisation], entry_type: str
) -> None:
    org = create_org()
    other = create_org()
    donate(org, 10_000)
    if entry_type == "transfer_out":
        target, _ = ledger.record_transfer(org.id, other.id, 500, "EUR", description="grant")
    else:
        expense = spend(org)
        target = ledger.recategorize_expense(org.id, expense.entry_id, "rent")
    db.session.commit()
    with pytest.raises(NotReversible):
        ledger.reverse_entry(org.id, target.entry_id, "no")


def test_a_reversal_cannot_be_reversed(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    expense = spend(org, 100)
    reversal = ledger.reverse_entry(org.id, expense.entry_id, "mistake")
    with pytest.raises(NotReversible, match="itself a reversal"):
        ledger.reverse_entry(org.id, reversal.entry_id, "undo the undo")


def test_recategorize_an_expense(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    expense = spend(org, 900, category="travel")
    entry = ledger.recategorize_expense(org.id, expense.entry_id, "training", reason="course")
    assert entry.type == "expense_recategorized"
    assert entry.amount == 0
    assert entry.metadata["refers_to"] == expense.entry_id
    assert (entry.metadata["old_category"], entry.metadata["new_category"]) == (
        "travel", "training")
    again = ledger.recategorize_expense(org.id, expense.entry_id, "programs")
    assert again.metadata["old_category"] == "training"
    with pytest.raises(InvalidEntry, match="already in category"):
        ledger.recategorize_expense(org.id, expense.entry_id, "programs")


def test_a_retried_recategorization_returns_the_first(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    expense = spend(org, 900, category="travel")
    first = ledger.recategorize_expense(org.id, expense.entry_id, "training",
                                        idempotency_key="recat-1")
    again = ledger.recategorize_expense(org.id, expense.entry_id, "training",
                                        idempotency_key="recat-1")
    assert again == first
    other = spend(org, 100, category="rent")
    with pytest.raises(IdempotencyConflict):
        ledger.recategorize_expense(org.id, other.entry_id, "training",
                                    idempotency_key="recat-1")
    assert entry_count(org.id) == 3


def test_a_retried_reversal_returns_the_first(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    gift = donate(org)
    first = ledger.reverse_entry(org.id, gift.entry_id, "duplicate", idempotency_key="rev-1")
    again = ledger.reverse_entry(org.id, gift.entry_id, "duplicate", idempotency_key="rev-1")
    assert again == first
    assert entry_count(org.id) == 2


def test_only_expenses_are_recategorized(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    gift = donate(org)
    with pytest.raises(InvalidEntry, match="only expenses"):
        ledger.recategorize_expense(org.id, gift.entry_id, "rent")


# ------------------------------------------------------------------ idempotency


def test_a_seen_idempotency_key_returns_the_entry(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    first = ledger.append_entry(org.id, "donation_received", 2_000, "EUR",
                                {"donation_id": "don_1"}, idempotency_key="pi_123")
    db.session.commit()
    again = ledger.append_entry(org.id, "donation_received", 2_000, "eur",
                                {"donation_id": "don_1"}, idempotency_key="pi_123")
    db.session.commit()
    assert again == first
    assert entry_count(org.id) == 1


def test_the_same_key_with_other_content_is_refused(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 2_000, "EUR", idempotency_key="k1")
    db.session.commit()
    with pytest.raises(IdempotencyConflict):
        ledger.append_entry(org.id, "donation_received", 2_001, "EUR", idempotency_key="k1")
    assert entry_count(org.id) == 1


def test_keys_are_per_organisation(create_org: Callable[..., Organisation]) -> None:
    one, two = create_org(), create_org()
    a = ledger.append_entry(one.id, "donation_received", 100, "EUR", idempotency_key="same")
    b = ledger.append_entry(two.id, "donation_received", 100, "EUR", idempotency_key="same")
    assert a.entry_id != b.entry_id


# ------------------------------------------------------------------ transfers


def test_a_transfer_writes_both_sides_linked(create_org: Callable[..., Organisation]) -> None:
    giver, receiver = create_org(), create_org()
    donate(giver, 10_000)
    out_entry, in_entry = ledger.record_transfer(giver.id, receiver.id, 2_500, "EUR",
                                                 description="Joint project grant")
    db.session.commit()
    assert (out_entry.type, out_entry.amount) == ("transfer_out", -2_500)
    assert (in_entry.type, in_entry.amount) == ("transfer_in", 2_500)
    ref = out_entry.metadata["transfer_ref"]
    assert ref.startswith("txf_") and in_entry.metadata["transfer_ref"] == ref
    assert out_entry.metadata["counterpart_entry_id"] == in_entry.entry_id
    assert in_entry.metadata["counterpart_entry_id"] == out_entry.entry_id
    assert out_entry.metadata["counterparty_organisation_id"] == receiver.id
    assert in_entry.metadata["counterparty_organisation_id"] == giver.id
    assert ledger.get_entry(receiver.id, in_entry.entry_id) == in_entry


def test_a_failed_transfer_writes_neither_side(create_org: Callable[..., Organisation]) -> None:
    giver, receiver, stranger = create_org(), create_org(), create_org()
    stranger_fund = db.session.scalar(sa.select(Fund.id).where(
        Fund.organisation_id == stranger.id))
    before = (ledger.get_head(giver.id), ledger.get_head(receiver.id))
    with pytest.raises(InvalidEntry, match="does not belong"):
        ledger.record_transfer(giver.id, receiver.id, 100, "EUR", description="x",
                               to_fund_id=stranger_fund)
    with pytest.raises(UnknownOrganisation):
        ledger.record_transfer(giver.id, "org_" + "0" * 24, 100, "EUR", description="x")
    with pytest.raises(InvalidEntry):
        ledger.record_transfer(giver.id, receiver.id, 100, "XXX", description="x")
    with pytest.raises(InvalidEntry):
        ledger.record_transfer(giver.id, giver.id, 100, "EUR", description="x")
    assert (ledger.get_head(giver.id), ledger.get_head(receiver.id)) == before


def test_a_refused_row_takes_its_whole_statement_with_it(
    create_org: Callable[..., Organisation],
) -> None:
    """Both sides of a transfer go in one INSERT: if the database refuses one, none stays."""
    giver, receiver = create_org(), create_org()
    good = ledger._chain(ledger._lock([giver.id])[giver.id],
                         ledger._normalise_draft(EntryDraft("expense", -5, "EUR")),
                         new_id("led"), ledger.utc_timestamp())
    bad_ledger = ledger._lock([receiver.id])[receiver.id]
    bad_ledger.sequence = 41  # pretend the head is elsewhere: the database must refuse
    bad = ledger._chain(bad_ledger,
                        ledger._normalise_draft(EntryDraft("donation_received", 5, "EUR")),
                        new_id("led"), ledger.utc_timestamp())
    with pytest.raises(ledger.ChainRefused, match="sequence"), db.session.begin_nested():
        ledger._insert([(good, None), (bad, None)])
    assert entry_count(giver.id) == 0
    assert entry_count(receiver.id) == 0


def test_transfer_idempotency(create_org: Callable[..., Organisation]) -> None:
    giver, receiver = create_org(), create_org()
    first = ledger.record_transfer(giver.id, receiver.id, 700, "EUR", description="grant",
                                   idempotency_key="txf-2026-01")
    again = ledger.record_transfer(giver.id, receiver.id, 700, "EUR", description="grant",
                                   idempotency_key="txf-2026-01")
    assert again == first
    with pytest.raises(IdempotencyConflict):
        ledger.record_transfer(giver.id, receiver.id, 800, "EUR", description="grant",
                               idempotency_key="txf-2026-01")
    assert entry_count(giver.id) == entry_count(receiver.id) == 1


# ------------------------------------------------------------------ bad input


BAD_APPENDS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown type", {"entry_type": "gift"}, "unknown entry type"),
    ("money in with a negative amount", {"entry_type": "donation_received", "amount": -5},
     "positive"),
    ("money out with a positive amount", {"entry_type": "expense", "amount": 5}, "negative"),
    ("fee with a positive amount", {"entry_type": "fee", "amount": 5}, "negative"),
    ("refund with a positive amount", {"entry_type": "refund_issued", "amount": 5}, "negative"),
    ("dispute won negative", {"entry_type": "dispute_won", "amount": -5}, "positive"),
    ("zero amount", {"amount": 0}, "must not be zero"),
    ("recategorization appended directly", {"entry_type": "expense_recategorized",
                                            "amount": 0}, "recategorize_expense"),
    ("transfer appended directly", {"entry_type": "transfer_out"}, "record_transfer"),
    ("reversal appended directly", {"entry_type": "donation_reversed"}, "reverse_entry"),
    ("lone surrogate", {"metadata": {"payee": "bad \ud800 text"}}, "not valid Unicode"),
    ("amount out of range", {"amount": -(10**15)}, "outside the allowed range"),
    ("float amount", {"amount": 10.5}, "integer"),
    ("boolean amount", {"amount": True}, "integer"),
    ("unknown currency", {"currency": "XYZ"}, "unknown currency"),
    ("not a currency", {"currency": "euro"}, "unknown currency"),
    ("float in metadata", {"metadata": {"rate": 0.5}}, "float"),
    ("nested float", {"metadata": {"a": [{"b": 1.5}]}}, "float"),
    ("nan in metadata", {"metadata": {"a": float("nan")}}, "float"),
    ("non-text key", {"metadata": {1: "x"}}, "non-text key"),
    ("NUL in text", {"metadata": {"payee": "a\x00b"}}, "NUL"),
    ("huge integer", {"metadata": {"n": 2**60}}, "too large"),
    ("unknown visibility", {"metadata": {"visibility": "secret"}}, "unknown visibility"),
    ("delayed without date", {"metadata": {"visibility": "delayed_public"}}, "reveal_at"),
    ("delayed in the past", {"metadata": {"visibility": "delayed_public",
                                          "reveal_at": "2020-01-01T00:00:00Z"}}, "later than"),
    ("reveal date without delay", {"metadata": {"reveal_at": "2099-01-01T00:00:00Z"}},
     "only for delayed_public"),
    ("bad reveal date", {"metadata": {"visibility": "delayed_public", "reveal_at": "soon"}},
     "timestamp"),
    ("adjustment without reason", {"entry_type": "adjustment", "amount": 5}, "needs a reason"),
    ("link key smuggled in", {"metadata": {"reverses": "led_x"}}, "reversals"),
    ("category with spaces", {"metadata": {"category": "Office Rent"}}, "category"),
    ("empty payee", {"metadata": {"payee": "  "}}, "payee"),
    ("long description", {"metadata": {"description": "x" * 2001}}, "description"),
    ("metadata not an object", {"metadata": ["a"]}, "JSON object"),
    ("bad idempotency key", {"idempotency_key": "has space"}, "idempotency key"),
    ("fund of nobody", {"metadata": {"fund_id": "fund_000000000000000000000000"}},
     "does not belong"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_APPENDS, ids=[c[0] for c in BAD_APPENDS]
)
def test_bad_input_is_refused_and_nothing_is_written(
    create_org: Callable[..., Organisation], case: str, change: dict[str, Any], message: str
) -> None:
    org = create_org()
    donate(org, 1_000)
    before = ledger.get_head(org.id)
    arguments: dict[str, Any] = {"entry_type": "expense", "amount": -100, "currency": "EUR",
                                 "metadata": {}}
    arguments.update(change)
    key = arguments.pop("idempotency_key", None)
    with pytest.raises(InvalidEntry, match=message):
        ledger.append_entry(org.id, arguments["entry_type"], arguments["amount"],
                            arguments["currency"], arguments["metadata"], idempotency_key=key)
    assert ledger.get_head(org.id) == before
    assert entry_count(org.id) == 1


def test_a_fund_of_another_organisation_is_refused(
    create_org: Callable[..., Organisation],
) -> None:
    org, other = create_org(), create_org()
    other_fund = db.session.scalar(sa.select(Fund.id).where(Fund.organisation_id == other.id))
    with pytest.raises(InvalidEntry, match="does not belong"):
        ledger.append_entry(org.id, "donation_received", 100, "EUR", {"fund_id": other_fund})
    assert entry_count(org.id) == 0


def test_an_unknown_organisation_is_refused(app: Flask) -> None:
    with pytest.raises(UnknownOrganisation):
        ledger.append_entry("org_" + "f" * 24, "donation_received", 100, "EUR")


def test_unknown_entries_are_not_found(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    with pytest.raises(ledger.EntryNotFound):
        ledger.reverse_entry(org.id, "led_" + "0" * 24, "why")


def test_entries_of_another_organisation_are_not_found(
    create_org: Callable[..., Organisation],
) -> None:
    org, other = create_org(), create_org()
    gift = donate(other)
    with pytest.raises(ledger.EntryNotFound):
        ledger.reverse_entry(org.id, gift.entry_id, "not mine")
    assert entry_count(org.id) == 0


# ------------------------------------------------------------------ bulk loading


def test_bulk_load_chains_like_appends(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    drafts = [EntryDraft("donation_received", 100 + i, "EUR", {"n": i},
                         timestamp=f"2026-01-01T00:00:{i:02d}Z") for i in range(25)]
    steps: list[int] = []
    assert ledger.bulk_load(org.id, drafts, batch_size=10, progress=steps.append) == 25
    assert steps == [10, 10, 5]
    donate(org, 100)  # a live append after the import carries on from it
    assert ledger.verify_chain(org.id).entry_count == 26
    assert ledger.balances(org.id) == {"EUR": 100 + sum(100 + i for i in range(25))}
    assert stored_totals(org.id) == expected_totals(org.id)


def test_bulk_load_refuses_the_future(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    with pytest.raises(InvalidEntry, match="in the future"):
        ledger.bulk_load(org.id, [EntryDraft("donation_received", 100, "EUR",
                                             timestamp="2999-01-01T00:00:00Z")])
    assert entry_count(org.id) == 0


def test_bulk_load_refuses_time_travel(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    drafts = [EntryDraft("donation_received", 100, "EUR", timestamp="2026-01-02T00:00:00Z"),
              EntryDraft("donation_received", 100, "EUR", timestamp="2026-01-01T00:00:00Z")]
    with pytest.raises(InvalidEntry, match="earlier than"):
        ledger.bulk_load(org.id, drafts)
    assert entry_count(org.id) == 0


def test_withheld_amounts_are_tracked_per_currency(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    donate(org, 10_000)
    salary = spend(org, 3_000, category="salaries", visibility="public_aggregated")
    legal = spend(org, 700, category="legal", visibility="internal_only")
    later = spend(org, 200, visibility="delayed_public", reveal_at="2099-01-01T00:00:00Z")
    rent = spend(org, 1_000, category="rent")
    usd = ledger.append_entry(org.id, "expense", -5, "USD", {"visibility": "internal_only"})
    assert [e.withheld_after for e in (salary, legal, later, rent)] == [
        -3_000, -3_700, -3_700, -3_700]
    assert usd.withheld_after == -5
    # What the public may see of the running balance: everything but the withheld part.
    assert rent.balance_after - rent.withheld_after == 10_000 - 200 - 1_000


def test_bulk_load_keeps_the_batches_before_a_bad_draft(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    good = [EntryDraft("donation_received", 100, "EUR", timestamp="2026-01-01T00:00:00Z")] * 4
    bad = [EntryDraft("donation_received", -100, "EUR", timestamp="2026-01-01T00:00:00Z")]
    with pytest.raises(InvalidEntry, match="positive"):
        ledger.bulk_load(org.id, [*good, *bad, *good], batch_size=4)
    assert ledger.verify_chain(org.id).entry_count == 4


def test_bulk_load_stops_when_the_ledger_moves_underneath(
    create_org: Callable[..., Organisation], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = create_org()
    store = ledger._store_batch
    stored: list[int] = []

    def store_then_append(organisation_id: str, prepared: ledger._PreparedBatch) -> None:
        store(organisation_id, prepared)
        stored.append(len(prepared.rows))
        if len(stored) == 1:  # someone appends between two batches
            ledger.append_entry(organisation_id, "donation_received", 1, "EUR")
            db.session.commit()

    monkeypatch.setattr(ledger, "_store_batch", store_then_append)
    drafts = [EntryDraft("donation_received", 100, "EUR", timestamp="2026-01-01T00:00:00Z")] * 6
    with pytest.raises(ledger.ChainRefused, match="other entries"):
        ledger.bulk_load(org.id, drafts, batch_size=3)
    result = ledger.verify_chain(org.id)
    assert (result.valid, result.entry_count) == (True, 4)
