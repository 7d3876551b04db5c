"""Fixtures: the app with its payments on the run's Stripe simulator (one-second timeouts,
one retry), inside a per-test transaction; organisations whose Stripe account has been
onboarded; a donor who goes through the pages with the test client; and webhooks that the
simulator holds until a test delivers them, in the order it chooses, through
``POST /webhooks/stripe``.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal import create_app, jobs
from portal.extensions import db, redis_store
from portal.models import Donation, Organisation
from portal.services import stripe_accounts, tenancy
from portal.stripe_simulator import Simulator
from tests.conftest import _ConnectionBoundSession
from tests.stripe_simulator.conftest import (  # noqa: F401  (fixtures used here)
    TEST_SECRET_KEY,
    inbox,
    running_simulator,
    session_inbox,
    simulator,
)

DONOR_EMAIL_DOMAIN = "donors.example.org"
GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
NO_FUNDS_CARD = "4000 0000 0000 9995"


@pytest.fixture(scope="session")
def outbox_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outbox")


def disposed(flask_app: Flask) -> None:
    """Close the app's database connections (at the end of the run)."""
    with flask_app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def donations_app(migrated_app: Flask, app_config: dict[str, Any],
                  running_simulator: Simulator,  # noqa: F811
                  outbox_folder: Path) -> Iterator[Flask]:
    """The portal with Stripe on the run's simulator (the schema is migrated_app's)."""
    flask_app = create_app({
        **app_config,
        "SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_API_BASE": running_simulator.url,
        "STRIPE_TIMEOUT_SECONDS": 1.0,
        "STRIPE_MAX_NETWORK_RETRIES": 1,
        "DONATION_RATE_LIMIT": "1000 per minute",
        "MAIL_OUTBOX": str(outbox_folder),
    })
    yield flask_app
    disposed(flask_app)


@contextmanager
def rolled_back(flask_app: Flask, superuser_engine: sa.Engine) -> Iterator[Flask]:
    """``flask_app`` inside a transaction rolled back at the end (as the suite's ``app``:
    commits become savepoints, the connection acts as the portal's role)."""
    from portal.embedded import APP_ROLE

    with flask_app.app_context():
        connection = superuser_engine.connect()
        outer = connection.begin()
        connection.exec_driver_sql(f"SET ROLE {APP_ROLE}")
        original = db.session
        db.session = db._make_scoped_session({
            "bind": connection,
            "join_transaction_mode": "create_savepoint",
            "class_": _ConnectionBoundSession,
        })
        tenancy.platform()
        try:
            yield flask_app
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()


@pytest.fixture
def app(donations_app: Flask, superuser_engine: sa.Engine) -> Iterator[Flask]:
    """``donations_app``, one transaction per test."""
    with rolled_back(donations_app, superuser_engine) as flask_app:
        yield flask_app


@pytest.fixture
def committed_donations_app(donations_app: Flask) -> Iterator[Flask]:
    """``donations_app`` with real commits, for many connections at once."""
    with donations_app.app_context():
        tenancy.platform()
        yield donations_app
        db.session.remove()


@pytest.fixture
def held(simulator: Simulator) -> Simulator:  # noqa: F811
    """The simulator, keeping every webhook until the test delivers it."""
    simulator.control.configure_webhooks(hold=True)
    return simulator


def connect(organisation_id: str, simulator: Simulator) -> str:  # noqa: F811
    """Connect the organisation's Stripe account and complete its onboarding."""
    stripe_accounts.connect_stripe(organisation_id, "http://portal.test/back",
                                   "http://portal.test/again")
    account = stripe_accounts.stripe_status(organisation_id).account_id
    assert account is not None
    simulator.control.complete_onboarding(account)
    stripe_accounts.refresh_stripe_status(organisation_id)
    return account


@pytest.fixture
def connected_org(app: Flask, create_org: Callable[..., Organisation],
                  held: Simulator) -> Callable[..., Organisation]:
    """Factory: an active organisation whose Stripe account may take payments."""

    def make(**overrides: Any) -> Organisation:
        org: Organisation = create_org(**overrides)
        connect(org.id, held)
        held.control.deliver_held(deliver=lambda body, headers: 200)  # onboarding's events
        return org

    return make


# --------------------------------------------------------------------------- webhooks


def post_webhook(client: FlaskClient, body: bytes, headers: dict[str, str]) -> TestResponse:
    return client.post("/webhooks/stripe", data=body, headers=headers)


@dataclass
class Webhooks:
    """The held events: look at them, and deliver them through the portal's endpoint."""

    simulator: Simulator
    client: FlaskClient

    def held(self) -> list[dict[str, str]]:
        return self.simulator.control.held_events()

    def ids(self, *types: str) -> list[str]:
        return [event["event"] for event in self.held() if not types or event["type"] in types]

    def deliver(self, order: str | Sequence[str] = "emitted") -> list[int]:
        statuses: list[int] = []

        def send(body: bytes, headers: dict[str, str]) -> int:
            statuses.append(post_webhook(self.client, body, headers).status_code)
            return statuses[-1]

        self.simulator.control.deliver_held(order, deliver=send)
        return statuses

    def collect(self, order: str | Sequence[str] = "emitted",
                ) -> list[tuple[str, bytes, dict[str, str]]]:
        """Take held events without delivering them: ``(type, body, signed headers)``."""
        taken: list[tuple[str, bytes, dict[str, str]]] = []

        def keep(body: bytes, headers: dict[str, str]) -> int:
            taken.append((json.loads(body)["type"], body, dict(headers)))
            return 200

        self.simulator.control.deliver_held(order, deliver=keep)
        return taken


