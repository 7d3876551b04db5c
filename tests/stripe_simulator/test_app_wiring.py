"""Without a secret key the app runs the simulator itself: one per process, started on
first use, signing webhooks with the secret the app checks them with."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from portal import create_app
from portal.services import payments
from portal.stripe_simulator import Simulator
from tests.stripe_simulator.conftest import Inbox


@pytest.fixture
def own_simulator_app(app_config: dict[str, Any]) -> Iterator[Flask]:
    application = create_app({**app_config,
                              "STRIPE_SIMULATOR_WEBHOOK_BACKOFF_MS": 20})
    with application.app_context():
        yield application


def test_the_app_starts_its_simulator_on_first_use(own_simulator_app: Flask,
                                                   app_config: dict[str, Any]) -> None:
    simulator = payments.simulator()
    assert isinstance(simulator, Simulator)
    assert simulator.running
    assert simulator.url.startswith("http://127.0.0.1:")
    assert payments.simulator() is simulator
    with create_app(app_config).app_context():
        assert payments.simulator() is simulator


def test_the_apps_simulator_signs_what_the_app_accepts(own_simulator_app: Flask) -> None:
    simulator = payments.simulator()
    inbox = Inbox()
    simulator.control.deliver_to(inbox)
    try:
        account = payments.create_connected_account(
            country="DE", email=None, idempotency_key=f"org-{time.time_ns()}")
        simulator.control.complete_onboarding(account.id)
        [delivered] = inbox.wait_for_type("account.updated", account.id)
        body, headers = next((body, headers) for body, headers in inbox.received
                             if json.loads(body)["id"] == delivered["id"])
        event = payments.construct_webhook_event(body, headers["Stripe-Signature"])
        assert (event.type, event.account) == ("account.updated", account.id)
        assert payments.retrieve_account(account.id).charges_enabled
    finally:
        simulator.control.wait_for_webhooks()
        simulator.control.deliver_to(None)
