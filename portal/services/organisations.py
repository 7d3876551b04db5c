"""Organisations: applying for and creating them (with their General Fund, default
categories and ledger), finding them, listing them, and the platform administrators'
decisions: approve, suspend, reactivate."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Required, TypedDict, Unpack
from urllib.parse import urlsplit

import sqlalchemy as sa

from portal.extensions import db
from portal.ids import new_id
from portal.models import Fund, LedgerHead, Membership, Organisation, User
from portal.money import is_known_currency
from portal.services import (
    accounts,
    activity,
    categories,
    ledger,
    permissions,
    public_ledger,
    tenancy,
)
from portal.services.errors import Conflict, DomainError, NotFound
from portal.services.permissions import Forbidden, MfaRequired
from portal.services.transactions import one_transaction

SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
#: Addresses the dashboard uses itself (/dashboard/apply …), never given to an organisation.
RESERVED_SLUGS = frozenset({"apply", "invitations", "new", "admin"})
LEGAL_NAME_MAX = 300
WEBSITE_MAX = 300
DESCRIPTION_MAX = 5000
REASON_MAX = 1000


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
    taken |= RESERVED_SLUGS
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
    elif not SLUG_RE.match(slug) or len(slug) > 64 or slug in RESERVED_SLUGS:
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
    categories.add_defaults(organisation.id)
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
    suspended ones are gone.

    Its ledger's head and its funds come in the same query: every public page of an
    organisation shows them, and ``ledger.get_head`` and ``public_ledger.public_funds``
    answer from them for the rest of the request.
    """
    statement = _PUBLIC_BY_ID if reference.startswith("org_") else _PUBLIC_BY_SLUG
    found = db.session.execute(statement, {"reference": reference}).one_or_none()
    if found is None:
        raise OrganisationNotFound(f"no organisation {reference!r}")
    organisation: Organisation = found[0]
    sequence, entry_hash, timestamp, funds = found[1:]
    if organisation.status == "suspended":
        raise OrganisationGone(
            "This organisation has been suspended and its pages are no longer public.")
    if organisation.status != "active":
        raise OrganisationNotFound(f"no organisation {reference!r}")
    if sequence is not None:
        ledger.remember_head(ledger.Head(organisation.id, sequence, entry_hash, timestamp))
    public_ledger.remember_funds(organisation.id, funds)
    return organisation


def _public_organisation(column: Any) -> sa.Select[Any]:
    return (
        sa.select(Organisation, LedgerHead.sequence, LedgerHead.entry_hash,
                  LedgerHead.timestamp, public_ledger.funds_column("organisations.id"))
        .outerjoin(LedgerHead, LedgerHead.organisation_id == Organisation.id)
        .where(column == sa.bindparam("reference"))
    )


_PUBLIC_BY_ID = _public_organisation(Organisation.id)
_PUBLIC_BY_SLUG = _public_organisation(Organisation.slug)


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


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """What an organisation says about itself (the application and the settings page)."""

    name: str
    country: str
    default_currency: str
    legal_name: str = ""
    description: str = ""
    website: str = ""


def _clean_profile(profile: Profile) -> Profile:
    """Checked and tidied; names the field of the first problem."""
    name = " ".join(profile.name.split())
    if not name or len(name) > 200:
        raise InvalidOrganisation("Enter a name of 1 to 200 characters.", field="name")
    country = profile.country.strip().upper()
    if not COUNTRY_RE.match(country):
        raise InvalidOrganisation("Choose the country where the organisation is registered.",
                                  field="country")
    currency = profile.default_currency.strip().upper()
    if not is_known_currency(currency):
        raise InvalidOrganisation("Choose the currency the organisation mostly works in.",
                                  field="default_currency")
    legal_name = " ".join(profile.legal_name.split())
    if len(legal_name) > LEGAL_NAME_MAX:
        raise InvalidOrganisation(f"Use at most {LEGAL_NAME_MAX} characters.",
                                  field="legal_name")
    description = profile.description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidOrganisation(f"Use at most {DESCRIPTION_MAX:,} characters.",
                                  field="description")
    website = profile.website.strip()
    if website:
        parts = urlsplit(website)
        if parts.scheme not in {"http", "https"} or "." not in parts.netloc or " " in website:
            raise InvalidOrganisation("Enter the full address, like https://example.org.",
                                      field="website")
        if len(website) > WEBSITE_MAX:
            raise InvalidOrganisation(f"Use at most {WEBSITE_MAX} characters.",
                                      field="website")
    return Profile(name, country, currency, legal_name, description, website)


def _free_slug(name: str) -> str:
    """An unused address name for ``name``. Slugs are unique across the portal, so this
    one query reads the slugs of every organisation, pending ones included."""
    with tenancy.scoped(replace(tenancy.current(), platform=True)):
        return _unique_slug(slugify(name))


def apply_for_organisation(user_id: str, profile: Profile) -> Organisation:
    """A signed-in person with a confirmed email address asks to publish an organisation.

    It starts ``pending`` (not public) with its General Fund, the default categories and
    the applicant as owner, until a platform administrator approves it.
    """
    user = db.session.get(User, user_id)
    if user is None or user.email_confirmed_at is None:
        raise Forbidden("Confirm your email address before applying: follow the link in the "
                        "message we sent when you registered.")
    profile = _clean_profile(profile)
    with one_transaction():
        try:
            organisation = add_organisation(
                name=profile.name, country=profile.country,
                default_currency=profile.default_currency, slug=_free_slug(profile.name),
                legal_name=profile.legal_name, description=profile.description,
                website=profile.website, status="pending", owner_user_id=user_id)
        except sa.exc.IntegrityError as taken:  # the same name, applied for at this moment
            raise Conflict("Another organisation took this address name a moment ago; "
                           "send the application again.", field="name") from taken
        activity.record(organisation.id, user_id, "organisation_applied", organisation.slug,
                        name=organisation.name)
        accounts.log(user_id, "organisation_applied", organisation_id=organisation.id)
    return organisation


