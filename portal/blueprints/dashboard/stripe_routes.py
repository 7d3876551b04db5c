"""Connecting the organisation's own Stripe account (Account Links, as Stripe recommends)."""

from __future__ import annotations

from flask import Response, flash, g, redirect, url_for

from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import for_members
from portal.services import stripe_accounts


def _onboarding(org: str) -> Response:
    """Send the member to Stripe's onboarding for the organisation's account."""
    target = stripe_accounts.connect_stripe(
        str(g.organisation.id),
        return_url=url_for(".stripe_return", org=org, _external=True),
        refresh_url=url_for(".stripe_refresh", org=org, _external=True))
    return redirect(target, 303)  # type: ignore[return-value]


@bp.post("/<org>/stripe/connect")
@for_members("connect_payments")
def connect_stripe(org: str) -> Response:
    return _onboarding(org)


@bp.get("/<org>/stripe/refresh")
@for_members("connect_payments")
def stripe_refresh(org: str) -> Response:
    """Stripe sends people here when an onboarding link has expired: make a new one."""
    return _onboarding(org)


@bp.get("/<org>/stripe/return")
@for_members("connect_payments")
def stripe_return(org: str) -> Response:
    """Back from Stripe: ask it how the account stands now, and say so."""
    try:
        status = stripe_accounts.refresh_stripe_status(str(g.organisation.id))
    except stripe_accounts.NotConnected as exc:
        flash(exc.message, "error")
    else:
        if status.can_take_payments:
            flash("Stripe is connected: the organisation can take donations.", "success")
        else:
            flash("Stripe still needs some details before the organisation can take "
                  "donations: continue the setup when you have them.", "error")
    return redirect(url_for(".overview", org=org), 303)  # type: ignore[return-value]
