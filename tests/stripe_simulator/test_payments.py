"""The payments service, as the donation pages and the webhook endpoint will call it:
plain values in and out, the portal's own errors, the simulator behind the SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe
from flask import Flask

from portal import create_app
from portal.services import payments
from portal.stripe_simulator import Simulator, signature_header
from tests.stripe_simulator.conftest import WEBHOOK_SECRET, Inbox

RETURN_URL = "https://portal.test/donate/done"


def connected_account(simulator: Simulator) -> str:
    account = payments.create_connected_account(
        country="DE", email="treasurer@example.org", business_name="Harbour Lights Trust",
        business_url="https://harbour.example.org", idempotency_key=f"org-{time.time_ns()}",
        metadata={"organisation_id": "org_1"})
    simulator.control.complete_onboarding(account.id)
    return account.id


def donation(account: str, amount: int = 2500, key: str | None = None) -> payments.Payment:
    return payments.create_payment_intent(
        account, amount=amount, currency="EUR", metadata={"donation_id": "don_42"},
        idempotency_key=key or f"donation-{time.time_ns()}", receipt_email="ada@example.org",
        description="Donation to Harbour Lights Trust")


@pytest.mark.usefixtures("payments_context")
class TestAccounts:
    def test_a_connected_account_is_onboarded_through_its_link(
            self, running_simulator: Simulator) -> None:
        account = payments.create_connected_account(
            country="de", email="treasurer@example.org", business_name="Harbour Lights",
            idempotency_key=f"org-{time.time_ns()}")
        assert account.id.startswith("acct_")
        assert (account.charges_enabled, account.country, account.default_currency) == (
            False, "DE", "EUR")
        assert account.requirements_due
        link = payments.create_account_link(account.id, refresh_url="https://portal.test/r",
                                            return_url="https://portal.test/ok")
        assert link.url.startswith(running_simulator.url)
        assert link.expires_at.timestamp() > time.time()
        running_simulator.control.complete_onboarding(account.id)
        done = payments.retrieve_account(account.id)
        assert (done.charges_enabled, done.payouts_enabled, done.requirements_due) == (
            True, True, ())

    def test_the_same_key_makes_one_account(self) -> None:
        key = f"org-{time.time_ns()}"
        first = payments.create_connected_account(country="DE", email=None,
                                                  idempotency_key=key)
        again = payments.create_connected_account(country="DE", email=None,
                                                  idempotency_key=key)
        assert again.id == first.id

    def test_an_unknown_account_is_not_found(self) -> None:
        with pytest.raises(payments.StripeObjectNotFound):
            payments.retrieve_account("acct_000000000000000000000000")


@pytest.mark.usefixtures("payments_context")
class TestDonations:
    def test_a_donation_paid_with_4242_reports_its_fee(
            self, running_simulator: Simulator) -> None:
        account = connected_account(running_simulator)
        payment = donation(account)
        assert (payment.status, payment.amount, payment.currency) == (
            "requires_payment_method", 2500, "EUR")
        assert payment.client_secret and payment.client_secret.startswith(payment.id)
        assert payment.metadata == {"donation_id": "don_42"}
        assert payment.receipt_email == "ada@example.org"

        paid = payments.simulator_confirm_payment_intent(
            account, payment.id, "4242 4242 4242 4242", return_url=RETURN_URL)
        assert paid.succeeded
        assert paid.charge_id is not None
        assert payments.retrieve_payment_intent(account, payment.id).status == "succeeded"
        fees = payments.balance_transaction_for_charge(account, paid.charge_id)
        # 1.5 % of €25.00 rounds to €0.38, plus €0.25.
        assert (fees.amount, fees.fee, fees.net, fees.currency) == (2500, 63, 2437, "EUR")
        charge = payments.retrieve_charge(account, paid.charge_id)
        assert (charge.payment_intent_id, charge.metadata["donation_id"]) == (payment.id,
                                                                              "don_42")

    @pytest.mark.parametrize(("card", "decline_code", "words"), [
        ("4000 0000 0000 0002", "generic_decline", "declined"),
        ("4000000000009995", "insufficient_funds", "insufficient funds"),
    ])
    def test_declined_cards_raise_card_declined_for_the_donor(
            self, running_simulator: Simulator, card: str, decline_code: str,
            words: str) -> None:
        account = connected_account(running_simulator)
        payment = donation(account)
        with pytest.raises(payments.CardDeclined) as caught:
            payments.simulator_confirm_payment_intent(account, payment.id, card,
                                                      return_url=RETURN_URL)
        assert caught.value.decline_code == decline_code
        assert caught.value.payment_intent_id == payment.id
        assert words in str(caught.value)
        assert "Stripe" not in str(caught.value)
        after = payments.retrieve_payment_intent(account, payment.id)
        assert after.status == "requires_payment_method"
        assert after.failure is not None
        assert after.failure.decline_code == decline_code

    @pytest.mark.parametrize(("card", "code"), [
        ("4242 4242 4242 4241", "incorrect_number"),
        ("5105 1051 0510 5100", "card_declined"),
    ])
    def test_cards_that_are_not_test_cards_are_refused(self, running_simulator: Simulator,
                                                       card: str, code: str) -> None:
        account = connected_account(running_simulator)
        with pytest.raises(payments.CardDeclined) as caught:
            payments.simulator_confirm_payment_intent(account, donation(account).id, card,
                                                      return_url=RETURN_URL)
        assert caught.value.code == code

    def test_a_donation_key_used_for_another_amount_is_a_conflict(
            self, running_simulator: Simulator) -> None:
        account = connected_account(running_simulator)
        donation(account, 2500, key="donation-fixed")
        assert donation(account, 2500, key="donation-fixed").amount == 2500
        with pytest.raises(payments.IdempotencyConflict):
            donation(account, 3000, key="donation-fixed")

    def test_an_abandoned_donation_is_canceled(self, running_simulator: Simulator) -> None:
        account = connected_account(running_simulator)
        payment = donation(account)
        assert payments.cancel_payment_intent(account, payment.id).status == "canceled"

    def test_refunds(self, running_simulator: Simulator) -> None:
        account = connected_account(running_simulator)
        paid = payments.simulator_confirm_payment_intent(
            account, donation(account, 4000).id, "4242424242424242", return_url=RETURN_URL)
        part = payments.create_refund(account, payment_intent_id=paid.id, amount=1000,
                                      reason="requested_by_customer",
                                      idempotency_key=f"refund-{time.time_ns()}")
        assert (part.amount, part.charge_id, part.status) == (1000, paid.charge_id,
                                                              "succeeded")
        assert paid.charge_id is not None
        rest = payments.create_refund(account, charge_id=paid.charge_id,
                                      idempotency_key=f"refund-{time.time_ns()}")
        assert rest.amount == 3000
        charge = payments.retrieve_charge(account, paid.charge_id)
        assert (charge.amount_refunded, charge.refunded) == (4000, True)
        assert [refund.id for refund in payments.list_refunds(account, paid.charge_id)] == [
            rest.id, part.id]
        with pytest.raises(payments.InvalidStripeRequest) as caught:
            payments.create_refund(account, charge_id=paid.charge_id,
                                   idempotency_key=f"refund-{time.time_ns()}")
        assert caught.value.code == "charge_already_refunded"

    def test_disputes(self, running_simulator: Simulator) -> None:
        account = connected_account(running_simulator)
        paid = payments.simulator_confirm_payment_intent(
            account, donation(account, 4000).id, "4242424242424242", return_url=RETURN_URL)
        assert paid.charge_id is not None
        opened = running_simulator.control.open_dispute(paid.charge_id)
        dispute = payments.retrieve_dispute(account, opened["id"])
        assert (dispute.status, dispute.amount, dispute.charge_id) == (
            "needs_response", 4000, paid.charge_id)
        assert [(line.amount, line.fee) for line in dispute.balance_lines] == [(-4000, 2000)]
        running_simulator.control.close_dispute(dispute.id, "lost")
        assert payments.retrieve_dispute(account, dispute.id).status == "lost"


@pytest.mark.usefixtures("payments_context")
class TestMonthlyGifts:
    def test_a_monthly_gift_from_first_payment_to_cancellation(
            self, running_simulator: Simulator, inbox: Inbox) -> None:
        account = connected_account(running_simulator)
        gift = payments.create_monthly_subscription(
            account, amount=1000, currency="EUR", email="ada@example.org", name="Ada",
            description="Monthly gift to Harbour Lights", metadata={"pledge_id": "pl_7"},
            idempotency_key=f"pledge-{time.time_ns()}")
        assert (gift.status, gift.amount, gift.currency) == ("incomplete", 1000, "EUR")
        assert gift.payment_intent_id is not None
        assert gift.client_secret and gift.client_secret.startswith(gift.payment_intent_id)
        assert gift.metadata == {"pledge_id": "pl_7"}

        payments.simulator_confirm_payment_intent(account, gift.payment_intent_id,
                                                  "4242424242424242", return_url=RETURN_URL)
        assert payments.retrieve_subscription(account, gift.subscription_id).status == \
            "active"
        [event] = inbox.wait_for_type("invoice.paid", account)
        first = payments.paid_invoice(account, event["data"]["object"]["id"])
        assert (first.subscription_id, first.payment_intent_id, first.amount_paid,
                first.billing_reason) == (gift.subscription_id, gift.payment_intent_id, 1000,
                                          "subscription_create")
        assert first.subscription_metadata == {"pledge_id": "pl_7"}
        assert first.charge_id is not None
        assert payments.balance_transaction_for_charge(account, first.charge_id).fee == 40

        running_simulator.control.advance_subscription(gift.subscription_id)
        second_event = inbox.wait_for_type("invoice.paid", account, count=2)[1]
        second = payments.paid_invoice(account, second_event["data"]["object"]["id"])
        assert second.billing_reason == "subscription_cycle"
        assert second.payment_intent_id not in {None, first.payment_intent_id}
        assert second.period_start == first.period_end
        assert second.period_end > second.period_start

        canceled = payments.cancel_subscription(account, gift.subscription_id)
        assert canceled.status == "canceled"
        inbox.wait_for_type("customer.subscription.deleted", account)


@pytest.mark.usefixtures("payments_context")
class TestWebhookEvents:
    def test_a_delivered_event_is_accepted(self, running_simulator: Simulator,
                                           inbox: Inbox) -> None:
        account = connected_account(running_simulator)
        payment = donation(account)
        payments.simulator_confirm_payment_intent(account, payment.id, "4242424242424242",
                                                  return_url=RETURN_URL)
        inbox.wait_for_type("payment_intent.succeeded", account)
        body, headers = next(
            (body, headers) for body, headers in inbox.received
            if json.loads(body)["type"] == "payment_intent.succeeded"
            and json.loads(body)["account"] == account)
        event = payments.construct_webhook_event(body, headers["Stripe-Signature"])
        assert (event.type, event.account, event.livemode) == (
            "payment_intent.succeeded", account, False)
        assert event.object["id"] == payment.id
        assert event.object["metadata"] == {"donation_id": "don_42"}
        again = payments.retrieve_event(account, event.id)
        assert (again.id, again.object["id"]) == (event.id, payment.id)

    def test_a_changed_body_is_refused(self) -> None:
        body = event_body()
        header = signature_header(body, WEBHOOK_SECRET)
        with pytest.raises(payments.InvalidWebhook):
            payments.construct_webhook_event(body.replace(b"2500", b"9999"), header)

    @pytest.mark.parametrize("header", [None, "", "t=123", "v1=abc"])
    def test_a_missing_or_malformed_signature_is_refused(self, header: str | None) -> None:
        with pytest.raises(payments.InvalidWebhook):
            payments.construct_webhook_event(event_body(), header)

    def test_old_signatures_are_refused(self) -> None:
        body = event_body()
        stale = signature_header(body, WEBHOOK_SECRET, int(time.time()) - 301)
        with pytest.raises(payments.InvalidWebhook, match="tolerance"):
            payments.construct_webhook_event(body, stale)
        recent = signature_header(body, WEBHOOK_SECRET, int(time.time()) - 240)
        assert payments.construct_webhook_event(body, recent).type == \
            "payment_intent.succeeded"

    def test_signatures_from_the_future_are_refused(self) -> None:
        body = event_body()
        ahead = signature_header(body, WEBHOOK_SECRET, int(time.time()) + 301)
        # The SDK alone would take it: only age is checked there.
        stripe.Webhook.construct_event(body, ahead, WEBHOOK_SECRET, tolerance=300)
        with pytest.raises(payments.InvalidWebhook, match="future"):
            payments.construct_webhook_event(body, ahead)
        near = signature_header(body, WEBHOOK_SECRET, int(time.time()) + 60)
        assert payments.construct_webhook_event(body, near).id == "evt_test"

    def test_a_body_that_is_not_an_event_is_refused(self) -> None:
        body = b'{"object": "charge"}'
        with pytest.raises(payments.InvalidWebhook):
            payments.construct_webhook_event(body, signature_header(body, WEBHOOK_SECRET))


def event_body() -> bytes:
    event: dict[str, Any] = {
        "id": "evt_test", "object": "event", "account": "acct_test", "created": 1_700_000_000,
        "livemode": False, "type": "payment_intent.succeeded", "api_version": "x",
        "data": {"object": {"id": "pi_test", "object": "payment_intent", "amount": 2500}},
    }
    return json.dumps(event, indent=2).encode()


class TestModes:
    def test_the_simulator_is_test_mode(self, payments_context: Flask) -> None:
        assert payments.uses_simulator()
        assert payments.is_test_mode()

    @pytest.mark.parametrize(("key", "test_mode"), [("sk_test_abc", True),
                                                    ("sk_live_abc", False)])
    def test_a_secret_key_means_stripe_itself(self, app_config: dict[str, Any], key: str,
                                              test_mode: bool) -> None:
        application = create_app({**app_config, "STRIPE_SECRET_KEY": key,
                                  "STRIPE_WEBHOOK_SECRET": "whsec_configured"})
        with application.app_context():
            assert not payments.uses_simulator()
            assert payments.is_test_mode() is test_mode
            with pytest.raises(RuntimeError):
                payments.simulator()
            body = event_body()
            event = payments.construct_webhook_event(
                body, signature_header(body, "whsec_configured"))
            assert event.id == "evt_test"
            if not test_mode:
                with pytest.raises(payments.InvalidStripeRequest, match="test mode"):
                    payments.simulator_confirm_payment_intent(
                        "acct_x", "pi_x", "4242424242424242", return_url=RETURN_URL)

    def test_a_live_key_without_a_webhook_secret_accepts_no_webhook(
            self, app_config: dict[str, Any]) -> None:
        application = create_app({**app_config, "STRIPE_SECRET_KEY": "sk_live_abc"})
        with application.app_context():
            body = event_body()
            with pytest.raises(payments.InvalidWebhook, match="secret"):
                payments.construct_webhook_event(body, signature_header(body, WEBHOOK_SECRET))