def update_profile(actor_id: str, organisation_id: str, profile: Profile) -> list[str]:
    """Change the organisation's profile; the names of the fields that changed."""
    permissions.require(actor_id, organisation_id, "manage_settings")
    profile = _clean_profile(profile)
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise OrganisationNotFound("no such organisation")
    changed = [key for key in ("name", "country", "default_currency", "legal_name",
                               "description", "website")
               if getattr(organisation, key) != getattr(profile, key)]
    if not changed:
        return []
    with one_transaction():
        for key in changed:
            setattr(organisation, key, getattr(profile, key))
        activity.record(organisation_id, actor_id, "settings_changed", "", changed=changed)
    return changed


# --------------------------------------------------------------------------- administration

#: Decision → (statuses it applies to, the status it leads to, the activity recorded).
DECISIONS = {
    "approve": (("pending",), "active", "organisation_approved"),
    "suspend": (("pending", "active"), "suspended", "organisation_suspended"),
    "reactivate": (("suspended",), "active", "organisation_reactivated"),
}


@dataclass(frozen=True)
class QueueRow:
    id: str
    slug: str
    name: str
    legal_name: str
    country: str
    default_currency: str
    status: str
    description: str
    website: str
    created_at: datetime
    owners: list[str]
    entry_count: int


def require_platform_admin(user_id: str) -> User:
    """The person, if they administer the platform (with two-factor sign-in on)."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_platform_admin:
        raise Forbidden("Only the portal's administrators may do this.")
    if not user.mfa_enabled:
        raise MfaRequired("Turn on two-factor sign-in before administering the portal.")
    return user


def queue(admin_id: str, status: str, search: str = "", limit: int = 200) -> list[QueueRow]:
    """Organisations of one status for administrators: oldest application first for
    pending ones, by name otherwise."""
    require_platform_admin(admin_id)
    if status not in {"pending", "active", "suspended"}:
        raise InvalidOrganisation("Unknown status.", field="status")
    query = (sa.select(Organisation, LedgerHead.sequence)
             .join(LedgerHead, LedgerHead.organisation_id == Organisation.id)
             .where(Organisation.status == status))
    search = search.strip()
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        query = query.where(sa.or_(Organisation.name.ilike(pattern, escape="\\"),
                                   Organisation.slug.ilike(pattern, escape="\\")))
    order = (Organisation.created_at if status == "pending"
             else sa.func.lower(Organisation.name))
    return _queue_rows(query.order_by(order, Organisation.id).limit(limit))


def organisation_file(admin_id: str, organisation_id: str) -> QueueRow:
    """One organisation as administrators see it, whatever its status."""
    require_platform_admin(admin_id)
    rows = _queue_rows(sa.select(Organisation, LedgerHead.sequence)
                       .join(LedgerHead, LedgerHead.organisation_id == Organisation.id)
                       .where(Organisation.id == organisation_id))
    if not rows:
        raise OrganisationNotFound("There is no such organisation.")
    return rows[0]


def _queue_rows(query: sa.Select[Organisation, int]) -> list[QueueRow]:
    rows = db.session.execute(query).all()
    ids = [org.id for org, _ in rows]
    owners: dict[str, list[str]] = {}
    for organisation_id, email in db.session.execute(
            sa.select(Membership.organisation_id, User.email)
            .join(User, User.id == Membership.user_id)
            .where(Membership.organisation_id.in_(ids), Membership.role == "owner")
            .order_by(User.email)):
        owners.setdefault(organisation_id, []).append(email)
    return [QueueRow(org.id, org.slug, org.name, org.legal_name, org.country,
                     org.default_currency, org.status, org.description, org.website,
                     org.created_at, owners.get(org.id, []), int(count))
            for org, count in rows]


def decide(admin_id: str, organisation_id: str, decision: str, reason: str) -> Organisation:
    """Approve, suspend or reactivate an organisation, with the reason in its log."""
    require_platform_admin(admin_id)
    if decision not in DECISIONS:
        raise InvalidOrganisation("Unknown decision.", field="decision")
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidOrganisation("Give the reason for this decision; it is kept in the "
                                  "organisation's activity log.", field="reason")
    if len(reason) > REASON_MAX:
        raise InvalidOrganisation(f"Use at most {REASON_MAX:,} characters.", field="reason")
    allowed_from, status, action = DECISIONS[decision]
    with one_transaction():
        organisation = db.session.scalar(sa.select(Organisation).where(
            Organisation.id == organisation_id).with_for_update())
        if organisation is None:
            raise OrganisationNotFound("There is no such organisation.")
        if organisation.status not in allowed_from:
            raise Conflict(f"{organisation.name} is {organisation.status}; it cannot be "
                           f"{'reactivated' if decision == 'reactivate' else decision + 'd'}"
                           " now.")
        previous = organisation.status
        organisation.status = status
        db.session.flush()
        activity.record(organisation.id, admin_id, action, organisation.slug,
                        reason=reason, previous_status=previous)
        accounts.log(admin_id, action, organisation_id=organisation.id, reason=reason)
    return organisation
