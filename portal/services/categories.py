"""An organisation's spending categories: a stable slug (what the ledger records) and a
label for people. Categories are archived, never deleted, so old entries keep theirs."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Category
from portal.services import activity, permissions, tenancy
from portal.services.errors import Conflict, DomainError, NotFound
from portal.services.ledger import CATEGORY_RE
from portal.services.transactions import one_transaction

LABEL_MAX = 80

#: Every new organisation starts with these (slug, label).
DEFAULT_CATEGORIES = (
    ("programs", "Programs"),
    ("salaries", "Salaries"),
    ("rent", "Rent"),
    ("equipment", "Equipment"),
    ("travel", "Travel"),
    ("fundraising", "Fundraising"),
    ("operations", "Operations"),
    ("training", "Training"),
    ("payment-fees", "Payment fees"),
    ("legal", "Legal"),
)


class InvalidCategory(DomainError):
    status_code = 422


class CategoryNotFound(NotFound):
    pass


@dataclass(frozen=True)
class CategoryView:
    slug: str
    label: str
    archived: bool


def add_defaults(organisation_id: str) -> None:
    """Give a new organisation the default list (flushes; the caller commits)."""
    db.session.add_all(Category(organisation_id=organisation_id, slug=slug, label=label)
                       for slug, label in DEFAULT_CATEGORIES)
    db.session.flush()


def slug_for(label: str) -> str:
    """``"Office & supplies"`` → ``"office-supplies"``: the ledger's category format."""
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:64].strip("-")


def list_categories(organisation_id: str) -> list[CategoryView]:
    """Every category, active ones first, each group by label."""
    rows = db.session.scalars(
        tenancy.organisation_rows(Category, organisation_id)
        .order_by(Category.archived_at.is_not(None), sa.func.lower(Category.label))
    )
    return [CategoryView(c.slug, c.label, c.archived_at is not None) for c in rows]


def active_categories(organisation_id: str) -> list[CategoryView]:
    return [c for c in list_categories(organisation_id) if not c.archived]


def labels(organisation_id: str) -> dict[str, str]:
    """Slug → label, archived ones included (old entries still name them)."""
    return {c.slug: c.label for c in list_categories(organisation_id)}


def _clean_label(label: str) -> str:
    label = " ".join(label.split())
    if not label:
        raise InvalidCategory("Enter a name for the category.", field="label")
    if len(label) > LABEL_MAX:
        raise InvalidCategory(f"Use at most {LABEL_MAX} characters.", field="label")
    return label


def _get(organisation_id: str, slug: str) -> Category:
    found: Category | None = db.session.scalar(
        tenancy.organisation_rows(Category, organisation_id).where(Category.slug == slug))
    if found is None:
        raise CategoryNotFound("There is no such category in this organisation.")
    return found


def add_category(actor_id: str, organisation_id: str, label: str) -> CategoryView:
    permissions.require(actor_id, organisation_id, "manage_settings")
    label = _clean_label(label)
    slug = slug_for(label)
    if not CATEGORY_RE.match(slug):
        raise InvalidCategory("Use at least one letter or digit in the name.", field="label")
    existing = db.session.scalar(
        tenancy.organisation_rows(Category, organisation_id).where(Category.slug == slug))
    if existing is not None:
        state = " (archived: restore it instead)" if existing.archived_at else ""
        raise Conflict(f"The category “{existing.label}” exists already{state}.",
                       field="label")
    with one_transaction():
        db.session.add(Category(organisation_id=organisation_id, slug=slug, label=label))
        activity.record(organisation_id, actor_id, "category_added", slug, label=label)
    return CategoryView(slug, label, False)


def relabel_category(actor_id: str, organisation_id: str, slug: str, label: str) -> None:
    """A new label for people; the slug the ledger records stays."""
    permissions.require(actor_id, organisation_id, "manage_settings")
    label = _clean_label(label)
    category = _get(organisation_id, slug)
    if category.label == label:
        return
    with one_transaction():
        old = category.label
        category.label = label
        activity.record(organisation_id, actor_id, "category_relabelled", slug,
                        old_label=old, label=label)


def archive_category(actor_id: str, organisation_id: str, slug: str) -> None:
    """No longer offered for new expenses; entries that name it keep it."""
    permissions.require(actor_id, organisation_id, "manage_settings")
    category = _get(organisation_id, slug)
    if category.archived_at is not None:
        raise Conflict(f"The category “{category.label}” is archived already.")
    with one_transaction():
        category.archived_at = datetime.now(UTC)
        activity.record(organisation_id, actor_id, "category_archived", slug)


def restore_category(actor_id: str, organisation_id: str, slug: str) -> None:
    permissions.require(actor_id, organisation_id, "manage_settings")
    category = _get(organisation_id, slug)
    if category.archived_at is None:
        raise Conflict(f"The category “{category.label}” is in use already.")
    with one_transaction():
        category.archived_at = None
        activity.record(organisation_id, actor_id, "category_restored", slug)


def require_active(organisation_id: str, slug: str, field: str = "category") -> Category:
    """The category, if new entries may use it."""
    found: Category | None = db.session.scalar(
        tenancy.organisation_rows(Category, organisation_id).where(Category.slug == slug))
    if found is None or found.archived_at is not None:
        raise InvalidCategory("Choose one of the organisation's categories.", field=field)
    return found
