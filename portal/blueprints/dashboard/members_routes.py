"""Members and invitations."""

from __future__ import annotations

from flask import Response, abort, g, url_for
from flask_login import current_user

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import current_membership, for_members
from portal.blueprints.dashboard.forms import EmptyForm, InviteForm, RoleForm
from portal.blueprints.dashboard.responses import changed, refused
from portal.models import ROLES
from portal.services import members
from portal.services.errors import DomainError
from portal.web import render


def _organisation_id() -> str:
    return str(g.organisation.id)


def _invite_form() -> InviteForm:
    # Only owners may make owners, so only they are offered the role.
    allowed = ROLES if current_membership().role == "owner" else tuple(
        r for r in ROLES if r != "owner")
    return InviteForm(roles=allowed, data={"role": "viewer"})


def _members_page(form: InviteForm, *, status: int = 200,
                  error: DomainError | None = None) -> Response:
    page = members.members_page(current_user.id, _organisation_id())
    if status != 200:
        return refused("dashboard/members.html", "invite_form", form, error, page=page,
                       role_form=RoleForm(formdata=None))
    return render("dashboard/members.html", "invite_form", form=form, page=page,
                  role_form=RoleForm(formdata=None))


@bp.get("/<org>/members")
@for_members("manage_members")
def members_list(org: str) -> Response:
    return _members_page(_invite_form())


@bp.post("/<org>/members/invite")
@for_members("manage_members")
def invite_member(org: str) -> Response:
    form = _invite_form()
    if not form.validate_on_submit():
        return _members_page(form, status=422)
    try:
        members.invite(current_user.id, _organisation_id(), form.email.data or "",
                       form.role.data or "")
    except DomainError as error:
        return _members_page(form, status=422, error=error)
    return changed(url_for(".members_list", org=org),
                   f"An invitation is on its way to {form.email.data}. The link works for "
                   f"{members.INVITATION_DAYS} days.")


@bp.post("/<org>/members/<user_id>/role")
@for_members("manage_members")
def change_role(org: str, user_id: str) -> Response:
    form = RoleForm()
    if not form.validate_on_submit():
        return render("dashboard/members.html", "members_table", status=422,
                      form=_invite_form(), role_form=form, role_error_for=user_id,
                      page=members.members_page(current_user.id, _organisation_id()))
    members.change_role(current_user.id, _organisation_id(), user_id, form.role.data or "")
    if user_id == current_user.id and form.role.data not in {"owner", "admin"}:
        return changed(url_for(".overview", org=org), f"Your role is now {form.role.data}.")
    return changed(url_for(".members_list", org=org), "The role is changed.")


@bp.post("/<org>/members/<user_id>/remove")
@for_members("manage_members")
def remove_member(org: str, user_id: str) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    members.remove_member(current_user.id, _organisation_id(), user_id)
    if user_id == current_user.id:
        return changed(url_for(".home"), f"You have left {g.organisation.name}.")
    return changed(url_for(".members_list", org=org), "The member is removed.")


@bp.post("/<org>/invitations/<invitation_id>/revoke")
@for_members("manage_members")
def revoke_invitation(org: str, invitation_id: str) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    members.revoke_invitation(current_user.id, _organisation_id(), invitation_id)
    return changed(url_for(".members_list", org=org),
                   "The invitation is revoked; its link no longer works.")


