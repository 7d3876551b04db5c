"""The public directory of active organisations: search, country filter, sorting, cards."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from portal.extensions import db
from portal.models import LedgerHead, Organisation
from portal.services.errors import DomainError
from portal.services.figures import DONATION_TYPES, CurrencyFigures, currency_figures
from portal.services.verification import VerificationReport, last_reports

PAGE_SIZE = 24
SORTS = {
    "raised": "Most raised (in each organisation's main currency)",
    "recent": "Most recent activity",
    "name": "Name",
}


class InvalidDirectoryQuery(DomainError):
    pass


@dataclass(frozen=True)
class OrganisationCard:
    id: str
    slug: str
    name: str
    country: str
    description: str
    default_currency: str
    entry_count: int
    last_activity: str | None
    figures: list[CurrencyFigures]
    verification: VerificationReport | None


@dataclass(frozen=True)
class DirectoryPage:
    cards: list[OrganisationCard]
    total: int
    page: int
    pages: int
    search: str
    country: str
    sort: str


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def directory(*, search: str = "", country: str = "", sort: str = "raised",
              page: int = 1) -> DirectoryPage:
    search = search.strip()
    country = country.strip().upper()
    if sort not in SORTS:
        raise InvalidDirectoryQuery(f"unknown sort {sort!r}", field="sort")
    if len(search) > 100:
        raise InvalidDirectoryQuery("search for at most 100 characters", field="q")
    if country and (len(country) != 2 or not country.isalpha()):
        raise InvalidDirectoryQuery("a country is a two-letter code", field="country")
    if page < 1:
        raise InvalidDirectoryQuery("pages are numbered from 1", field="page")

    raised = (
        sa.select(sa.func.coalesce(sa.func.sum(sa.text("t.amount")), 0))
        .select_from(sa.text("ledger_totals t"))
        .where(sa.text("t.organisation_id = organisations.id"),
               sa.text("t.currency = organisations.default_currency"),
               sa.text("t.entry_type = ANY(:donation_types)"))
        .scalar_subquery()
    )
    query = (
        sa.select(Organisation, LedgerHead.sequence, LedgerHead.timestamp)
        .join(LedgerHead, LedgerHead.organisation_id == Organisation.id)
        .where(Organisation.status == "active")
    )
    if search:
        pattern = f"%{_escape_like(search)}%"
        query = query.where(sa.or_(
            Organisation.name.ilike(pattern, escape="\\"),
            Organisation.legal_name.ilike(pattern, escape="\\"),
            Organisation.description.ilike(pattern, escape="\\"),
        ))
    if country:
        query = query.where(Organisation.country == country)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    order = {
        "raised": (raised.desc(), Organisation.name),
        "recent": (LedgerHead.timestamp.desc().nulls_last(), Organisation.name),
        "name": (sa.func.lower(Organisation.name), Organisation.id),
    }[sort]
    rows = db.session.execute(
        query.order_by(*order).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE),
        {"donation_types": sorted(DONATION_TYPES)},
    ).all()
    ids = [row[0].id for row in rows]
    figures = currency_figures(ids) if ids else {}
    reports = last_reports(ids)
    cards = [
        OrganisationCard(
            org.id, org.slug, org.name, org.country, org.description, org.default_currency,
            sequence, timestamp, figures.get(org.id, []), reports.get(org.id),
        )
        for org, sequence, timestamp in rows
    ]
    pages = max(1, -(-total // PAGE_SIZE))
    return DirectoryPage(cards, total, page, pages, search, country, sort)


def countries() -> list[str]:
    """Countries that have at least one active organisation."""
    return list(db.session.scalars(
        sa.select(Organisation.country).where(Organisation.status == "active")
        .distinct().order_by(Organisation.country)
    ))
