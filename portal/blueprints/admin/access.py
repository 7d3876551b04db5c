"""Who reaches the admin pages: platform administrators with two-factor sign-in."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Response
from flask_login import current_user

from portal.blueprints.dashboard.access import signed_in, to_mfa_setup
from portal.services import organisations, tenancy
from portal.services.permissions import MfaRequired

P = ParamSpec("P")
R = TypeVar("R")


def platform_admins(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Signed-in platform administrators only (others get 403 with the reason); the
    request may then see every organisation."""

    @functools.wraps(view)
    @signed_in
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        try:
            organisations.require_platform_admin(current_user.id)
        except MfaRequired as refused:
            return to_mfa_setup(refused)
        tenancy.platform()
        return view(*args, **kwargs)

    return wrapper
