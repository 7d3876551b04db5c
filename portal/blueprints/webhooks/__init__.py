"""Webhooks from Stripe. Exempt from CSRF: Stripe's signature authenticates each one."""

from flask import Blueprint

from portal.extensions import csrf

bp = Blueprint("webhooks", __name__)
csrf.exempt(bp)

from portal.blueprints.webhooks import routes  # noqa: E402, F401
