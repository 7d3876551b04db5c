"""A ledger with an entry at every visibility level, and secrets that must never show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger

#: Words and amounts of hidden entries. None may appear in any public output (page,
#: fragment, CSV, JSON, API), nor make a search or a filter match.
SECRET_WORDS = ("Zanzibarpayee", "Quixoticmatter", "Vermilionlawyer")
SECRET_AMOUNTS = (7_654_321, 1_345_679, 5_432_109, 3_210_987)


@dataclass
class MixedLedger:
    org: Organisation
    gift: ledger.Entry
    rent: ledger.Entry
    salary: ledger.Entry
    salary_two: ledger.Entry
    legal: ledger.Entry
    scheduled: ledger.Entry
    secret_fund: str


@pytest.fixture
def mixed(app: object, create_org: Callable[..., Organisation]) -> MixedLedger:
    from portal.ids import new_id
    from portal.models import Fund

    org = create_org(name="Harbour Lights Trust")
    secret_fund = Fund(id=new_id("fund"), organisation_id=org.id, name="Obsidianfund",
                       type="restricted")
    db.session.add(secret_fund)
    db.session.flush()

    def hidden(amount: int, **metadata: object) -> ledger.Entry:
        return ledger.append_entry(org.id, "expense", -amount, "EUR",
                                   {"fund_id": secret_fund.id, **metadata})

    gift = ledger.append_entry(org.id, "donation_received", 50_000_000, "EUR",
                               {"donor_name": "Ada Lovelace", "description": "Winter appeal"})
    rent = ledger.append_entry(org.id, "expense", -120_000, "EUR",
                               {"category": "rent", "payee": "Dockside Lettings",
                                "description": "January rent"})
    salary = hidden(7_654_321, category="salaries", payee="Zanzibarpayee",
                    description="Quixoticmatter", visibility="public_aggregated")
    salary_two = hidden(1_345_679, category="salaries", payee="Zanzibarpayee Two",
                        visibility="public_aggregated")
    legal = hidden(5_432_109, category="legal", payee="Vermilionlawyer",
                   visibility="internal_only")
    scheduled = hidden(3_210_987, category="security", payee="Zanzibarpayee Locks",
                       visibility="delayed_public", reveal_at="2099-01-01T00:00:00Z")
    db.session.commit()
    return MixedLedger(org, gift, rent, salary, salary_two, legal, scheduled, secret_fund.id)


def assert_no_secrets(text: str) -> None:
    for word in SECRET_WORDS:
        assert word not in text, f"{word!r} leaked"
    for amount in SECRET_AMOUNTS:
        major = amount / 100
        for shown in (str(amount), f"{major:,.2f}", f"{major:.2f}"):
            assert shown not in text, f"amount {amount} leaked as {shown!r}"
