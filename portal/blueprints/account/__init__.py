"""Accounts: signing up, in and out, passwords, two-factor sign-in, sessions, security log."""

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.record_once
def _register_dev_pages(state: BlueprintSetupState) -> None:
    # The outbox page answers only in debug mode; see dev.py.
    from portal.blueprints.account.dev import bp as dev_bp

    state.app.register_blueprint(dev_bp)


from portal.blueprints.account import routes  # noqa: E402, F401
