"""The public JSON API (/api/v1/public/…), its OpenAPI document and its docs page."""

from flask import Blueprint

bp = Blueprint("api", __name__)


@bp.before_request
def _read_public_data() -> None:
    """Everything here is public: rows of active organisations may be read, none written."""
    from portal.services import tenancy

    tenancy.public_reading()

from portal.blueprints.api import proofs, routes  # noqa: E402, F401
