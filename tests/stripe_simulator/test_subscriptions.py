"""Monthly gifts: customers, prices, subscriptions whose first invoice is paid like a
one-time donation, one paid invoice per period, and cancellation."""

from __future__ import annotations

import pytest
import stripe

from portal.stripe_simulator import Simulator, StripeError
from portal.stripe_simulator.billing import add_interval
from tests.stripe_simulator.conftest import Inbox, on

EXPAND = ["latest_invoice.confirmation_secret", "latest_invoice.payments"]


def monthly_gift(client: stripe.StripeClient, account: str,
                 amount: int = 1500) -> stripe.Subscription:
    customer = client.v1.customers.create(params={
        "email": "donor@example.org", "name": "Ada Donor"}, options=on(account))
    price = client.v1.prices.create(params={
        "currency": "eur", "unit_amount": amount, "recurring": {"interval": "month"},
        "product_data": {"name": "Monthly gift"}}, options=on(account))
    return client.v1.subscriptions.create(params={
        "customer": customer.id, "items": [{"price": price.id}],
        "payment_behavior": "default_incomplete",
        "payment_settings": {"save_default_payment_method": "on_subscription"},
        "metadata": {"pledge_id": "pl_1"}, "expand": EXPAND,
    }, options=on(account))


def first_payment_intent(subscription: stripe.Subscription) -> str:
    invoice = subscription.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    payment = invoice.payments.data[0].payment  # type: ignore[union-attr]
    return str(payment.payment_intent)


def test_customers_products_and_prices(client: stripe.StripeClient, account: str) -> None:
    customer = client.v1.customers.create(params={"email": "a@example.org",
                                                  "metadata": {"donor": "d1"}},
                                          options=on(account))
    assert customer.id.startswith("cus_")
    assert client.v1.customers.retrieve(customer.id, options=on(account)).email == \
        "a@example.org"
    product = client.v1.products.create(params={"name": "Monthly gift"}, options=on(account))
    price = client.v1.prices.create(params={
        "currency": "eur", "unit_amount": 1000, "product": product.id,
        "recurring": {"interval": "month"}}, options=on(account))
    fetched = client.v1.prices.retrieve(price.id, params={"expand": ["product"]},
                                        options=on(account))
    assert fetched.recurring is not None
    assert (fetched.type, fetched.recurring.interval, fetched.unit_amount) == (
        "recurring", "month", 1000)
    assert isinstance(fetched.product, stripe.Product)
    assert fetched.product.name == "Monthly gift"


def test_a_new_subscription_waits_for_its_first_payment(client: stripe.StripeClient,
                                                        account: str) -> None:
    subscription = monthly_gift(client, account)
    assert subscription.status == "incomplete"
    invoice = subscription.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    assert (invoice.status, invoice.amount_due, invoice.billing_reason) == (
        "open", 1500, "subscription_create")
    assert invoice.parent is not None
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.subscription == subscription.id
    intent_id = first_payment_intent(subscription)
    assert invoice.confirmation_secret is not None
    assert invoice.confirmation_secret.client_secret.startswith(intent_id + "_secret_")
    intent = client.v1.payment_intents.retrieve(intent_id, options=on(account))
    assert (intent.amount, intent.status) == (1500, "requires_payment_method")
    item = subscription.items.data[0]
    assert item.current_period_end == add_interval(item.current_period_start, "month", 1)


def test_invoices_no_longer_expand_to_a_payment_intent(client: stripe.StripeClient,
                                                       account: str) -> None:
    customer = client.v1.customers.create(params={"email": "b@example.org"},
                                          options=on(account))
    price = client.v1.prices.create(params={
        "currency": "eur", "unit_amount": 1000, "recurring": {"interval": "month"},
        "product_data": {"name": "Gift"}}, options=on(account))
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.subscriptions.create(params={
            "customer": customer.id, "items": [{"price": price.id}],
            "payment_behavior": "default_incomplete",
            "expand": ["latest_invoice.payment_intent"]}, options=on(account))