@pytest.fixture
def webhooks(held: Simulator, client: FlaskClient) -> Webhooks:
    return Webhooks(held, client)


# --------------------------------------------------------------------------- the donor


class _FormReader(HTMLParser):
    """The fields one form of a page would submit, as a browser without scripts does."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside = form_id, False
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.inside = found.get("id") == self.form_id
        if not self.inside or ("name" not in found and tag != "option"):
            return
        name = found.get("name", "")
        if tag == "input":
            kind = found.get("type", "text")
            if kind not in {"radio", "checkbox"} or "checked" in found:
                self.values[name] = found.get("value", "")
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select is not None and (
                "selected" in found or self._select not in self.values):
            self.values[self._select] = found.get("value", "")
        elif tag == "textarea":
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data.strip("\n")


def form_fields(html: str, form_id: str) -> dict[str, Any]:
    reader = _FormReader(form_id)
    reader.feed(html)
    assert reader.values, f"the page has no form {form_id!r}"
    return reader.values


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def donation_id_of(response: TestResponse) -> str:
    target = response.headers.get("HX-Redirect") or response.headers.get("Location") or ""
    found = re.search(r"/donations/(don_[0-9a-f]{24})/pay", target)
    assert found, f"not sent on to the payment page: {response.status_code} {target!r}"
    return found.group(1)


@dataclass
class Donor:
    """Someone giving through the pages, as a browser without JavaScript would."""

    client: FlaskClient
    email: str
    name: str = "Ada Donor"

    def form(self, org: Organisation, fund_id: str | None = None,
             **fields: Any) -> dict[str, Any]:
        """What a browser would send: the form's own fields as the page sets them, then
        what this donor types or ticks (``True`` ticks a box, ``False`` unticks it)."""
        page = self.client.get(self.path(org, fund_id))
        assert page.status_code == 200, page.get_data(as_text=True)
        values = form_fields(page.get_data(as_text=True), "donate_form")
        values.update({"amount": "2500", "donor_name": self.name, "donor_email": self.email})
        for key, value in fields.items():
            if value is False:
                values.pop(key, None)
            elif value is not None:
                values[key] = "y" if value is True else value
        return values

    @staticmethod
    def path(org: Organisation, fund_id: str | None = None) -> str:
        return f"/orgs/{org.slug}/funds/{fund_id}/donate" if fund_id else \
            f"/orgs/{org.slug}/donate"

    def submit(self, org: Organisation, fund_id: str | None = None, *,
               headers: dict[str, str] | None = None, **fields: Any) -> TestResponse:
        return self.client.post(self.path(org, fund_id), data=self.form(org, fund_id, **fields),
                                headers=headers or {})

    def give(self, org: Organisation, fund_id: str | None = None, **fields: Any) -> str:
        """Fill in the form; return the new donation's id."""
        return donation_id_of(self.submit(org, fund_id, **fields))

    def pay(self, donation_id: str, card: str = GOOD_CARD) -> TestResponse:
        page = self.client.get(f"/donations/{donation_id}/pay")
        assert page.status_code == 200, page.get_data(as_text=True)
        return self.client.post(f"/donations/{donation_id}/pay", data={
            "csrf_token": form_token(page.get_data(as_text=True)), "card_number": card})

    def thanks(self, donation_id: str) -> str:
        page = self.client.get(f"/donations/{donation_id}/thanks")
        assert page.status_code == 200
        return page.get_data(as_text=True)


@pytest.fixture
def donor(client: FlaskClient) -> Donor:
    return Donor(client, f"donor-{uuid.uuid4().hex[:10]}@{DONOR_EMAIL_DOMAIN}")


# --------------------------------------------------------------------------- email


def messages_to(folder: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"] == address:
            found.append(message)
    return found


def send_receipts(app: Flask) -> int:
    """Run the queued receipt jobs now, as the background worker would."""
    return jobs.run_pending(app)


def forget_receipt_jobs(donation_ids: set[str]) -> None:
    """Remove queued receipt jobs of these donations (tests that do not send them)."""
    client = redis_store.client()
    for queued in client.lrange(jobs.QUEUE, 0, -1):
        job_id = str(queued)
        params = client.hget(f"jobs:{job_id}", "params")
        if params and json.loads(params).get("donation_id") in donation_ids:
            client.lrem(jobs.QUEUE, 0, job_id)
            client.delete(f"jobs:{job_id}")


def donation(donation_id: str) -> Donation:
    found = db.session.get(Donation, donation_id, populate_existing=True)
    assert found is not None
    return found
