"""Signed checkpoints in public (/checkpoints, the well-known key) and their CLI commands."""

from flask import Blueprint

bp = Blueprint("checkpoints", __name__, cli_group="checkpoints")


@bp.before_request
def _read_public_data() -> None:
    from portal.services import tenancy

    tenancy.public_reading()


from portal.blueprints.checkpoints import cli, routes  # noqa: E402, F401
