"""Customers, products, prices, subscriptions, invoices and invoice payments.

Objects have the shape of the API version the installed SDK speaks: an invoice names its
subscription under ``parent.subscription_details`` and its PaymentIntents through invoice
payments (``GET /v1/invoice_payments?invoice=…``), and ``confirmation_secret`` carries the
client secret of its PaymentIntent.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from portal.stripe_simulator.cards import FeeSchedule
from portal.stripe_simulator.charges import (
    PaymentOutcome,
    attempt_payment,
    check_amount,
    new_payment_intent,
    page,
    payment_method_for,
    require_charges_enabled,
)
from portal.stripe_simulator.errors import StripeError, invalid_request
from portal.stripe_simulator.forms import Params
from portal.stripe_simulator.objects import Changes, list_object, public
from portal.stripe_simulator.store import now, random_text

INTERVALS = ("day", "week", "month", "year")
PAYMENT_BEHAVIOURS = ("allow_incomplete", "default_incomplete", "error_if_incomplete")


def add_interval(moment: int, interval: str, count: int) -> int:
    """``moment`` plus ``count`` intervals; months keep the day, or the month's last day."""
    start = datetime.fromtimestamp(moment, UTC)
    if interval == "day":
        return int((start + timedelta(days=count)).timestamp())
    if interval == "week":
        return int((start + timedelta(weeks=count)).timestamp())
    months = count * (12 if interval == "year" else 1)
    years, month_index = divmod(start.month - 1 + months, 12)
    year = start.year + years
    day = min(start.day, calendar.monthrange(year, month_index + 1)[1])
    return int(start.replace(year=year, month=month_index + 1, day=day).timestamp())


# ---------------------------------------------------------------------- customers

