"""Members and invitations: who belongs to an organisation, with which role.

Invitations are sent by email with a signed link that expires after seven days; only
the invited address can accept one, once, while signed in. Owners are special: only
owners make or demote owners, and the last owner can neither leave nor be demoted, so
an organisation always has someone who can manage it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.ids import new_id
from portal.models import ROLES, Invitation, Membership, Organisation, User
from portal.services import accounts, activity, mail, permissions, tenancy, tokens
from portal.services.errors import Conflict, DomainError, NotFound
from portal.services.permissions import Forbidden
from portal.services.transactions import one_transaction

INVITATION_DAYS = 7
LINK_PURPOSE = "invitation"
ROLE_LABELS = {
    "owner": "Owner: everything, including making and demoting owners",
    "admin": "Admin: everything except changing owners",
    "finance": "Finance: submit and approve expenses, corrections, transfers, funds",
    "viewer": "Viewer: the dashboard and the public view of every entry",
    "auditor": "Auditor: every entry in full, exports and reports; changes nothing",
}


class InvalidMembership(DomainError):
    status_code = 422


class MemberNotFound(NotFound):
    pass


class LastOwner(Conflict):
    """The change would leave the organisation without an owner."""


@dataclass(frozen=True)
class MemberView:
    user_id: str
    name: str
    email: str
    role: str
    since: datetime
    mfa_enabled: bool


@dataclass(frozen=True)
class InvitationView:
    id: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class MembersPage:
    members: list[MemberView]
    invitations: list[InvitationView]


@dataclass(frozen=True)
class InvitationOffer:
    """What an invitation link offers the person who follows it."""

    organisation_name: str
    organisation_slug: str
    role: str
    invited_by: str
    #: The invited address as the person may see it (masked if it is not theirs).
    email_shown: str
    for_this_account: bool


def members_page(actor_id: str, organisation_id: str) -> MembersPage:
    permissions.require(actor_id, organisation_id, "manage_members")
    members = db.session.execute(
        tenancy.organisation_rows(Membership, organisation_id)
        .add_columns(User).join(User, User.id == Membership.user_id)
        .order_by(sa.case({role: index for index, role in enumerate(ROLES)},
                          value=Membership.role), sa.func.lower(User.email))).all()
    inviter = aliased(User)
    now = datetime.now(UTC)
    invitations = db.session.execute(
        tenancy.organisation_rows(Invitation, organisation_id)
        .add_columns(inviter.display_name, inviter.email)
        .outerjoin(inviter, inviter.id == Invitation.invited_by)
        .where(Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
               Invitation.expires_at > now)
        .order_by(Invitation.created_at.desc())).all()
    return MembersPage(
        [MemberView(m.user_id, u.display_name or u.email, u.email, m.role, m.created_at,
                    u.mfa_enabled) for m, u in members],
        [InvitationView(i.id, i.email, i.role, name or email or "a former member",
                        i.created_at, i.expires_at) for i, name, email in invitations],
    )


def _owner_ids(organisation_id: str) -> list[str]:
    """The owners, locked so that two changes cannot each remove a different last owner."""
    return list(db.session.scalars(
        tenancy.organisation_rows(Membership, organisation_id)
        .with_only_columns(Membership.user_id)
        .where(Membership.role == "owner")
        .order_by(Membership.user_id).with_for_update()))


def _membership(organisation_id: str, user_id: str) -> Membership:
    found: Membership | None = db.session.scalar(
        tenancy.organisation_rows(Membership, organisation_id)
        .where(Membership.user_id == user_id))
    if found is None:
        raise MemberNotFound("This person is not a member of the organisation.")
    return found


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidMembership("Choose a role.", field="role")


def invite(actor_id: str, organisation_id: str, email: str, role: str) -> str:
    """Send an invitation by email; its id. Only owners invite owners."""
    membership = permissions.require(actor_id, organisation_id, "manage_members")
    _check_role(role)
    if role == "owner" and membership.role != "owner":
        raise Forbidden("Only owners can make someone an owner.")
    try:
        email = accounts.normalise_email(email)
    except accounts.InvalidAccount as error:
        raise InvalidMembership(error.message, field="email") from error
    already = db.session.scalar(
        tenancy.organisation_rows(Membership, organisation_id)
        .join(User, User.id == Membership.user_id)
        .where(sa.func.lower(User.email) == email.lower()))
    if already is not None:
        raise Conflict(f"{email} is a member already.", field="email")
    open_invitation = db.session.scalar(
        tenancy.organisation_rows(Invitation, organisation_id).where(
            sa.func.lower(Invitation.email) == email.lower(),
            Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
            Invitation.expires_at > datetime.now(UTC)))
    if open_invitation is not None:
        raise Conflict(f"An invitation to {email} is waiting already; revoke it to send a "
                       "new one.", field="email")
    organisation = db.session.get(Organisation, organisation_id)
    assert organisation is not None  # the membership above was found
    inviter = db.session.get(User, actor_id)
    invitation_id = new_id("inv")
    now = datetime.now(UTC)
    with one_transaction():
        db.session.add(Invitation(
            id=invitation_id, organisation_id=organisation_id, email=email, role=role,
            invited_by=actor_id, expires_at=now + timedelta(days=INVITATION_DAYS)))
        activity.record(organisation_id, actor_id, "member_invited", invitation_id,
                        email=email, role=role)
        token = tokens.make(LINK_PURPOSE, {"inv": invitation_id, "org": organisation_id})
        link = _accept_link(token)
        who = (inviter.display_name or inviter.email) if inviter else "A member"
        # Sent before the commit: if it cannot be sent, nothing is recorded either.
        mail.send(email, f"Join {organisation.name} on {current_app.config['PORTAL_NAME']}",
                  f"{who} invites you to join {organisation.name} as {role}.\n\n"
                  f"Accept the invitation here (the link works for {INVITATION_DAYS} days, "
                  f"once, for the address {email}):\n\n{link}\n\n"
                  "If you do not know this organisation, ignore this message.\n")
    return invitation_id


def _accept_link(token: str) -> str:
    """The invitation's address, as the public reaches the portal (no request needed)."""
    path = current_app.url_map.bind("portal.invalid").build(
        "dashboard.accept_invitation", {"token": token})
    return str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/") + path


