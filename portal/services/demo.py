"""Realistic demo organisations with a year of ledger history.

Donations with their processing fees, expenses across categories, refunds,
hidden entries of every visibility level, then reversals, recategorizations and
transfers between organisations through the ordinary ledger functions. Bulk
history goes through ``ledger.bulk_load``, which hashes every entry with the one
hash function, so a million-entry organisation takes minutes, not hours.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.ids import new_id
from portal.models import Fund, Organisation
from portal.services import ledger
from portal.services.ledger import EntryDraft
from portal.services.organisations import add_organisation


@dataclass(frozen=True)
class DemoOrganisation:
    name: str
    country: str
    currency: str
    description: str
    website: str
    projects: tuple[tuple[str, str, int], ...]  # (name, fund type, goal in major units)
    scale: int = 1  # multiplies amounts for currencies with small units


CATALOGUE: tuple[DemoOrganisation, ...] = (
    DemoOrganisation(
        "Riverside Food Bank", "GB", "GBP",
        "Emergency food parcels and a community kitchen for families in east London.",
        "https://riverside-foodbank.example",
        (("Winter Kitchen", "project", 12_000), ("Baby Essentials", "restricted", 5_000)),
    ),
    DemoOrganisation(
        "Open Water Rescue", "DE", "EUR",
        "Volunteer lifeboat crews on the Baltic coast, on call day and night.",
        "https://open-water-rescue.example",
        (("New Lifeboat", "restricted", 180_000), ("Crew Training", "project", 20_000)),
    ),
    DemoOrganisation(
        "Kids Code Club", "US", "USD",
        "Free after-school programming clubs in public libraries.",
        "https://kidscode.example",
        (("Laptops for Clubs", "project", 30_000),),
    ),
    DemoOrganisation(
        "Bibliothèque Sans Murs", "FR", "EUR",
        "Mobile libraries and reading workshops for rural villages.",
        "https://bibliotheque-sans-murs.example",
        (("Bibliobus", "restricted", 60_000), ("Ateliers lecture", "project", 8_000)),
    ),
    DemoOrganisation(
        "Clean Rivers Collective", "NL", "EUR",
        "Citizen science and clean-ups along the Rhine and Maas.",
        "https://cleanrivers.example",
        (("Water Testing Kits", "project", 15_000), ("Flood Response", "emergency", 25_000)),
    ),
    DemoOrganisation(
        "Mlima Community Health", "KE", "KES",
        "Community health workers and a maternal clinic near Nakuru.",
        "https://mlima-health.example",
        (("Maternity Ward", "restricted", 4_000_000), ("Outreach Bikes", "project", 900_000)),
        scale=100,
    ),
    DemoOrganisation(
        "Alpine Refuge Aid", "CH", "CHF",
        "Shelter, meals and legal help for people crossing the Alps.",
        "https://alpine-refuge.example",
        (("Legal Help Desk", "restricted", 40_000),),
    ),
    DemoOrganisation(
        "Street Paws Rescue", "IE", "EUR",
        "Rescue, vet care and rehoming for stray dogs and cats.",
        "https://streetpaws.example",
        (("Vet Bills", "project", 10_000), ("Emergency Shelter", "emergency", 6_000)),
    ),
)

EXPENSES: dict[str, tuple[tuple[str, ...], tuple[int, int]]] = {
    # category: (payees, (low, high) amount in major units)
    "programs": (("Metro Wholesale", "City Community Hall", "Local Growers Co-op",
                  "Café Zürich — Ünïcødé Supplies"), (80, 2_500)),
    "rent": (("Harbour Properties Ltd", "Municipal Lettings"), (600, 2_400)),
    "equipment": (("Tool & Marine Supply", "Office Depot", "Refurbished IT Ltd"), (40, 3_000)),
    "travel": (("National Rail", "FlixBus", "Fuel Station North"), (15, 400)),
    "fundraising": (("PrintWorks", "Mailchimp", "Event Hire Co"), (30, 900)),
    "operations": (("Green Energy Co", "Telecom Plus", "Accountancy Partners",
                    "Insurance Mutual"), (25, 1_200)),
    "training": (("Red Cross Training", "First Aid Academy"), (60, 800)),
}
SALARY_RANGE = (1_800, 3_500)
DONORS = ("Jane Donor", "Amara Okafor", "Lukas Schneider", "Sofia Rossi", "Chen Wei",
          "Fatima Haddad", "Ole Nordmann", "María José García", "Tom O'Brien",
          "Priya Raman", "Élodie Martin", "Kwame Mensah", "Yuki Tanaka", "Acme Foundation",
          "Zofia Kowalska", "Anonymous")
DONATION_AMOUNTS = (5, 10, 10, 15, 20, 25, 25, 30, 50, 50, 75, 100, 150, 250, 500, 1_000)


def _fee(amount: int, scale: int) -> int:
    """A card fee of 1.5 % plus 0.25 in the currency's minor units, as processors charge."""
    return max(1, round(amount * 0.015) + 25 * scale)


