"""Who may do what in an organisation: the one table, checked by routes and services alike."""

from __future__ import annotations

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Membership, User
from portal.services.errors import DomainError, NotFound

#: Every action a member can take, and what it means.
ACTIONS = {
    "view": "see the dashboard, the organisation's ledger and its figures",
    "view_internal": "see every entry in full, internal ones included",
    "export": "download the organisation's exports and donation lists",
    "submit_expense": "submit an expense for approval",
    "approve_expense": "approve or reject someone else's expense",
    "record_correction": "reverse an entry or recategorize an expense",
    "make_transfer": "transfer money to another organisation",
    "manage_funds": "create, edit and archive funds",
    "manage_members": "invite members, change roles, remove members",
    "manage_settings": "edit the organisation's profile and categories",
    "connect_payments": "connect and manage the organisation's Stripe account",
    "download_reports": "download audit reports",
}

_EVERYTHING = frozenset(ACTIONS)
#: The table. Owners and admins differ only in who may change owners (see members).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": _EVERYTHING,
    "admin": _EVERYTHING,
    "finance": frozenset({"view", "view_internal", "export", "submit_expense",
                          "approve_expense", "record_correction", "make_transfer",
                          "manage_funds", "download_reports"}),
    "viewer": frozenset({"view"}),
    "auditor": frozenset({"view", "view_internal", "export", "download_reports"}),
}
#: Actions that move or correct money, or change who may: two-factor sign-in first.
MFA_REQUIRED = frozenset({"submit_expense", "approve_expense", "record_correction",
                          "make_transfer", "manage_members"})


class NotAMember(NotFound):
    """Not a member: as far as this person can tell, the organisation is not there."""


class Forbidden(DomainError):
    status_code = 403


class MfaRequired(Forbidden):
    """The role allows it, but only once two-factor sign-in is on."""


def allowed(role: str, action: str) -> bool:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return action in ROLE_PERMISSIONS.get(role, frozenset())


def membership(user_id: str, organisation_id: str) -> Membership | None:
    return db.session.scalar(sa.select(Membership).where(
        Membership.user_id == user_id, Membership.organisation_id == organisation_id))


def require(user_id: str, organisation_id: str, action: str) -> Membership:
    """The person's membership, if it allows ``action``; otherwise a clear refusal."""
    found = membership(user_id, organisation_id)
    if found is None:
        raise NotAMember("no such organisation")
    if not allowed(found.role, action):
        raise Forbidden(f"As {found.role}, you may not {ACTIONS[action]}.")
    if action in MFA_REQUIRED:
        user = db.session.get(User, user_id)
        if user is None or not user.mfa_enabled:
            raise MfaRequired(
                f"Turn on two-factor sign-in before you {ACTIONS[action]}: it protects the "
                "organisation's money if your password is ever stolen.")
    return found
