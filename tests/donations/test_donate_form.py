"""The donation form: what it offers, what it refuses (422, beside the field, as a fragment
for htmx and as a page without it), CSRF, the rate limit, and organisations that cannot
take donations."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Donation, Fund, Organisation
from portal.services import donations
from portal.stripe_simulator import Simulator
from tests.donations.conftest import Donor, connect

HTMX = {"HX-Request": "true"}


def donations_of(org_id: str) -> list[Donation]:
    return list(db.session.scalars(sa.select(Donation).where(Donation.organisation_id == org_id)))


def test_the_form_offers_amounts_currencies_funds_and_says_how_fees_are_covered(
    client: FlaskClient, connected_org: Callable[..., Organisation],
) -> None:
    org = connected_org()
    html = client.get(f"/orgs/{org.slug}/donate").get_data(as_text=True)
    for amount in ("€10.00", "€25.00", "€50.00", "€100.00"):
        assert amount in html
    # 1.5 % + €0.25 on the €10.00 example: €10.41 charged, Stripe keeps €0.41.
    assert "Stripe keeps 1.5 % of each payment plus €0.25" in html
    assert "for a gift of €10.00 you pay €10.41" in html
    for label in ("Your name", "Your email address", "Show my name in the public ledger",
                  "Publish my message with my gift", "Every month", "Once",
                  "Continue to payment"):
        assert label in html
    assert 'autocomplete="email"' in html


def test_an_invalid_form_comes_back_as_a_fragment_with_422_for_htmx(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
) -> None:
    org = connected_org()
    response = donor.submit(org, headers=HTMX, amount="other", other_amount="12.345",
                            donor_email="not an address", donor_name="")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<form id="donate_form"')
    assert "<html" not in html
    assert "EUR amounts have at most 2 decimals" not in html  # said for people instead:
    assert "Enter an amount such as 25 or 25.50 (EUR)" in html
    assert "Enter your name: it goes on your receipt." in html
    assert 'aria-describedby="other_amount-hint other_amount-error"' in html
    assert 'aria-invalid="true"' in html
    assert 'role="alert"' in html and "autofocus" in html
    assert donations_of(org.id) == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"amount": "other", "other_amount": "0.50"}, "The smallest donation is €1.00."),
    ({"amount": "other", "other_amount": "1000000"}, "The largest donation is €999,999.99."),
    ({"amount": "other", "other_amount": "999999", "cover_fees": True},
     "With the fees covered this would be"),
    ({"amount": "", "other_amount": ""}, "Choose an amount, or enter another amount."),
    ({"currency": "XYZ"}, "This organisation takes donations in EUR."),
    ({"donor_email": "ada@nowhere"}, "Enter an email address such as name@example.org"),
    ({"frequency": "weekly"}, "Choose once or every month."),
    ({"message": "x" * 501}, "Use at most 500 characters."),
    ({"fund": "fund_" + "0" * 24}, "Choose one of the organisation&#39;s funds."),
])
def test_refusals_are_explained_on_the_full_page_without_htmx(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
    fields: dict[str, Any], message: str,
) -> None:
    org = connected_org()
    response = donor.submit(org, **fields)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.startswith("<!doctype html>")
    assert message in html
    assert donations_of(org.id) == []


def test_the_form_needs_its_csrf_token(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
) -> None:
    org = connected_org()
    fields = donor.form(org)
    fields.pop("csrf_token")
    refused = client.post(f"/orgs/{org.slug}/donate", data=fields)
    assert refused.status_code == 400
    assert "CSRF" in refused.get_data(as_text=True)
    forged = client.post(f"/orgs/{org.slug}/donate", data={**fields, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert donations_of(org.id) == []


@pytest.fixture
def strict_limit(app: Flask) -> Iterator[None]:
    before = app.config["DONATION_RATE_LIMIT"]
    app.config["DONATION_RATE_LIMIT"] = "3 per minute"
    yield
    app.config["DONATION_RATE_LIMIT"] = before


@pytest.mark.usefixtures("strict_limit")
def test_donations_are_rate_limited_per_network_address(
    client: FlaskClient, connected_org: Callable[..., Organisation], donor: Donor,
) -> None:
    org = connected_org()
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    statuses = [client.post(f"/orgs/{org.slug}/donate", data=donor.form(org),
                            environ_base={"REMOTE_ADDR": address}).status_code
                for _ in range(4)]
    assert statuses == [303, 303, 303, 429]
    refused = client.post(f"/orgs/{org.slug}/donate", data=donor.form(org),
                          environ_base={"REMOTE_ADDR": address}, headers=HTMX)
    assert refused.status_code == 429
    assert "Too many donation attempts from your network" in refused.get_data(as_text=True)
    assert "Retry-After" in refused.headers
    assert len(donations_of(org.id)) == 3
    # Another address may still give.
    assert client.post(f"/orgs/{org.slug}/donate", data=donor.form(org),
                       environ_base={"REMOTE_ADDR": "198.51.100.77"}).status_code == 303


def test_without_a_stripe_account_there_is_no_form_and_the_page_says_why(
    client: FlaskClient, create_org: Callable[..., Organisation], simulator: Simulator,
    donor: Donor,
) -> None:
    org = create_org(name="Quiet Harbour")
    page = client.get(f"/orgs/{org.slug}/donate")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Quiet Harbour has not connected a Stripe account yet" in html
    assert "<form" not in html.split("<main", 1)[1]
    can_donate, reason = donations.donate_state(org.id)
    assert not can_donate and "has not connected a Stripe account" in reason

    # Connected but not onboarded: Stripe has not enabled payments yet.
    from portal.services import stripe_accounts

    stripe_accounts.connect_stripe(org.id, "http://portal.test/back", "http://portal.test/again")
    html = client.get(f"/orgs/{org.slug}/donate").get_data(as_text=True)
    assert "still setting up its Stripe account" in html
    account = stripe_accounts.stripe_status(org.id).account_id
    assert account is not None
    simulator.control.complete_onboarding(account)
    stripe_accounts.refresh_stripe_status(org.id)
    assert donations.donate_state(org.id).can_donate
    assert "Continue to payment" in client.get(f"/orgs/{org.slug}/donate").get_data(
        as_text=True)


def test_pending_and_unknown_organisations_take_no_donations(
    client: FlaskClient, create_org: Callable[..., Organisation], held: Simulator,
) -> None:
    pending = create_org(status="pending")
    connect(pending.id, held)
    assert client.get(f"/orgs/{pending.slug}/donate").status_code == 404
    assert client.get("/orgs/no-such-charity/donate").status_code == 404


def test_the_donate_button_shows_only_when_donations_are_possible(
    app: Flask, connected_org: Callable[..., Organisation],
    create_org: Callable[..., Organisation],
) -> None:
    able, unable = connected_org(name="Able Aid"), create_org(name="Unable Aid")
    macro = ('{% from "donate/_button.html" import donate_button %}'
             '{{ donate_button(org, state) }}|{{ donate_button(org, state, fund) }}')
    with app.test_request_context("/"):
        general = db.session.scalars(sa.select(Fund).where(Fund.organisation_id == able.id)).one()
        shown = render_template_string(macro, org=able, state=donations.donate_state(able.id),
                                       fund=general)
        hidden = render_template_string(macro, org=unable, fund=general,
                                        state=donations.donate_state(unable.id))
    assert f'href="/orgs/{able.slug}/donate">Donate to Able Aid</a>' in shown
    assert f'href="/orgs/{able.slug}/funds/{general.id}/donate">Give to General Fund</a>' in shown
    assert "<a" not in hidden
