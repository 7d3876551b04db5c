"""The organisation's activity log: who changed what, and when (organisation_events)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.models import OrganisationEvent, User
from portal.services import permissions, tenancy

PAGE_SIZE = 50

#: What each recorded action means, for people reading the log.
ACTION_LABELS = {
    "organisation_applied": "applied to publish this organisation",
    "organisation_approved": "approved the organisation",
    "organisation_suspended": "suspended the organisation",
    "organisation_reactivated": "reactivated the organisation",
    "settings_changed": "changed the organisation's profile",
    "fund_created": "created a fund",
    "fund_updated": "edited a fund",
    "fund_archived": "archived a fund",
    "fund_restored": "restored a fund",
    "category_added": "added a category",
    "category_relabelled": "renamed a category",
    "category_archived": "archived a category",
    "category_restored": "restored a category",
    "expense_submitted": "submitted an expense",
    "expense_approved": "approved an expense",
    "expense_rejected": "rejected an expense",
    "expense_withdrawn": "withdrew an expense",
    "entry_reversed": "reversed a ledger entry",
    "expense_recategorized": "moved an expense to another category",
    "transfer_sent": "sent a transfer",
    "transfer_received": "received a transfer",
    "member_invited": "invited a member",
    "invitation_revoked": "revoked an invitation",
    "invitation_accepted": "accepted an invitation",
    "member_role_changed": "changed a member's role",
    "member_removed": "removed a member",
    "member_left": "left the organisation",
}


def record(organisation_id: str, actor_id: str | None, action: str, subject: str = "",
           **details: Any) -> None:
    """Add one event to the organisation's log (flushes; the use case commits)."""
    if action not in ACTION_LABELS:
        raise ValueError(f"unknown activity {action!r}")
    db.session.add(OrganisationEvent(organisation_id=organisation_id, actor_id=actor_id,
                                     action=action, subject=subject[:80], details=details))
    db.session.flush()


@dataclass(frozen=True)
class Activity:
    id: int
    created_at: datetime
    actor: str
    action: str
    label: str
    subject: str
    details: dict[str, Any]


@dataclass(frozen=True)
class ActivityPage:
    events: list[Activity]
    #: ``before=`` value for older events, when there are some.
    older: int | None


def _events(query: sa.Select[Any], limit: int) -> list[Activity]:
    rows = db.session.execute(
        query.add_columns(User.display_name, User.email)
        .outerjoin(User, User.id == OrganisationEvent.actor_id)
        .order_by(OrganisationEvent.id.desc()).limit(limit)
    ).all()
    return [
        Activity(event.id, event.created_at, name or email or "Someone no longer on the portal",
                 event.action, ACTION_LABELS.get(event.action, event.action), event.subject,
                 dict(event.details))
        for event, name, email in rows
    ]


def activity_page(actor_id: str, organisation_id: str, *, before: int | None = None,
                  page_size: int = PAGE_SIZE) -> ActivityPage:
    """The newest events (or those before event ``before``), newest first."""
    permissions.require(actor_id, organisation_id, "view_internal")
    query = tenancy.organisation_rows(OrganisationEvent, organisation_id)
    if before is not None:
        query = query.where(OrganisationEvent.id < before)
    events = _events(query, page_size + 1)
    older = events[page_size - 1].id if len(events) > page_size else None
    return ActivityPage(events[:page_size], older)


def history(admin_id: str, organisation_id: str, limit: int = 100) -> list[Activity]:
    """An organisation's latest events, for platform administrators."""
    from portal.services.organisations import require_platform_admin  # it logs here too

    require_platform_admin(admin_id)
    return _events(tenancy.organisation_rows(OrganisationEvent, organisation_id), limit)
