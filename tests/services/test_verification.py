"""Verification for visitors: computed once per ledger head, then read from Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger, verification
from tests.conftest import as_superuser

pytestmark = pytest.mark.usefixtures("app")


def test_results_are_cached_per_head(
    create_org: Callable[..., Organisation], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    calls: list[str] = []
    real = ledger.verify_chain

    def counting(org_id: str, **kwargs: object) -> ledger.ChainVerification:
        calls.append(org_id)
        return real(org_id)

    monkeypatch.setattr(ledger, "verify_chain", counting)
    first = verification.verify(org.id)
    second = verification.verify(org.id)
    assert (first.valid, first.entry_count, first.cached) == (True, 1, False)
    assert (second.valid, second.cached) == (True, True)
    assert len(calls) == 1
    ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    third = verification.verify(org.id)
    assert (third.entry_count, third.cached) == (2, False)
    assert len(calls) == 2
    assert verification.last_reports([org.id])[org.id].entry_count == 2


def test_a_broken_chain_is_reported(create_org: Callable[..., Organisation]) -> None:
    import sqlalchemy as sa

    org = create_org()
    entry = ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    with as_superuser():
        db.session.execute(sa.text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        db.session.execute(sa.text("UPDATE ledger_entries SET amount = 5 WHERE entry_id = :e"),
                           {"e": entry.entry_id})
        db.session.execute(sa.text("ALTER TABLE ledger_entries ENABLE TRIGGER USER"))
    report = verification.verify(org.id)
    assert (report.valid, report.error, report.broken_sequence) == (False, "hash_mismatch", 1)
