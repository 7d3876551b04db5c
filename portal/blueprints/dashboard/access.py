"""Who reaches a dashboard page: the one decorator every organisation route carries."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Response, abort, current_app, g, redirect, request, url_for
from flask_login import current_user

from portal.models import Membership, Organisation
from portal.services import organisations, permissions, tenancy
from portal.services.errors import NotFound

P = ParamSpec("P")
R = TypeVar("R")


def signed_in(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Anonymous visitors go to the sign-in page (htmx requests get a redirect header)."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if not current_user.is_authenticated:
            target = url_for("account.login", next=request.full_path.rstrip("?"))
            if getattr(request, "htmx", False):
                return Response(status=401, headers={"HX-Redirect": target})
            return redirect(target)  # type: ignore[return-value]
        tenancy.for_user(current_user.id)
        return view(*args, **kwargs)

    return wrapper


def for_members(action: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """A page of the organisation named ``org`` in the URL, for members allowed ``action``.

    Non-members get "not found" (an organisation's existence is nobody else's
    business); members whose role does not allow the action get 403 with the reason;
    where the action needs two-factor sign-in and it is off, they are sent to set it
    up. The request's database scope becomes that organisation.
    """
    if action not in permissions.ACTIONS:
        raise ValueError(f"unknown action {action!r}")

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        @signed_in
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            slug = str(kwargs.get("org", ""))
            organisation = _member_organisation(slug)
            tenancy.for_organisations([organisation.id], user_id=current_user.id)
            try:
                membership = permissions.require(current_user.id, organisation.id, action)
            except permissions.MfaRequired as refused:
                return to_mfa_setup(refused)
            g.organisation, g.membership = organisation, membership
            return view(*args, **kwargs)

        wrapper.required_action = action  # type: ignore[attr-defined]
        return wrapper

    return decorate


def to_mfa_setup(refused: permissions.MfaRequired) -> Response:
    """A page that needs two-factor sign-in sends its visitor to set it up and come back;
    anything else (a form, an htmx request) is refused with the reason."""
    if (request.method == "GET" and not getattr(request, "htmx", False)
            and "account.mfa_setup" in current_app.view_functions):
        target = url_for("account.mfa_setup", next=request.full_path.rstrip("?"),
                         reason=refused.message)
        return redirect(target)  # type: ignore[return-value]
    raise refused


def _member_organisation(slug: str) -> Organisation:
    try:
        organisation = organisations.find_organisation(slug)
    except NotFound:
        abort(404)
    if permissions.membership(current_user.id, organisation.id) is None:
        abort(404)
    return organisation


def current_membership() -> Membership:
    return g.membership  # type: ignore[no-any-return]


def member_may(action: str) -> bool:
    """Whether the member viewing this organisation page may take ``action`` (navigation
    and buttons; the routes and services check again)."""
    membership = g.get("membership")
    return membership is not None and permissions.allowed(membership.role, action)