@dataclass
class _Generator:
    """Builds one organisation's history as entry drafts, oldest first.

    Each ``_…`` method returns the drafts of one event (or none when the books
    could not afford it), so the balance never runs dry as it would not in life.
    """

    spec: DemoOrganisation
    rng: random.Random
    general_fund: str
    project_funds: list[str]
    emergency_funds: list[str]
    start: datetime
    end: datetime
    balance: int = 0

    def __post_init__(self) -> None:
        self.unit = 100 * self.spec.scale
        self.donations: list[tuple[str, int, str]] = []  # (donation id, amount, fund)
        # Money given for a purpose is spent on it, never more than was given.
        self.fund_balance: dict[str, int] = {}

    def drafts(self, count: int) -> Iterator[EntryDraft]:
        spacing = (self.end - self.start).total_seconds() / max(count, 1)
        produced = 0
        moment = self.start
        while produced < count:
            moment = min(moment + timedelta(seconds=self.rng.uniform(0.2, 1.8) * spacing),
                         self.end)
            roll = self.rng.random()
            if roll < 0.60 or self.balance < 50 * self.unit:
                event = self._donation()
            elif roll < 0.62 and self.donations:
                event = self._refund()
            elif roll < 0.67:
                event = self._salaries()
            else:
                event = self._expense(moment)
            stamp = ledger.utc_timestamp(moment)
            for draft in event[: count - produced]:
                self.balance += draft.amount
                fund = str(draft.metadata.get("fund_id", self.general_fund))
                self.fund_balance[fund] = self.fund_balance.get(fund, 0) + draft.amount
                yield replace(draft, timestamp=stamp)
                produced += 1

    def _draft(self, entry_type: str, amount: int, metadata: dict[str, Any]) -> EntryDraft:
        return EntryDraft(entry_type, amount, self.spec.currency, metadata)

    def _donation(self) -> list[EntryDraft]:
        fund = self.rng.choice([self.general_fund] * 3 + self.project_funds)
        amount = self.rng.choice(DONATION_AMOUNTS) * self.unit
        donation_id = new_id("don")
        donor = self.rng.choice(DONORS)
        metadata = {
            "donation_id": donation_id,
            "stripe_payment_intent_id": "pi_demo" + donation_id[4:],
            "donor_name": donor,
            "fund_id": fund,
        }
        if self.rng.random() < 0.1 and donor != "Anonymous":
            metadata["message"] = "Keep up the good work!"
        self.donations.append((donation_id, amount, fund))
        fee = {"donation_id": donation_id, "category": "payment-fees",
               "description": "Card processing fee", "fund_id": fund}
        return [self._draft("donation_received", amount, metadata),
                self._draft("fee", -_fee(amount, self.spec.scale), fee)]

    def _refund(self) -> list[EntryDraft]:
        donation_id, amount, fund = self.rng.choice(self.donations[-50:])
        refund = amount if self.rng.random() < 0.7 else amount // 2
        return [self._draft("refund_issued", -refund, {
            "donation_id": donation_id, "reason": "Requested by the donor", "fund_id": fund,
        })]

    def _salaries(self) -> list[EntryDraft]:
        amount = self.rng.randint(*SALARY_RANGE) * self.unit
        if amount > self.balance * 4 // 5:
            return []
        return [self._draft("expense", -amount, {
            "category": "salaries", "payee": "Staff payroll", "description": "Monthly salaries",
            "visibility": "public_aggregated", "fund_id": self.general_fund,
        })]

    def _expense(self, moment: datetime) -> list[EntryDraft]:
        category = self.rng.choice(tuple(EXPENSES))
        payees, (low, high) = EXPENSES[category]
        amount = self.rng.randint(low * 100, high * 100) * self.spec.scale
        if amount > self.balance // 2:
            return []
        fund = self.rng.choice([self.general_fund] * 2 + self.project_funds
                               + self.emergency_funds)
        if fund != self.general_fund and self.fund_balance.get(fund, 0) < amount:
            fund = self.general_fund
        metadata: dict[str, Any] = {
            "category": category, "payee": self.rng.choice(payees),
            "description": f"{category.capitalize()} costs", "fund_id": fund,
        }
        hidden = self.rng.random()
        if hidden < 0.02:
            metadata.update(visibility="internal_only", category="legal",
                            payee="Counsel (confidential)", description="Legal advice")
        elif hidden < 0.04:
            reveal = moment + timedelta(days=self.rng.choice((30, 120, 400)))
            metadata.update(visibility="delayed_public", reveal_at=ledger.utc_timestamp(reveal))
        return [self._draft("expense", -amount, metadata)]


