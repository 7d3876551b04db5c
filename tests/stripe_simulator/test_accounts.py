"""Connect accounts and hosted onboarding: created through the SDK, completed in the
simulator's onboarding page over real HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
import stripe

from portal.stripe_simulator import Simulator
from tests.stripe_simulator.conftest import Inbox


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str, data: bytes | None = None) -> tuple[int, str, str]:
    """Status, body and Location of one request, without following redirects."""
    opener = urllib.request.build_opener(NoRedirects)
    try:
        with opener.open(urllib.request.Request(url, data=data)) as response:
            return response.status, response.read().decode(), ""
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(), error.headers.get("Location", "")


def new_account(client: stripe.StripeClient) -> stripe.Account:
    return client.v1.accounts.create(params={
        "type": "express", "country": "DE", "email": "treasurer@example.org",
        "business_type": "non_profit",
        "business_profile": {"name": "Harbour Lights Trust"},
        "capabilities": {"card_payments": {"requested": True},
                         "transfers": {"requested": True}},
        "metadata": {"organisation_id": "org_1"},
    })


def test_an_express_account_starts_unable_to_take_payments(client: stripe.StripeClient,
                                                            simulator: Simulator) -> None:
    account = new_account(client)
    assert re.fullmatch(r"acct_[A-Za-z0-9]{24}", account.id)
    assert (account.type, account.country, account.default_currency) == ("express", "DE",
                                                                         "eur")
    assert (account.charges_enabled, account.payouts_enabled,
            account.details_submitted) == (False, False, False)
    assert account.requirements is not None
    assert account.requirements.currently_due
    assert account.metadata is not None
    assert account.metadata["organisation_id"] == "org_1"
    fetched = client.v1.accounts.retrieve(account.id)
    assert fetched.business_profile is not None
    assert fetched.business_profile.name == "Harbour Lights Trust"


def test_an_unknown_account_is_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.accounts.retrieve("acct_000000000000000000000000")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


def test_the_onboarding_link_completes_onboarding_in_one_click(
        client: stripe.StripeClient, simulator: Simulator, inbox: Inbox) -> None:
    account = new_account(client)
    link = client.v1.account_links.create(params={
        "account": account.id, "type": "account_onboarding",
        "refresh_url": "https://portal.test/onboarding/refresh",
        "return_url": "https://portal.test/onboarding/done",
    })
    assert link.object == "account_link"
    assert link.url.startswith(simulator.url + "/_simulator/onboarding/")
    assert link.expires_at > link.created

    status, page, _ = fetch(link.url)
    assert status == 200
    assert "Harbour Lights Trust" in page
    assert "Complete onboarding" in page

    status, _, location = fetch(link.url, data=urlencode({}).encode())
    assert (status, location) == (303, "https://portal.test/onboarding/done")
    done = client.v1.accounts.retrieve(account.id)
    assert (done.charges_enabled, done.payouts_enabled, done.details_submitted) == (
        True, True, True)
    assert done.capabilities is not None
    assert done.capabilities.card_payments == "active"

    [event] = inbox.wait_for_type("account.updated", account.id)
    assert event["data"]["object"]["charges_enabled"] is True
    assert event["data"]["previous_attributes"]["charges_enabled"] is False

    # A link works once; afterwards Stripe sends people to refresh_url for a new one.
    status, _, location = fetch(link.url)
    assert (status, location) == (302, "https://portal.test/onboarding/refresh")


def test_account_links_need_both_urls(client: stripe.StripeClient) -> None:
    account = new_account(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.account_links.create(params={
            "account": account.id, "type": "account_onboarding",
            "return_url": "https://portal.test/done"})
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "refresh_url")


def test_an_unknown_onboarding_link_is_not_found(simulator: Simulator) -> None:
    status, _, _ = fetch(simulator.url + "/_simulator/onboarding/nothing-here")
    assert status == 404
