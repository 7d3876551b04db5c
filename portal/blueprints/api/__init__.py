"""The public JSON API (/api/v1/public/…), its OpenAPI document and its docs page."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from portal.blueprints.api import routes  # noqa: E402, F401