def create_customer(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("email", "name", "description", "metadata", "phone", "preferred_locales",
                 "payment_method", "invoice_settings", "expand")
    settings = params.nested("invoice_settings")
    settings.allow("default_payment_method")
    customer = changes.create("customer", "cus", {
        "address": None,
        "balance": 0,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": params.text("description"),
        "discount": None,
        "email": params.text("email", max_length=512),
        "invoice_prefix": random_text(8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                             "footer": None, "rendering_options": None},
        "metadata": params.metadata(),
        "name": params.text("name", max_length=256),
        "next_invoice_sequence": 1,
        "phone": params.text("phone"),
        "preferred_locales": params.strings("preferred_locales"),
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    })
    attach = params.text("payment_method")
    if attach:
        method = payment_method_for(changes, attach)
        method["customer"] = customer["id"]
        changes.put(method)
    default = settings.text("default_payment_method")
    if default:
        method = payment_method_for(changes, default, "invoice_settings[default_payment_method]")
        method["customer"] = customer["id"]
        changes.put(method)
        customer["invoice_settings"]["default_payment_method"] = method["id"]
        changes.put(customer)
    changes.emit("customer.created", customer)
    return customer


def retrieve_customer(changes: Changes, customer_id: str) -> dict[str, Any]:
    return changes.load("customer", customer_id, "customer")


# ---------------------------------------------------------------------- products, prices

def _new_product(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("name", "description", "metadata", "active", "statement_descriptor",
                 "unit_label", "expand")
    product = changes.create("product", "prod", {
        "active": params.boolean("active") is not False,
        "default_price": None,
        "description": params.text("description"),
        "images": [],
        "marketing_features": [],
        "metadata": params.metadata(),
        "name": params.required_text("name"),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": params.text("statement_descriptor"),
        "tax_code": None,
        "type": "service",
        "unit_label": params.text("unit_label"),
        "url": None,
    })
    product["updated"] = product["created"]
    changes.put(product)
    changes.emit("product.created", product)
    return product


def create_product(changes: Changes, params: Params) -> dict[str, Any]:
    return _new_product(changes, params)


def retrieve_product(changes: Changes, product_id: str) -> dict[str, Any]:
    return changes.load("product", product_id, "id")


def _recurring(params: Params) -> dict[str, Any] | None:
    if not params.data:
        return None
    params.allow("interval", "interval_count", "usage_type")
    return {
        "interval": params.required_text("interval", choices=INTERVALS),
        "interval_count": params.integer("interval_count", minimum=1, maximum=12) or 1,
        "meter": None,
        "trial_period_days": None,
        "usage_type": params.text("usage_type", choices=("licensed",)) or "licensed",
    }


def _new_price(changes: Changes, *, currency: str, unit_amount: int, product: str,
               recurring: dict[str, Any] | None, metadata: dict[str, str],
               nickname: str | None = None, lookup_key: str | None = None,
               active: bool = True) -> dict[str, Any]:
    price = changes.create("price", "price", {
        "active": active,
        "billing_scheme": "per_unit",
        "currency": currency,
        "custom_unit_amount": None,
        "lookup_key": lookup_key,
        "metadata": metadata,
        "nickname": nickname,
        "product": product,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    })
    changes.emit("price.created", price)
    return price


def create_price(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("currency", "unit_amount", "recurring", "product", "product_data", "metadata",
                 "nickname", "lookup_key", "active", "expand")
    currency = params.required_currency()
    unit_amount = params.integer("unit_amount", required=True, minimum=0)
    assert unit_amount is not None
    product_id = params.text("product")
    product_data = params.nested("product_data")
    if bool(product_id) == bool(product_data.data):
        raise invalid_request("Pass exactly one of product or product_data.", param="product")
    if product_id:
        changes.load("product", product_id, "product")
    else:
        product_id = _new_product(changes, product_data)["id"]
    return _new_price(changes, currency=currency, unit_amount=unit_amount, product=product_id,
                      recurring=_recurring(params.nested("recurring")),
                      metadata=params.metadata(), nickname=params.text("nickname"),
                      lookup_key=params.text("lookup_key"),
                      active=params.boolean("active") is not False)


def retrieve_price(changes: Changes, price_id: str) -> dict[str, Any]:
    return changes.load("price", price_id, "price")


# ---------------------------------------------------------------------- subscriptions

def _item_price(changes: Changes, item: Params) -> dict[str, Any]:
    item.allow("price", "price_data", "quantity", "metadata")
    price_id = item.text("price")
    data = item.nested("price_data")
    if bool(price_id) == bool(data.data):
        raise invalid_request("Each item needs exactly one of price or price_data.",
                              param=item.name("price"))
    if price_id:
        price = changes.load("price", price_id, item.name("price"))
    else:
        data.allow("currency", "product", "unit_amount", "recurring", "tax_behavior")
        product = data.required_text("product")
        changes.load("product", product, data.name("product"))
        unit_amount = data.integer("unit_amount", required=True, minimum=0)
        assert unit_amount is not None
        recurring = _recurring(data.nested("recurring"))
        if recurring is None:
            raise invalid_request("price_data needs recurring[interval].",
                                  param=data.name("recurring"))
        price = _new_price(changes, currency=data.required_currency(), unit_amount=unit_amount,
                           product=product, recurring=recurring, metadata={}, active=False)
    if not price["recurring"]:
        raise invalid_request(
            f"The price specified ({price['id']}) is a one-time price; subscriptions need a "
            "recurring price.", param=item.name("price"))
    return price


def _subscription_prices(changes: Changes, items: list[Params],
                         ) -> tuple[list[dict[str, Any]], list[int]]:
    """The items' prices and quantities; one currency and one billing cycle for all."""
    prices = [_item_price(changes, item) for item in items]
    quantities = [item.integer("quantity", minimum=1) or 1 for item in items]
    currencies = {price["currency"] for price in prices}
    cycles = {(price["recurring"]["interval"], price["recurring"]["interval_count"])
              for price in prices}
    if len(currencies) > 1 or len(cycles) > 1:
        raise invalid_request("All prices of a subscription need the same currency and "
                              "billing interval.", param="items")
    total = sum(price["unit_amount"] * quantity
                for price, quantity in zip(prices, quantities, strict=True))
    check_amount(total, prices[0]["currency"])
    return prices, quantities


def _pay_first_invoice(changes: Changes, fees: FeeSchedule, intent: dict[str, Any],
                       method_id: str | None, behaviour: str) -> None:
    """``allow_incomplete``/``error_if_incomplete``: charge the default payment method now."""
    if method_id is None:
        if behaviour == "error_if_incomplete":
            raise invalid_request(
                "This customer has no attached payment source or default payment method.",
                code="resource_missing")
        return
    method = changes.load("payment_method", method_id, "default_payment_method")
    outcome = attempt_payment(changes, fees, intent, method)
    settle_invoice(changes, outcome)
    if outcome.error is not None and behaviour == "error_if_incomplete":
        declined = outcome.error
        # Nothing is kept: the subscription is not created.
        raise StripeError(declined.status, declined.error_type, declined.message,
                          code=declined.code, decline_code=declined.decline_code,
                          extra=declined.extra)


def create_subscription(changes: Changes, fees: FeeSchedule, params: Params) -> dict[str, Any]:
    params.allow("customer", "items", "payment_behavior", "payment_settings",
                 "default_payment_method", "metadata", "description", "expand",
                 "collection_method", "off_session", "currency")
    customer = changes.load("customer", params.required_text("customer"), "customer")
    items = params.items("items")
    if not items:
        raise invalid_request("Missing required param: items.", code="parameter_missing",
                              param="items")
    if len(items) > 20:
        raise invalid_request("A subscription can have at most 20 items.", param="items")
    behaviour = params.text("payment_behavior", choices=PAYMENT_BEHAVIOURS) or \
        "allow_incomplete"
    params.text("collection_method", choices=("charge_automatically",))
    settings = params.nested("payment_settings")
    settings.allow("save_default_payment_method", "payment_method_types")
    save = settings.text("save_default_payment_method", choices=("off", "on_subscription")) or \
        "off"
    if settings.strings("payment_method_types") not in ([], ["card"]):
        raise invalid_request("The simulator takes card payments only.",
                              param="payment_settings[payment_method_types]")
    default_method = params.text("default_payment_method")
    if default_method:
        changes.load("payment_method", default_method, "default_payment_method")
    require_charges_enabled(changes)

    prices, quantities = _subscription_prices(changes, items)
    currency = prices[0]["currency"]
    interval = prices[0]["recurring"]["interval"]
    interval_count = prices[0]["recurring"]["interval_count"]
    start = now()
    period_end = add_interval(start, interval, interval_count)
    subscription = changes.create("subscription", "sub", {
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": start,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "currency": currency,
        "customer": customer["id"],
        "days_until_due": None,
        "default_payment_method": default_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": params.text("description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": None,
        "latest_invoice": None,
        "metadata": params.metadata(),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": save},
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start,
        "status": "incomplete",
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
        "_periods": 0,
        "_interval": [interval, interval_count],
    })
    item_objects = [{
        "id": f"si_{random_text(14)}", "object": "subscription_item",
        "billing_thresholds": None, "created": start, "current_period_end": period_end,
        "current_period_start": start, "discounts": [], "metadata": {}, "plan": None,
        "price": public(price), "quantity": quantity, "subscription": subscription["id"],
        "tax_rates": [],
    } for price, quantity in zip(prices, quantities, strict=True)]
    subscription["items"] = list_object(
        f"/v1/subscription_items?subscription={subscription['id']}", item_objects)
    subscription["items"]["total_count"] = len(item_objects)
    _, intent = _new_invoice(changes, subscription, customer, "subscription_create",
                             (start, start))
    changes.emit("customer.subscription.created", subscription)

    if behaviour != "default_incomplete":
        method_id = default_method or customer["invoice_settings"]["default_payment_method"]
        _pay_first_invoice(changes, fees, intent, method_id, behaviour)
    found = changes.find(subscription["id"])
    assert found is not None
    return found


def _new_invoice(changes: Changes, subscription: dict[str, Any], customer: dict[str, Any],
                 reason: str, period: tuple[int, int],
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finalized invoice for the subscription's current period, and its PaymentIntent."""
    items = subscription["items"]["data"]
    total = sum(item["price"]["unit_amount"] * item["quantity"] for item in items)
    sequence = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = sequence + 1
    changes.put(customer)
    created = now()
    invoice = changes.create("invoice", "in", {
        "account_country": None,
        "account_name": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_paid_off_stripe": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                          "provider": None, "status": None},
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "currency": subscription["currency"],
        "customer": customer["id"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": created,
        "ending_balance": 0,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "last_finalization_error": None,
        "lines": None,
        "metadata": {},
        "next_payment_attempt": None,
        "number": f"{customer['invoice_prefix']}-{sequence:04d}",
        "on_behalf_of": None,
        "parent": {"quote_details": None,
                   "subscription_details": {"metadata": dict(subscription["metadata"]),
                                            "subscription": subscription["id"]},
                   "type": "subscription_details"},
        "period_end": period[1],
        "period_start": period[0],
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "open",
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None,
                               "paid_at": None, "voided_at": None},
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_taxes": [],
        "webhooks_delivered_at": created,
        "_payment_intent": None,
    })
    lines = []
    for item in items:
        price = item["price"]
        lines.append({
            "id": f"il_{random_text(24)}", "object": "line_item",
            "amount": price["unit_amount"] * item["quantity"], "currency": price["currency"],
            "description": f"{item['quantity']} × subscription",
            "discount_amounts": [], "discountable": True, "discounts": [],
            "invoice": invoice["id"], "livemode": False, "metadata": {},
            "parent": {"invoice_item_details": None,
                       "subscription_item_details": {
                           "invoice_item": None, "proration": False,
                           "proration_details": {"credited_items": None},
                           "subscription": subscription["id"],
                           "subscription_item": item["id"]},
                       "type": "subscription_item_details"},
            "period": {"end": item["current_period_end"],
                       "start": item["current_period_start"]},
            "pretax_credit_amounts": [],
            "pricing": {"price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details",
                        "unit_amount_decimal": price["unit_amount_decimal"]},
            "quantity": item["quantity"], "taxes": [],
        })
    invoice["lines"] = list_object(f"/v1/invoices/{invoice['id']}/lines", lines)
    invoice["lines"]["total_count"] = len(lines)
    save = subscription["payment_settings"]["save_default_payment_method"]
    intent = new_payment_intent(
        changes, amount=total, currency=subscription["currency"], metadata={},
        description="Subscription creation" if reason == "subscription_create" else
        "Subscription update", customer=customer["id"],
        setup_future_usage="off_session" if save == "on_subscription" else None,
        invoice=invoice["id"])
    invoice["_payment_intent"] = intent["id"]
    changes.put(invoice)
    invoice_payment = changes.create("invoice_payment", "inpay", {
        "amount_paid": None,
        "amount_requested": total,
        "currency": subscription["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "payment": {"payment_intent": intent["id"], "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    })
    changes.add_to_index(f"invoice-payments:{invoice['id']}", invoice_payment["id"])
    subscription["latest_invoice"] = invoice["id"]
    changes.put(subscription)
    changes.emit("invoice.created", invoice)
    changes.emit("invoice.finalized", invoice)
    return invoice, intent


def settle_invoice(changes: Changes, outcome: PaymentOutcome) -> None:
    """After a payment attempt on an invoice's PaymentIntent: the invoice, its payment and
    its subscription follow, with their events."""
    invoice_id = outcome.intent.get("_invoice")
    if not invoice_id:
        return
    invoice = changes.load("invoice", invoice_id, account=outcome.intent["_account"])
    subscription_id = invoice["parent"]["subscription_details"]["subscription"]
    subscription = changes.load("subscription", subscription_id,
                                account=outcome.intent["_account"])
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    previous: dict[str, Any] = {}
    if outcome.error is None:
        paid_at = now()
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = paid_at
        changes.put(invoice)
        for payment in changes.find_many(changes.index(f"invoice-payments:{invoice_id}")):
            if payment["payment"]["payment_intent"] == outcome.intent["id"]:
                payment.update(status="paid", amount_paid=invoice["amount_due"])
                payment["status_transitions"]["paid_at"] = paid_at
                changes.put(payment)
        changes.emit("invoice.paid", invoice)
        changes.emit("invoice.payment_succeeded", invoice)
        if subscription["status"] in {"incomplete", "past_due"}:
            previous["status"] = subscription["status"]
            subscription["status"] = "active"
        method_id = outcome.intent["payment_method"]
        save = subscription["payment_settings"]["save_default_payment_method"]
        if save == "on_subscription" and subscription["default_payment_method"] != method_id:
            previous["default_payment_method"] = subscription["default_payment_method"]
            subscription["default_payment_method"] = method_id
            method = changes.load("payment_method", method_id,
                                  account=outcome.intent["_account"])
            method["customer"] = subscription["customer"]
            changes.put(method)
    else:
        changes.put(invoice)
        changes.emit("invoice.payment_failed", invoice)
        if subscription["status"] == "active":
            previous["status"] = "active"
            subscription["status"] = "past_due"
    if previous:
        changes.put(subscription)
        changes.emit("customer.subscription.updated", subscription, previous)


def advance_subscription(changes: Changes, fees: FeeSchedule, subscription_id: str,
                         payment_method: str | None = None) -> dict[str, Any]:
    """Move the subscription into its next period: a new invoice, paid with the saved card
    (or ``payment_method``, a test token or id, to simulate a renewal with another card)."""
    subscription = changes.load("subscription", subscription_id)
    if subscription["status"] not in {"active", "past_due"}:
        raise invalid_request(
            f"Subscription {subscription_id} is {subscription['status']}: only an active or "
            "past_due subscription moves to a next period.")
    customer = changes.load("customer", subscription["customer"])
    interval, count = subscription["_interval"]
    periods = subscription["_periods"] + 1
    anchor = subscription["billing_cycle_anchor"]
    old_start = subscription["items"]["data"][0]["current_period_start"]
    old_end = subscription["items"]["data"][0]["current_period_end"]
    for item in subscription["items"]["data"]:
        item["current_period_start"] = add_interval(anchor, interval, count * periods)
        item["current_period_end"] = add_interval(anchor, interval, count * (periods + 1))
    subscription["_periods"] = periods
    previous = {"latest_invoice": subscription["latest_invoice"]}
    _, intent = _new_invoice(changes, subscription, customer, "subscription_cycle",
                             (old_start, old_end))
    changes.emit("customer.subscription.updated", subscription, previous)
    method_id = payment_method or subscription["default_payment_method"] or \
        customer["invoice_settings"]["default_payment_method"]
    if method_id is None:
        settle_invoice(changes, PaymentOutcome(intent, None, invalid_request(
            "No payment method to charge.")))
    else:
        method = payment_method_for(changes, method_id)
        settle_invoice(changes, attempt_payment(changes, fees, intent, method))
    found = changes.find(subscription["latest_invoice"])
    assert found is not None
    return found


def retrieve_subscription(changes: Changes, subscription_id: str) -> dict[str, Any]:
    return changes.load("subscription", subscription_id, "subscription_exposed_id")


def cancel_subscription(changes: Changes, subscription_id: str,
                        params: Params) -> dict[str, Any]:
    params.allow("invoice_now", "prorate", "cancellation_details", "expand")
    details = params.nested("cancellation_details")
    details.allow("comment", "feedback")
    subscription = changes.load("subscription", subscription_id, "subscription_exposed_id")
    if subscription["status"] in {"canceled", "incomplete_expired"}:
        raise invalid_request(f"The subscription {subscription_id} has already been "
                              "canceled.", param="subscription_exposed_id")
    invoice = changes.find(subscription["latest_invoice"]) if \
        subscription["latest_invoice"] else None
    if invoice is not None and invoice["status"] == "open":
        moment = now()
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = moment
        changes.put(invoice)
        changes.emit("invoice.voided", invoice)
        intent = changes.find(invoice["_payment_intent"])
        if intent is not None and intent["status"] != "succeeded":
            intent.update(status="canceled", canceled_at=moment,
                          cancellation_reason="void_invoice")
            changes.put(intent)
            changes.emit("payment_intent.canceled", intent)
    moment = now()
    subscription.update(status="canceled", canceled_at=moment, ended_at=moment)
    subscription["cancellation_details"] = {
        "comment": details.text("comment"),
        "feedback": details.text("feedback", choices=(
            "customer_service", "low_quality", "missing_features", "other", "switched_service",
            "too_complex", "too_expensive", "unused")),
        "reason": "cancellation_requested",
    }
    changes.put(subscription)
    changes.emit("customer.subscription.deleted", subscription)
    return subscription


# ---------------------------------------------------------------------- invoices

def retrieve_invoice(changes: Changes, invoice_id: str) -> dict[str, Any]:
    return changes.load("invoice", invoice_id, "invoice")


def retrieve_invoice_payment(changes: Changes, payment_id: str) -> dict[str, Any]:
    return changes.load("invoice_payment", payment_id, "invoice_payment")


def list_invoice_payments(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("invoice", "limit", "expand", "starting_after", "status", "payment")
    limit = params.integer("limit", minimum=1, maximum=100) or 10
    invoice = changes.load("invoice", params.required_text("invoice"), "invoice")
    payments = changes.find_many(changes.index(f"invoice-payments:{invoice['id']}"))
    payments.reverse()
    status = params.text("status", choices=("canceled", "open", "paid"))
    if status:
        payments = [payment for payment in payments if payment["status"] == status]
    return page(payments, "/v1/invoice_payments", limit, params.text("starting_after"))
