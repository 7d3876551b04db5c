"""Connecting an organisation's Stripe account: one account per organisation, a fresh
onboarding link each time, and the status kept from Stripe (on return, and from
``account.updated``)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Organisation, OrganisationStripeAccount, User
from portal.services import donations, stripe_accounts
from tests.conftest import csrf_token_from, sign_in_as
from tests.donations.conftest import Webhooks

RETURN_URL = "http://portal.test/dashboard/stripe/back"
REFRESH_URL = "http://portal.test/dashboard/stripe/again"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def open_link(url: str, *, post: bool = False) -> tuple[int, str, str]:
    """``(status, Location, body)`` of the simulator's onboarding page, as a browser sees it."""
    opener = urllib.request.build_opener(NoRedirects)
    request = urllib.request.Request(url, data=b"" if post else None,
                                     method="POST" if post else "GET")
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, "", response.read().decode()
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, answer.headers.get("Location", ""), answer.read().decode()


def test_an_owner_connects_stripe_through_its_onboarding(
    create_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = create_org(name="Harbour Kitchen", website="https://harbour-kitchen.example")
    assert stripe_accounts.stripe_status(org.id) == stripe_accounts.NOT_CONNECTED
    url = stripe_accounts.connect_stripe(org.id, RETURN_URL, REFRESH_URL)
    status = stripe_accounts.stripe_status(org.id)
    assert status.connected and status.account_id is not None
    assert (status.charges_enabled, status.payouts_enabled) == (False, False)
    assert not donations.donate_state(org.id).can_donate

    code, _, page = open_link(url)
    assert code == 200 and "Harbour Kitchen" in page
    code, location, _ = open_link(url, post=True)
    assert (code, location) == (303, RETURN_URL)
    # Back on the dashboard: the portal asks Stripe, whatever the webhook's pace.
    refreshed = stripe_accounts.refresh_stripe_status(org.id)
    assert (refreshed.charges_enabled, refreshed.payouts_enabled,
            refreshed.details_submitted) == (True, True, True)
    assert set(webhooks.deliver()) == {200}
    assert stripe_accounts.stripe_status(org.id).can_take_payments
    assert donations.donate_state(org.id).can_donate

    # A used link sends the person to refresh_url; connecting again makes a new link for
    # the same account.
    assert open_link(url)[:2] == (302, REFRESH_URL)
    again = stripe_accounts.connect_stripe(org.id, RETURN_URL, REFRESH_URL)
    assert again != url
    assert stripe_accounts.stripe_status(org.id).account_id == status.account_id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OrganisationStripeAccount)
                             .where(OrganisationStripeAccount.organisation_id == org.id)) == 1


def test_an_organisation_without_an_account_has_nothing_to_refresh(
    create_org: Callable[..., Organisation], webhooks: Webhooks,
) -> None:
    org = create_org()
    with pytest.raises(stripe_accounts.NotConnected):
        stripe_accounts.refresh_stripe_status(org.id)
    with pytest.raises(stripe_accounts.OrganisationNotFound):
        stripe_accounts.connect_stripe("org_" + "0" * 24, RETURN_URL, REFRESH_URL)


def test_the_dashboard_connects_stripe_and_the_public_page_offers_to_donate(
    create_org: Callable[..., Organisation], webhooks: Webhooks,
    create_user: Callable[..., User], add_member: Callable[..., object],
    client: FlaskClient,
) -> None:
    org = create_org(name="Quayside Pantry")
    owner, viewer = create_user(), create_user()
    add_member(org, owner, "owner")
    add_member(org, viewer, "viewer")
    public_page = f"/orgs/{org.slug}"
    assert "Donate to Quayside Pantry" not in client.get(public_page).get_data(as_text=True)

    sign_in_as(client, owner)
    overview = f"/dashboard/{org.slug}"
    page = client.get(overview).get_data(as_text=True)
    assert "Stripe: not connected yet" in page and "Connect a Stripe account" in page
    token = csrf_token_from(client, overview)
    started = client.post(f"{overview}/stripe/connect", data={"csrf_token": token})
    assert started.status_code == 303
    onboarding = started.headers["Location"]
    assert stripe_accounts.stripe_status(org.id).connected
    code, back, _ = open_link(onboarding, post=True)
    assert code == 303 and back.endswith(f"{overview}/stripe/return")

    returned = client.get(back.replace("http://localhost", ""))
    assert returned.status_code == 303 and returned.headers["Location"].endswith(overview)
    page = client.get(overview).get_data(as_text=True)
    assert "Stripe is connected: the organisation can take donations." in page
    account = stripe_accounts.stripe_status(org.id).account_id
    assert f"Stripe is connected (account <code>{account}</code>)" in page
    assert set(webhooks.deliver()) == {200}

    client.get("/account/logout")
    assert f'href="/orgs/{org.slug}/donate"' in client.get(public_page).get_data(as_text=True)
    sign_in_as(client, viewer)
    page = client.get(overview).get_data(as_text=True)
    assert "Stripe is connected" in page and "Ask Stripe for the latest status" not in page
    assert client.post(f"{overview}/stripe/connect",
                       data={"csrf_token": csrf_token_from(client, overview)}).status_code == 403