def test_each_paid_period_is_an_invoice_paid_event(client: stripe.StripeClient,
                                                   simulator: Simulator, inbox: Inbox,
                                                   account: str) -> None:
    subscription = monthly_gift(client, account)
    intent_id = first_payment_intent(subscription)
    client.v1.payment_intents.confirm(intent_id, params={"payment_method": "pm_card_visa"},
                                      options=on(account))
    active = client.v1.subscriptions.retrieve(subscription.id, options=on(account))
    assert active.status == "active"
    assert active.default_payment_method is not None

    [first] = inbox.wait_for_type("invoice.paid", account)
    invoice = first["data"]["object"]
    assert invoice["parent"]["subscription_details"]["subscription"] == subscription.id
    assert invoice["parent"]["subscription_details"]["metadata"] == {"pledge_id": "pl_1"}
    assert (invoice["amount_paid"], invoice["status"]) == (1500, "paid")
    payments = client.v1.invoice_payments.list(
        params={"invoice": invoice["id"], "expand": ["data.payment.payment_intent"]},
        options=on(account))
    paid_intent = payments.data[0].payment.payment_intent
    assert isinstance(paid_intent, stripe.PaymentIntent)
    assert (paid_intent.id, payments.data[0].status) == (intent_id, "paid")
    updated = inbox.wait_for_type("customer.subscription.updated", account)
    assert updated[0]["data"]["previous_attributes"]["status"] == "incomplete"

    renewal = simulator.control.advance_subscription(subscription.id)
    assert (renewal["status"], renewal["billing_reason"]) == ("paid", "subscription_cycle")
    paid = inbox.wait_for_type("invoice.paid", account, count=2)
    assert paid[1]["data"]["object"]["id"] == renewal["id"]
    later = client.v1.subscriptions.retrieve(subscription.id, options=on(account))
    assert later.items.data[0].current_period_start == \
        active.items.data[0].current_period_end
    renewal_payments = client.v1.invoice_payments.list(params={"invoice": renewal["id"]},
                                                       options=on(account))
    renewal_intent = client.v1.payment_intents.retrieve(
        str(renewal_payments.data[0].payment.payment_intent),
        params={"expand": ["latest_charge.balance_transaction"]}, options=on(account))
    charge = renewal_intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert isinstance(charge.balance_transaction, stripe.BalanceTransaction)
    assert charge.balance_transaction.fee == 48


def test_a_declined_renewal_makes_the_subscription_past_due(client: stripe.StripeClient,
                                                            simulator: Simulator,
                                                            inbox: Inbox,
                                                            account: str) -> None:
    subscription = monthly_gift(client, account)
    client.v1.payment_intents.confirm(first_payment_intent(subscription),
                                      params={"payment_method": "pm_card_visa"},
                                      options=on(account))
    renewal = simulator.control.advance_subscription(subscription.id,
                                                     card_number="4000 0000 0000 9995")
    assert renewal["status"] == "open"
    inbox.wait_for_type("invoice.payment_failed", account)
    assert client.v1.subscriptions.retrieve(subscription.id,
                                            options=on(account)).status == "past_due"


def test_an_incomplete_subscription_does_not_move_on(client: stripe.StripeClient,
                                                     simulator: Simulator,
                                                     account: str) -> None:
    subscription = monthly_gift(client, account)
    with pytest.raises(StripeError, match="incomplete"):
        simulator.control.advance_subscription(subscription.id)


def test_cancelling_ends_the_subscription(client: stripe.StripeClient, inbox: Inbox,
                                          account: str) -> None:
    subscription = monthly_gift(client, account)
    client.v1.payment_intents.confirm(first_payment_intent(subscription),
                                      params={"payment_method": "pm_card_visa"},
                                      options=on(account))
    canceled = client.v1.subscriptions.cancel(subscription.id, options=on(account))
    assert canceled.status == "canceled"
    assert canceled.canceled_at is not None
    [deleted] = inbox.wait_for_type("customer.subscription.deleted", account)
    assert deleted["data"]["object"]["id"] == subscription.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(subscription.id, options=on(account))


def test_cancelling_before_the_first_payment_voids_its_invoice(client: stripe.StripeClient,
                                                               account: str) -> None:
    subscription = monthly_gift(client, account)
    intent_id = first_payment_intent(subscription)
    client.v1.subscriptions.cancel(subscription.id, options=on(account))
    invoice = client.v1.invoices.retrieve(str(subscription.latest_invoice.id),  # type: ignore[union-attr]
                                          options=on(account))
    assert invoice.status == "void"
    assert client.v1.payment_intents.retrieve(intent_id,
                                              options=on(account)).status == "canceled"


@pytest.mark.parametrize(("start", "expected"), [
    ("2025-01-31", "2025-02-28"),
    ("2024-01-31", "2024-02-29"),
    ("2025-03-15", "2025-04-15"),
])
def test_months_keep_their_day_or_end_on_the_last_one(start: str, expected: str) -> None:
    from datetime import UTC, datetime

    moment = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp())
    after = datetime.fromtimestamp(add_interval(moment, "month", 1), UTC)
    assert after.date().isoformat() == expected
