"""Derived figures are remembered while the head stands still, and no longer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger, ledger_cache

pytestmark = pytest.mark.usefixtures("app")


def test_results_last_until_the_head_moves(create_org: Callable[..., Organisation]) -> None:
    org = create_org()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert ledger_cache.cached(org.id, "thing", compute) == 1
    assert ledger_cache.cached(org.id, "thing", compute) == 1
    ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    assert ledger_cache.cached(org.id, "thing", compute) == 2


def test_results_expire_when_a_scheduled_entry_is_disclosed(
    create_org: Callable[..., Organisation],
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "expense", -100, "EUR", {
        "visibility": "delayed_public", "reveal_at": "2099-06-01T00:00:00Z"})
    db.session.commit()
    values = iter(range(100))
    first = ledger_cache.cached(org.id, "view", lambda: next(values), now="2099-05-31T23:59:59Z")
    same = ledger_cache.cached(org.id, "view", lambda: next(values), now="2099-05-31T23:59:59Z")
    later = ledger_cache.cached(org.id, "view", lambda: next(values), now="2099-06-01T00:00:00Z")
    assert (first, same, later) == (0, 0, 1)
