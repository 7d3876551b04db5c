"""What everyone sees: the directory of organisations and their public ledgers."""

from flask import Blueprint

bp = Blueprint("public", __name__)


@bp.before_request
def _read_public_data() -> None:
    """Everything here is public: rows of active organisations may be read, none written."""
    from portal.services import tenancy

    tenancy.public_reading()

from portal.blueprints.public import routes  # noqa: E402, F401
