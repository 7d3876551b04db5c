from __future__ import annotations

import sqlalchemy as sa
from flask import Response
from flask_login import current_user

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import signed_in
from portal.extensions import db
from portal.models import Membership, Organisation
from portal.web import render


@bp.get("/")
@signed_in
def home() -> Response:
    """The organisations this person belongs to."""
    rows = db.session.execute(
        sa.select(Organisation, Membership.role)
        .join(Membership, Membership.organisation_id == Organisation.id)
        .where(Membership.user_id == current_user.id)
        .order_by(Organisation.name)
    ).all()
    return render("dashboard/home.html", memberships=[(org, role) for org, role in rows])