def _funds(organisation_id: str, spec: DemoOrganisation) -> tuple[str, list[str], list[str]]:
    general = db.session.scalar(
        sa.select(Fund.id).where(Fund.organisation_id == organisation_id, Fund.type == "general")
    )
    assert general is not None
    projects: list[str] = []
    emergencies: list[str] = []
    for name, fund_type, goal in spec.projects:
        fund = Fund(id=new_id("fund"), organisation_id=organisation_id, name=name,
                    type=fund_type, goal_amount=goal * 100 * spec.scale if goal else None,
                    goal_currency=spec.currency if goal else None,
                    description=f"Money given for {name.lower()}.")
        db.session.add(fund)
        (emergencies if fund_type == "emergency" else projects).append(fund.id)
    db.session.flush()
    return general, projects, emergencies


def _unique_name(base: str, index: int) -> str:
    return base if index < len(CATALOGUE) else f"{base} {index // len(CATALOGUE) + 1}"


def build_demo_data(
    *,
    organisations: int = 6,
    entries: int = 1_500,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
    sign: bool = True,
) -> list[Organisation]:
    """Create ``organisations`` active demo organisations with ``entries`` entries each.

    With ``sign``, the ledgers are signed in a checkpoint dated yesterday, a few
    corrections and transfers follow, and today's checkpoint signs those too.
    """
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(minutes=5)
    start = end - timedelta(days=365)
    created: list[Organisation] = []
    for index in range(organisations):
        spec = CATALOGUE[index % len(CATALOGUE)]
        organisation = add_organisation(
            name=_unique_name(spec.name, index), country=spec.country,
            default_currency=spec.currency, legal_name=f"{spec.name} e.V."
            if spec.country == "DE" else f"{spec.name} Ltd", description=spec.description,
            website=spec.website, status="active",
        )
        general, projects, emergencies = _funds(organisation.id, spec)
        db.session.commit()
        generator = _Generator(spec, rng, general, projects, emergencies, start, end)
        ledger.bulk_load(organisation.id, generator.drafts(entries), progress=progress)
        created.append(organisation)
    if sign:
        _checkpoint(end - timedelta(days=1))
    _corrections(created, rng)
    if sign:
        _checkpoint(datetime.now(UTC))
    return created


def _checkpoint(moment: datetime) -> None:
    """Sign the ledgers as they stand (making the portal's signing key if it has none), so
    the demo shows checkpoints, proofs and a consistency check between two of them."""
    from portal.services import checkpoints

    if checkpoints.verifier() is None:
        checkpoints.generate_key()
    latest = checkpoints.latest_checkpoint()
    if latest is None or latest.period < moment.date():
        checkpoints.create_checkpoint(moment)


def _corrections(created: list[Organisation], rng: random.Random) -> None:
    """A few reversals, recategorizations and transfers, as real books have."""
    for organisation in created:
        expenses = db.session.execute(
            sa.text("SELECT entry_id FROM ledger_entries WHERE organisation_id = :org"
                    " AND type = 'expense' AND visibility = 'public_full'"
                    " ORDER BY sequence DESC LIMIT 20"),
            {"org": organisation.id},
        ).scalars().all()
        if len(expenses) >= 2:
            ledger.reverse_entry(organisation.id, expenses[0],
                                 "Duplicate invoice, paid twice by mistake")
            current = ledger.get_entry(organisation.id, expenses[1]).metadata.get("category")
            new_category = rng.choice([c for c in EXPENSES if c != current])
            ledger.recategorize_expense(organisation.id, expenses[1], new_category,
                                        reason="Booked under the wrong category")
        db.session.commit()
    by_currency: dict[str, list[Organisation]] = {}
    for organisation in created:
        by_currency.setdefault(organisation.default_currency, []).append(organisation)
    for group in by_currency.values():
        for giver, receiver in itertools.pairwise(group):
            ledger.record_transfer(
                giver.id, receiver.id, rng.choice((250, 500, 1_000)) * 100,
                giver.default_currency,
                description=f"Grant from {giver.name} to {receiver.name}",
            )
            db.session.commit()
