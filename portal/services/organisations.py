"""Organisations: creating them (with their General Fund and ledger), finding them, listing them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Required, TypedDict, Unpack

import sqlalchemy as sa

from portal.extensions import db
from portal.ids import new_id
from portal.models import Fund, LedgerHead, Membership, Organisation
from portal.money import is_known_currency
from portal.services import tenancy
from portal.services.errors import DomainError, NotFound

SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


class OrganisationNotFound(NotFound):
    pass


class InvalidOrganisation(DomainError):
    pass


class OrganisationGone(DomainError):
    status_code = 410


@dataclass(frozen=True, slots=True)
class OrganisationSummary:
    id: str
    slug: str
    name: str
    status: str
    country: str
    default_currency: str
    entry_count: int
    head_hash: str | None
    last_entry_at: str | None


def slugify(text: str) -> str:
    """``"Café Zürich — Food Bank"`` → ``"cafe-zurich-food-bank"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:60].strip("-") or "organisation"


def _unique_slug(base: str) -> str:
    taken = set(
        db.session.scalars(
            sa.select(Organisation.slug).where(
                sa.or_(Organisation.slug == base, Organisation.slug.like(f"{base}-%"))
            )
        )
    )
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


class OrganisationDetails(TypedDict, total=False):
    name: Required[str]
    country: Required[str]
    default_currency: Required[str]
    slug: str | None
    legal_name: str
    description: str
    website: str
    status: str
    owner_user_id: str | None


def create_organisation(**details: Unpack[OrganisationDetails]) -> Organisation:
    """Create an organisation with its General Fund and an empty ledger; commit."""
    organisation = add_organisation(**details)
    db.session.commit()
    return organisation


def add_organisation(
    *,
    name: str,
    country: str,
    default_currency: str,
    slug: str | None = None,
    legal_name: str = "",
    description: str = "",
    website: str = "",
    status: str = "pending",
    owner_user_id: str | None = None,
) -> Organisation:
    """``create_organisation`` without the commit, for use cases that do more at once."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidOrganisation("a name of 1 to 200 characters is needed", field="name")
    country = country.strip().upper()
    if not COUNTRY_RE.match(country):
        raise InvalidOrganisation("country must be a two-letter ISO 3166 code", field="country")
    currency = default_currency.strip().upper()
    if not is_known_currency(currency):
        raise InvalidOrganisation(f"unknown currency {default_currency!r}",
                                  field="default_currency")
    if status not in {"pending", "active", "suspended"}:
        raise InvalidOrganisation(f"unknown status {status!r}", field="status")
    if slug is None:
        slug = _unique_slug(slugify(name))
    elif not SLUG_RE.match(slug) or len(slug) > 64:
        raise InvalidOrganisation(
            "the address name may hold lowercase letters, digits and single dashes",
            field="slug",
        )
    elif db.session.scalar(sa.select(Organisation.id).where(Organisation.slug == slug)):
        raise InvalidOrganisation(f"the address name {slug!r} is taken", field="slug")
    organisation_id = new_id("org")
    tenancy.include(organisation_id)
    organisation = Organisation(
        id=organisation_id, slug=slug, name=name, legal_name=legal_name.strip(),
        country=country, default_currency=currency, status=status,
        description=description.strip(), website=website.strip(),
    )
    db.session.add(organisation)
    db.session.flush()  # the database opens the organisation's ledger head here
    db.session.add(Fund(id=new_id("fund"), organisation_id=organisation.id,
                        name="General Fund", type="general",
                        description="Money not given for a particular purpose."))
    if owner_user_id is not None:
        db.session.add(Membership(organisation_id=organisation.id, user_id=owner_user_id,
                                  role="owner"))
    db.session.flush()
    return organisation


def find_organisation(reference: str) -> Organisation:
    """Find an organisation by id (``org_…``) or slug."""
    column = Organisation.id if reference.startswith("org_") else Organisation.slug
    organisation = db.session.scalar(sa.select(Organisation).where(column == reference))
    if organisation is None:
        raise OrganisationNotFound(f"no organisation {reference!r}")
    return organisation


def find_public_organisation(reference: str) -> Organisation:
    """An organisation the public may see: unknown and pending ones are not found,
    suspended ones are gone."""
    organisation = find_organisation(reference)
    if organisation.status == "suspended":
        raise OrganisationGone(
            "This organisation has been suspended and its pages are no longer public.")
    if organisation.status != "active":
        raise OrganisationNotFound(f"no organisation {reference!r}")
    return organisation


def list_organisations(*, status: str | None = None) -> list[OrganisationSummary]:
    query = (
        sa.select(Organisation, LedgerHead)
        .join(LedgerHead, LedgerHead.organisation_id == Organisation.id)
        .order_by(Organisation.name)
    )
    if status is not None:
        query = query.where(Organisation.status == status)
    return [
        OrganisationSummary(
            org.id, org.slug, org.name, org.status, org.country, org.default_currency,
            head.sequence, head.entry_hash, head.timestamp,
        )
        for org, head in db.session.execute(query)
    ]


def general_fund_id(organisation_id: str) -> str:
    fund_id = db.session.scalar(
        sa.select(Fund.id).where(Fund.organisation_id == organisation_id, Fund.type == "general")
    )
    if fund_id is None:
        raise OrganisationNotFound(f"no organisation {organisation_id!r}")
    return fund_id
