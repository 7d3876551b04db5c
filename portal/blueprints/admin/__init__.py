"""Platform administration: the queue of organisations waiting for approval."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from portal.blueprints.admin import routes  # noqa: E402, F401