def revoke_invitation(actor_id: str, organisation_id: str, invitation_id: str) -> None:
    permissions.require(actor_id, organisation_id, "manage_members")
    invitation = db.session.scalar(
        tenancy.organisation_rows(Invitation, organisation_id)
        .where(Invitation.id == invitation_id).with_for_update())
    if invitation is None:
        raise MemberNotFound("There is no such invitation.")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation has been accepted already.")
    if invitation.revoked_at is not None:
        raise Conflict("This invitation has been revoked already.")
    with one_transaction():
        invitation.revoked_at = datetime.now(UTC)
        activity.record(organisation_id, actor_id, "invitation_revoked", invitation_id,
                        email=invitation.email)


def _mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"


def _invitation_for(token: str, *, lock: bool = False) -> tuple[Invitation, Organisation]:
    """The invitation a genuine, young enough link names, in this request's scope."""
    payload = tokens.read(LINK_PURPOSE, token, max_age=INVITATION_DAYS * 24 * 3600)
    if not isinstance(payload, dict) or not {"inv", "org"} <= payload.keys():
        raise tokens.InvalidToken("This link is not valid. Check that it was copied in full.")
    # The signed link is the proof: its organisation joins this request's scope.
    tenancy.include(str(payload["org"]))
    query = tenancy.organisation_rows(Invitation, str(payload["org"])).where(
        Invitation.id == str(payload["inv"]))
    invitation = db.session.scalar(query.with_for_update() if lock else query)
    organisation = db.session.get(Organisation, str(payload["org"]))
    if invitation is None or organisation is None:
        raise tokens.InvalidToken("This invitation no longer exists.")
    if invitation.revoked_at is not None:
        raise tokens.InvalidToken("This invitation has been revoked. Ask for a new one.")
    if invitation.accepted_at is not None:
        raise tokens.InvalidToken("This invitation has been used already.")
    if invitation.expires_at <= datetime.now(UTC):
        raise tokens.InvalidToken("This invitation has expired. Ask for a new one.")
    return invitation, organisation


