"""Giving: the hosted donation pages, the payment step, the donor's thanks page with the
receipt (as a PDF too) and its proof, and the page that stops a monthly gift."""

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

bp = Blueprint("donate", __name__)


@bp.record_once
def _check_settings(state: BlueprintSetupState) -> None:
    from portal.services.donations import check_settings

    check_settings(state.app.config)


@bp.before_request
def _public_pages() -> None:
    """Donors are not signed in: public rows may be read; each page that works on one
    donation opens it by its id (``donations.open_donation``)."""
    from portal.services import donations, tenancy

    tenancy.public_reading()
    donations.close_donation()


from portal.blueprints.donate import routes  # noqa: E402, F401
