"""Members and invitations: the invited address accepts once; owners stay in charge."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from portal.extensions import db
from portal.models import Invitation, Membership, OrganisationEvent, SecurityEvent, User
from portal.services import members
from tests.dashboard.conftest import Browser, World

Browsers = Callable[[User | None], Browser]


def role_of(world: World, user: User) -> str | None:
    return db.session.scalar(sa.select(Membership.role).where(
        Membership.organisation_id == world.org.id, Membership.user_id == user.id))


def latest_link(app: Flask, address: str) -> str:
    outbox = Path(app.config["MAIL_OUTBOX"] or Path(app.instance_path) / "outbox")
    for path in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
        message = message_from_bytes(path.read_bytes())
        if message["To"] == address:
            body = message.get_payload(decode=True)
            assert isinstance(body, bytes)
            found = re.search(r"http://portal\.test(/dashboard/invitations/\S+)", body.decode())
            assert found, "no invitation link in the message"
            return found.group(1)
    raise AssertionError(f"no message to {address}")


def test_an_invitation_is_emailed_and_accepted_once_by_the_invited_address(
    app: Flask, world: World, browser: Browsers, create_user: Callable[..., User]
) -> None:
    admin = browser(world.members["admin"])
    sent = admin.post(f"/dashboard/{world.org.slug}/members/invite",
                      {"email": "New.Member@Example.org", "role": "finance"})
    assert sent.status_code == 303
    link = latest_link(app, "New.Member@example.org")
    page = admin.get(sent.headers["Location"]).get_data(as_text=True)
    assert "New.Member@example.org as finance" in page

    someone_else = browser(create_user(mfa=True))
    wrong = someone_else.get(link)
    assert wrong.status_code == 403
    assert "This invitation was sent to N…@example.org" in wrong.get_data(as_text=True)
    assert someone_else.post(link).status_code == 403

    invited_user = create_user(email="new.member@example.org")
    invited = browser(invited_user)
    offer = invited.get(link)
    assert offer.status_code == 200
    assert "invites you to join Riverside Food Bank as" in offer.get_data(as_text=True)
    joined = invited.post(link)
    assert joined.status_code == 303
    assert joined.headers["Location"] == f"/dashboard/{world.org.slug}"
    assert role_of(world, invited_user) == "finance"
    assert invited.get(f"/dashboard/{world.org.slug}").status_code == 200

    again = invited.post(link)
    assert again.status_code == 400
    assert "This invitation has been used already." in again.get_data(as_text=True)
    assert db.session.scalar(sa.select(SecurityEvent.event).where(
        SecurityEvent.user_id == invited_user.id, SecurityEvent.event == "joined_organisation"))


def test_an_expired_or_revoked_invitation_no_longer_works(
    world: World, browser: Browsers, create_user: Callable[..., User]
) -> None:
    stranger = browser(create_user(email="stranger@example.org"))
    link = f"/dashboard/invitations/{world.invitation_token}"
    invitation = db.session.get(Invitation, world.invitation_id)
    assert invitation is not None
    invitation.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    db.session.commit()
    expired = stranger.post(link)
    assert expired.status_code == 400
    assert "This invitation has expired" in expired.get_data(as_text=True)

    invitation.expires_at = datetime.now(UTC) + timedelta(days=1)
    db.session.commit()
    owner = browser(world.members["owner"])
    assert owner.post(f"/dashboard/{world.org.slug}/invitations/{world.invitation_id}/revoke"
                      ).status_code == 303
    revoked = stranger.get(link)
    assert revoked.status_code == 400
    assert "revoked" in revoked.get_data(as_text=True)
    assert stranger.user is not None
    assert not db.session.scalar(sa.select(Membership).where(
        Membership.organisation_id == world.org.id, Membership.user_id == stranger.user.id))


def test_a_link_older_than_seven_days_or_tampered_with_is_refused(
    app: Flask, world: World, browser: Browsers, create_user: Callable[..., User]
) -> None:
    stranger = browser(create_user(email="stranger@example.org"))
    tampered = stranger.get(f"/dashboard/invitations/{world.invitation_token[:-3]}abc")
    assert tampered.status_code == 400
    assert "not valid" in tampered.get_data(as_text=True)

    class EightDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - (members.INVITATION_DAYS + 1) * 86_400

    old_token = URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt=f"portal.{members.LINK_PURPOSE}", signer=EightDaysAgo,
    ).dumps({"inv": world.invitation_id, "org": world.org.id})
    old = stranger.get(f"/dashboard/invitations/{old_token}")
    assert old.status_code == 400
    assert "This link has expired" in old.get_data(as_text=True)


@pytest.mark.parametrize(("data", "status", "message"), [
    ({"email": "not an address", "role": "viewer"}, 422, "Enter a valid email address"),
    ({"email": "", "role": "viewer"}, 422, "This is needed."),
    ({"email": "x@example.org", "role": "king"}, 422, "Not a valid choice"),
    ({"email": "stranger@example.org", "role": "viewer"}, 422, "is waiting already"),
])
def test_the_invitation_form_says_what_is_wrong(
    world: World, browser: Browsers, data: dict[str, str], status: int, message: str
) -> None:
    before = db.session.scalar(sa.select(sa.func.count()).select_from(Invitation))
    response = browser(world.members["owner"]).post(
        f"/dashboard/{world.org.slug}/members/invite", data, htmx=True)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert message in body and body.lstrip().startswith('<form id="invite_form"')
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Invitation)) == before


def test_members_cannot_be_invited_twice(world: World, browser: Browsers) -> None:
    response = browser(world.members["owner"]).post(
        f"/dashboard/{world.org.slug}/members/invite",
        {"email": world.members["viewer"].email.upper(), "role": "viewer"})
    assert response.status_code == 422
    assert "is a member already" in response.get_data(as_text=True)


def test_only_owners_make_or_demote_owners(world: World, browser: Browsers) -> None:
    admin = browser(world.members["admin"])
    base = f"/dashboard/{world.org.slug}/members"
    promote = admin.post(f"{base}/{world.members['viewer'].id}/role", {"role": "owner"})
    assert promote.status_code == 403
    demote = admin.post(f"{base}/{world.members['owner'].id}/role", {"role": "viewer"})
    assert demote.status_code == 403
    remove = admin.post(f"{base}/{world.members['owner'].id}/remove")
    assert remove.status_code == 403
    invite = admin.post(f"{base}/invite", {"email": "boss@example.org", "role": "owner"})
    assert invite.status_code == 422  # the admin is not offered the owner role at all
    assert role_of(world, world.members["owner"]) == "owner"
    assert role_of(world, world.members["viewer"]) == "viewer"
    # Admins manage everyone else.
    assert admin.post(f"{base}/{world.members['viewer'].id}/role",
                      {"role": "auditor"}).status_code == 303
    assert role_of(world, world.members["viewer"]) == "auditor"
    owner = browser(world.members["owner"])
    assert owner.post(f"{base}/{world.members['admin'].id}/role",
                      {"role": "owner"}).status_code == 303
    assert role_of(world, world.members["admin"]) == "owner"
    logged = db.session.scalars(sa.select(OrganisationEvent.details).where(
        OrganisationEvent.action == "member_role_changed")).all()
    assert {"old_role": "admin", "role": "owner"} in logged


def test_the_last_owner_can_neither_leave_nor_be_demoted(
    world: World, browser: Browsers
) -> None:
    owner_user = world.members["owner"]
    owner = browser(owner_user)
    base = f"/dashboard/{world.org.slug}"
    for response in (owner.post(f"{base}/members/{owner_user.id}/role", {"role": "admin"}),
                     owner.post(f"{base}/members/{owner_user.id}/remove"),
                     owner.post(f"{base}/leave")):
        assert response.status_code == 409
        assert "last owner" in response.get_data(as_text=True)
    assert role_of(world, owner_user) == "owner"
    # With a second owner, the first may step down.
    assert owner.post(f"{base}/members/{world.members['admin'].id}/role",
                      {"role": "owner"}).status_code == 303
    assert owner.post(f"{base}/leave").status_code == 303
    assert role_of(world, owner_user) is None
    assert owner.get(base).status_code == 404


def test_members_are_removed_and_lose_access(world: World, browser: Browsers) -> None:
    viewer = world.members["viewer"]
    assert browser(viewer).get(f"/dashboard/{world.org.slug}").status_code == 200
    removed = browser(world.members["admin"]).post(
        f"/dashboard/{world.org.slug}/members/{viewer.id}/remove")
    assert removed.status_code == 303
    assert browser(viewer).get(f"/dashboard/{world.org.slug}").status_code == 404
    assert db.session.scalar(sa.select(SecurityEvent.event).where(
        SecurityEvent.user_id == viewer.id, SecurityEvent.event == "removed_from_organisation"))


def test_the_members_page_lists_roles_and_open_invitations(
    world: World, browser: Browsers, add_member: Callable[..., Any]
) -> None:
    page = browser(world.members["owner"]).get(f"/dashboard/{world.org.slug}/members")
    body = page.get_data(as_text=True)
    for user in world.members.values():
        assert user.email in body
    assert "stranger@example.org as viewer" in body