def invitation_offer(user_id: str, token: str) -> InvitationOffer:
    invitation, organisation = _invitation_for(token)
    user = db.session.get(User, user_id)
    mine = user is not None and user.email.lower() == invitation.email.lower()
    inviter = db.session.get(User, invitation.invited_by) if invitation.invited_by else None
    return InvitationOffer(
        organisation.name, organisation.slug, invitation.role,
        (inviter.display_name or inviter.email) if inviter else "A former member",
        invitation.email if mine else _mask(invitation.email), mine)


def accept_invitation(user_id: str, token: str) -> str:
    """Join the organisation the invitation is for; its slug."""
    with one_transaction():
        invitation, organisation = _invitation_for(token, lock=True)
        user = db.session.get(User, user_id)
        if user is None or user.email.lower() != invitation.email.lower():
            raise Forbidden(f"This invitation was sent to {_mask(invitation.email)}. Sign in "
                            "with that address to accept it.")
        if user.email_confirmed_at is None:
            raise Forbidden("Confirm your email address first, then follow the link again.")
        if permissions.membership(user_id, organisation.id) is not None:
            raise Conflict(f"You are a member of {organisation.name} already.")
        db.session.add(Membership(organisation_id=organisation.id, user_id=user_id,
                                  role=invitation.role))
        invitation.accepted_at = datetime.now(UTC)
        invitation.accepted_by = user_id
        db.session.flush()
        activity.record(organisation.id, user_id, "invitation_accepted", invitation.id,
                        role=invitation.role)
        accounts.log(user_id, "joined_organisation", organisation_id=organisation.id,
                     role=invitation.role)
    return organisation.slug


def change_role(actor_id: str, organisation_id: str, user_id: str, role: str) -> None:
    membership = permissions.require(actor_id, organisation_id, "manage_members")
    _check_role(role)
    with one_transaction():
        owners = _owner_ids(organisation_id)
        target = _membership(organisation_id, user_id)
        if target.role == role:
            return
        if "owner" in (target.role, role) and membership.role != "owner":
            raise Forbidden("Only owners can make or demote owners.")
        if target.role == "owner" and owners == [user_id]:
            raise LastOwner("This is the organisation's last owner: make someone else an "
                            "owner first.")
        old = target.role
        target.role = role
        db.session.flush()
        activity.record(organisation_id, actor_id, "member_role_changed", user_id,
                        old_role=old, role=role)
        accounts.log(user_id, "organisation_role_changed", organisation_id=organisation_id,
                     old_role=old, role=role, by=actor_id)


def _remove(actor_id: str, organisation_id: str, user_id: str, action: str) -> None:
    owners = _owner_ids(organisation_id)
    target = _membership(organisation_id, user_id)
    if target.role == "owner" and owners == [user_id]:
        raise LastOwner("This is the organisation's last owner: make someone else an owner "
                        "first.")
    role = target.role
    db.session.delete(target)
    db.session.flush()
    activity.record(organisation_id, actor_id, action, user_id, role=role)
    accounts.log(user_id, "left_organisation" if action == "member_left"
                 else "removed_from_organisation", organisation_id=organisation_id, by=actor_id)


def remove_member(actor_id: str, organisation_id: str, user_id: str) -> None:
    membership = permissions.require(actor_id, organisation_id, "manage_members")
    with one_transaction():
        target = _membership(organisation_id, user_id)
        if target.role == "owner" and membership.role != "owner":
            raise Forbidden("Only owners can remove an owner.")
        _remove(actor_id, organisation_id, user_id,
                "member_left" if user_id == actor_id else "member_removed")


def leave(actor_id: str, organisation_id: str) -> None:
    """Leave the organisation (not as its last owner)."""
    permissions.require(actor_id, organisation_id, "view")
    with one_transaction():
        _remove(actor_id, organisation_id, actor_id, "member_left")
