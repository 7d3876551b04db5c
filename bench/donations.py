"""Donation webhooks: signed ``payment_intent.succeeded`` events per second through
``POST /webhooks/stripe`` on gunicorn over loopback (signature check, the processed-events
record, Stripe's PaymentIntent and balance transaction read from the simulator, two ledger
entries, one commit), next to the bare ledger appending the same two entries and
committing, measured in the same run. Repeated deliveries of events already applied (the
dedupe path alone) are set beside the app's hello-world endpoint, with the same senders.

The payments are made in this process through the services, with the simulator holding
every event; their events are then signed afresh and posted by concurrent senders.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import Figure, Results, make_app, operator_context
from bench.portal import _free_port, _start_gunicorn
from portal.embedded import DatabaseUrls

SENDERS = 8
#: The secret key ``bench.portal`` gives the gunicorn it starts.
GUNICORN_SECRET_KEY = "bench-secret-key-bench-secret-key"


def _paid_events(app: Any, count: int) -> tuple[str, list[bytes]]:
    """An organisation with ``count`` paid gifts; their ``payment_intent.succeeded`` bodies."""
    from portal.services import donations, payments, stripe_accounts
    from portal.services.organisations import create_organisation

    with operator_context(app):
        simulator = payments.simulator()
        simulator.control.configure_webhooks(hold=True)
        org = create_organisation(name=f"Webhook Bench {time.time_ns()}", country="DE",
                                  default_currency="EUR", status="active")
        stripe_accounts.connect_stripe(org.id, "http://bench.invalid/back",
                                       "http://bench.invalid/again")
        account = stripe_accounts.stripe_status(org.id).account_id
        assert account is not None
        simulator.control.complete_onboarding(account)
        stripe_accounts.refresh_stripe_status(org.id)
        fund = donations.donation_options(org.id).funds[0].id
        for number in range(count):
            donation_id = donations.start_donation(donations.DonorChoices(
                organisation_id=org.id, fund_id=fund, gift=1_000 + number % 9_000,
                currency="EUR", frequency="one_time", cover_fees=False,
                donor_name=f"Bench Donor {number}", donor_email="bench@donors.invalid",
                show_name=number % 2 == 0))
            donations.pay_with_test_card(donation_id, "4242424242424242",
                                         "http://bench.invalid/thanks")
        bodies: list[bytes] = []

        def keep(body: bytes, headers: dict[str, str]) -> int:
            if json.loads(body)["type"] == "payment_intent.succeeded":
                bodies.append(body)
            return 200

        simulator.control.deliver_held(deliver=keep)
        return org.id, bodies


Request = tuple[str, str, bytes | None, dict[str, str]]


def _send_all(port: int, requests: list[Any], build: Any) -> tuple[float, list[int]]:
    """Send ``build(item)`` for every item from ``SENDERS`` threads, each on one kept-alive
    connection; return (seconds, statuses)."""
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(SENDERS + 1)

    def send(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start.wait()
        mine = []
        for item in requests[index::SENDERS]:
            method, path, body, headers = build(item)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(response.status)
        connection.close()
        with lock:
            statuses.extend(mine)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(SENDERS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, statuses


def _post_all(port: int, bodies: list[bytes], secret: str) -> tuple[float, list[int]]:
    """Every body posted to the webhook endpoint, signed as it is sent."""
    from portal.stripe_simulator import signature_header

    def build(body: bytes) -> Request:
        return ("POST", "/webhooks/stripe", body, {
            "Content-Type": "application/json",
            "Stripe-Signature": signature_header(body, secret)})

    return _send_all(port, bodies, build)


def _append_rate(app: Any, count: int) -> float:
    """Donation-and-fee pairs per second appended and committed by the ledger alone."""
    from portal.extensions import db
    from portal.services import ledger
    from portal.services.organisations import create_organisation

    with operator_context(app):
        org = create_organisation(name=f"Append Bench {time.time_ns()}", country="DE",
                                  default_currency="EUR", status="active").id
        began = time.perf_counter()
        for number in range(count):
            intent = f"pi_bench{number:08d}"
            ledger.append_entries(org, [
                ledger.EntryDraft("donation_received", 1_000 + number % 9_000, "EUR",
                                  {"donation_id": f"don_bench{number}",
                                   "stripe_payment_intent_id": intent,
                                   "donor_name": "Anonymous"},
                                  idempotency_key=f"stripe:{intent}:donation"),
                ledger.EntryDraft("fee", -40, "EUR",
                                  {"stripe_payment_intent_id": intent,
                                   "category": "payment-fees"},
                                  idempotency_key=f"stripe:{intent}:fee"),
            ])
            db.session.commit()
        return count / (time.perf_counter() - began)


def _forget_receipt_jobs(app: Any) -> None:
    """The receipts the webhooks queued are not sent here (no job worker runs)."""
    from portal import jobs
    from portal.extensions import redis_store
    from portal.services import payments

    with app.app_context():
        client = redis_store.client()
        for queued in client.lrange(jobs.QUEUE, 0, -1):
            job_id = str(queued)
            if client.hget(f"jobs:{job_id}", "kind") == "donations.receipt":
                client.lrem(jobs.QUEUE, 0, job_id)
                client.delete(f"jobs:{job_id}")
        payments.simulator().control.configure_webhooks(hold=False)
        payments.simulator().queue.clear()


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Settings for the gunicorn this suite starts (it inherits this process's
    environment), put back afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def webhooks(results: Results, urls: DatabaseUrls, redis_url: str, *, quick: bool) -> None:
    from portal.extensions import db
    from portal.services import ledger, payments

    count = 300 if quick else 2_000
    warm = 20
    app = make_app(urls, redis_url)
    # The key gunicorn's app is given: both sides derive the simulator's webhook secret
    # from it.
    app.config["SECRET_KEY"] = GUNICORN_SECRET_KEY
    print(f"  paying {count + warm:,} gifts through the simulator …", flush=True)
    org_id, bodies = _paid_events(app, count + warm)
    with app.app_context():
        secret = payments.simulator().settings.webhook_secret
    baseline = _append_rate(app, count)
    port = _free_port()
    # No job worker in gunicorn: receipts are queued, not rendered, during the run.
    with _environment(JOBS_IN_PROCESS="false", INSTANCE_PATH=tempfile.mkdtemp(
            prefix="bench-webhooks-")):
        server = _start_gunicorn(urls, redis_url, port)
    try:
        _post_all(port, bodies[:warm], secret)  # each worker connects to Stripe once
        seconds, statuses = _post_all(port, bodies[warm:], secret)
        failed = [status for status in statuses if status != 200]
        if failed:
            raise RuntimeError(f"{len(failed)} deliveries were not accepted: {failed[:5]}")
        rate = count / seconds
        results.add(Figure(f"webhook events applied over HTTP ({count:,}, {SENDERS} senders)",
                           rate, "events/s", "bare ledger append, gift + fee", baseline))
        repeat_seconds, repeats = _post_all(port, bodies[warm:], secret)
        if set(repeats) != {200}:
            raise RuntimeError("a repeated delivery was not accepted")
        hello_seconds, hellos = _send_all(port, [None] * count,
                                          lambda _: ("GET", "/healthz", None, {}))
        if set(hellos) != {200}:
            raise RuntimeError("/healthz did not answer 200")
        results.add(Figure(f"repeated deliveries, dedupe only ({SENDERS} senders)",
                           count / repeat_seconds, "events/s", "hello-world",
                           count / hello_seconds))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        _forget_receipt_jobs(app)
    with operator_context(app):
        entries = sum(1 for _ in ledger.iter_entries(org_id))
        db.session.remove()
    if entries != 2 * (count + warm):
        raise RuntimeError(f"expected {2 * (count + warm)} entries, found {entries}")
