"""With real Stripe test keys the payment page mounts Stripe's Payment Element instead of
the test-card form: Stripe.js is allowed by that page's Content-Security-Policy only, and
the server code (the payment, the webhooks, the receipt) is the same as with the
simulator. Here the SDK still talks to the run's simulator, with a test key of its own."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.models import Organisation
from portal.services import ledger, payments
from portal.stripe_simulator import Simulator
from portal.web import CONTENT_SECURITY_POLICY
from tests.donations.conftest import (
    Donor,
    Webhooks,
    connect,
    disposed,
    form_token,
    rolled_back,
)
from tests.stripe_simulator.conftest import WEBHOOK_SECRET


@pytest.fixture(scope="session")
def element_app(donations_app: Flask, app_config: dict[str, Any],
                running_simulator: Simulator) -> Iterator[Flask]:
    flask_app = create_app({
        **app_config,
        "STRIPE_SECRET_KEY": "sk_test_payment_element",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_payment_element",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": running_simulator.url,
        "STRIPE_TIMEOUT_SECONDS": 1.0,
        "DONATION_RATE_LIMIT": "1000 per minute",
    })
    yield flask_app
    disposed(flask_app)


@pytest.fixture
def element(element_app: Flask, superuser_engine: sa.Engine,
            held: Simulator) -> Iterator[Flask]:
    with rolled_back(element_app, superuser_engine) as flask_app:
        yield flask_app


def test_the_payment_element_page_and_the_same_server_code(
    element: Flask, create_org: Callable[..., Organisation], held: Simulator,
) -> None:
    assert not payments.uses_simulator() and payments.is_test_mode()
    client: FlaskClient = element.test_client()
    donor = Donor(client, "element@donors.example.org")
    org = create_org()
    account = connect(org.id, held)
    held.control.deliver_held(deliver=lambda body, headers: 200)
    donation_id = donor.give(org)

    page = client.get(f"/donations/{donation_id}/pay")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<script src="https://js.stripe.com/v3/"></script>' in html
    assert 'id="payment-element"' in html
    assert 'data-publishable-key="pk_test_payment_element"' in html
    assert f'data-account="{account}"' in html
    secret = re.search(r'data-client-secret="(pi_[^"]+_secret_[^"]+)"', html)
    assert secret is not None
    assert f'data-return-url="http://localhost/donations/{donation_id}/thanks"' in html
    assert "Test mode." in html
    assert 'name="card_number"' not in html
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in policy
    assert "frame-src 'self' https://js.stripe.com" in policy
    assert "https://hooks.stripe.com" in policy
    # Only that page: the form and the thanks page keep the portal's own policy.
    for other in (f"/orgs/{org.slug}/donate", f"/donations/{donation_id}/thanks"):
        assert client.get(other).headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    token = form_token(client.get(f"/orgs/{org.slug}/donate").get_data(as_text=True))
    refused = client.post(f"/donations/{donation_id}/pay", data={
        "csrf_token": token, "card_number": "4242 4242 4242 4242"})
    assert refused.status_code == 404

    # Stripe.js confirms in the browser; here the same confirmation goes straight to Stripe.
    intent_id = secret.group(1).split("_secret_")[0]
    payments.simulator_confirm_payment_intent(account, intent_id, "4242 4242 4242 4242",
                                              return_url="http://localhost/thanks")
    statuses = []
    for _, body, headers in Webhooks(held, client).collect():
        statuses.append(client.post("/webhooks/stripe", data=body, headers=headers).status_code)
    assert set(statuses) == {200}
    assert [entry.type for entry in ledger.iter_entries(org.id)] == ["donation_received", "fee"]
    assert "Download the receipt (PDF)" in donor.thanks(donation_id)
