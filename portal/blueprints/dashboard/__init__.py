"""The organisation dashboard: funds, expenses and approvals, corrections, transfers,
donations, members and settings, for members according to their role."""

from typing import Any

from flask import Blueprint, current_app, g
from werkzeug.exceptions import RequestEntityTooLarge

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@bp.context_processor
def _member_context() -> dict[str, Any]:
    """Organisation pages know their organisation, the member's role and what it allows."""
    from portal.blueprints.dashboard.access import member_may

    return {"org": g.get("organisation"), "membership": g.get("membership"),
            "member_may": member_may}


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error: RequestEntityTooLarge) -> Any:
    from portal.web import error_page

    limit = current_app.config["RECEIPT_MAX_BYTES"] // 1_048_576
    return error_page(413, f"The upload is too large: receipts may be at most {limit} MB. "
                           "Go back and choose a smaller file.")


from portal.blueprints.dashboard import (  # noqa: E402, F401
    expenses_routes,
    funds_routes,
    members_routes,
    money_routes,
    reports_routes,
    routes,
    stripe_routes,
)
