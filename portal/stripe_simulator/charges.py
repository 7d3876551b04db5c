"""Connect accounts, PaymentIntents, charges, balance transactions, refunds and disputes.

Each operation takes the request's ``Changes`` and its parameters, changes objects through
it, emits the events Stripe would emit, and returns the object to answer with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portal.stripe_simulator.cards import (
    BY_NUMBER,
    BY_TOKEN,
    MAXIMUM_CHARGE,
    MINIMUM_CHARGE,
    FeeSchedule,
    TestCard,
    display_amount,
)
from portal.stripe_simulator.errors import StripeError, invalid_request, no_such, unexpected_state
from portal.stripe_simulator.forms import Params
from portal.stripe_simulator.objects import Changes, list_object, public
from portal.stripe_simulator.store import now, random_text

ONBOARDING_LINK_SECONDS = 300
AVAILABLE_AFTER_SECONDS = 7 * 24 * 3600

EURO_COUNTRIES = frozenset({
    "AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU",
    "LV", "MT", "NL", "PT", "SI", "SK",
})
OTHER_CURRENCIES = {
    "GB": "gbp", "US": "usd", "CH": "chf", "DK": "dkk", "SE": "sek", "NO": "nok",
    "PL": "pln", "CZ": "czk", "HU": "huf", "RO": "ron", "BG": "bgn", "CA": "cad",
    "AU": "aud", "NZ": "nzd", "JP": "jpy",
}
ONBOARDING_REQUIREMENTS = [
    "business_profile.url", "business_type", "external_account", "representative.first_name",
    "representative.last_name", "tos_acceptance.date", "tos_acceptance.ip",
]


def _default_currency(country: str) -> str:
    if country in EURO_COUNTRIES:
        return "eur"
    return OTHER_CURRENCIES.get(country, "usd")


# ---------------------------------------------------------------------- accounts

def create_account(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("type", "country", "email", "business_type", "business_profile",
                 "capabilities", "metadata", "default_currency", "expand")
    account_type = params.text("type", choices=("express", "standard", "custom")) or "standard"
    country = (params.text("country") or "DE").upper()
    if len(country) != 2 or not country.isalpha():
        raise invalid_request(f"Invalid country: {country}", param="country")
    profile = params.nested("business_profile")
    profile.allow("name", "url", "mcc", "product_description", "support_email")
    capabilities = params.nested("capabilities")
    requested = dict.fromkeys(capabilities.data, "inactive")
    for name in capabilities.data:
        capabilities.nested(name).allow("requested")
    if account_type != "express" and not requested:
        requested = {"card_payments": "inactive", "transfers": "inactive"}
    if account_type == "express" and "card_payments" not in requested:
        raise invalid_request(
            "Express accounts that take payments need the card_payments capability: pass "
            "capabilities[card_payments][requested]=true.", param="capabilities")
    requirements = {
        "alternatives": [], "current_deadline": None,
        "currently_due": list(ONBOARDING_REQUIREMENTS),
        "disabled_reason": "requirements.past_due", "errors": [],
        "eventually_due": list(ONBOARDING_REQUIREMENTS),
        "past_due": list(ONBOARDING_REQUIREMENTS), "pending_verification": [],
    }
    account = changes.create("account", "acct", {
        "business_profile": {
            "mcc": profile.text("mcc"), "name": profile.text("name"),
            "product_description": profile.text("product_description"),
            "support_email": profile.text("support_email"), "support_phone": None,
            "support_url": None, "url": profile.text("url"),
        },
        "business_type": params.text("business_type",
                                     choices=("individual", "company", "non_profit",
                                              "government_entity")),
        "capabilities": requested,
        "charges_enabled": False,
        "controller": {
            "fees": {"payer": "application" if account_type == "express" else "account"},
            "is_controller": True, "type": "application",
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express" if account_type == "express" else "full"},
        },
        "country": country,
        "default_currency": params.currency("default_currency", required=False)
        or _default_currency(country),
        "details_submitted": False,
        "email": params.text("email"),
        "external_accounts": list_object("/v1/accounts/{id}/external_accounts", []),
        "future_requirements": {**requirements, "currently_due": [], "past_due": [],
                                "eventually_due": [], "disabled_reason": None},
        "metadata": params.metadata(),
        "payouts_enabled": False,
        "requirements": requirements,
        "settings": {"payouts": {"debit_negative_balances": True,
                                 "schedule": {"delay_days": 7, "interval": "daily"},
                                 "statement_descriptor": None}},
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": account_type,
    }, account=None)
    account["external_accounts"]["url"] = f"/v1/accounts/{account['id']}/external_accounts"
    changes.put(account)
    return account


def retrieve_account(changes: Changes, account_id: str) -> dict[str, Any]:
    return changes.load("account", account_id, "account", account=None)


def create_account_link(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("account", "refresh_url", "return_url", "type", "collect", "expand")
    account_id = params.required_text("account")
    account = changes.load("account", account_id, "account", account=None)
    link_type = params.required_text("type", choices=("account_onboarding", "account_update"))
    urls = {}
    for name in ("refresh_url", "return_url"):
        url = params.required_text(name)
        if not url.startswith(("http://", "https://")):
            raise invalid_request(f"Not a valid URL: {name} must start with http(s)://",
                                  param=name)
        urls[name] = url
    created = now()
    token = random_text(32)
    changes.set_value(changes.store.key("onboarding", token), json.dumps({
        "account": account["id"], "type": link_type, "expires_at": created +
        ONBOARDING_LINK_SECONDS, "used": False, **urls,
    }), seconds=7 * 24 * 3600)
    return {
        "object": "account_link",
        "created": created,
        "expires_at": created + ONBOARDING_LINK_SECONDS,
        "url": f"{changes.request.base_url}/_simulator/onboarding/{token}",
    }


def complete_onboarding(changes: Changes, account_id: str) -> dict[str, Any]:
    """What filling in Stripe's hosted onboarding does: the account may take payments."""
    account = changes.load("account", account_id, "account", account=None)
    if account["charges_enabled"] and account["details_submitted"]:
        return account
    previous = {
        "capabilities": dict(account["capabilities"]),
        "charges_enabled": account["charges_enabled"],
        "details_submitted": account["details_submitted"],
        "payouts_enabled": account["payouts_enabled"],
        "requirements": {key: account["requirements"][key]
                         for key in ("currently_due", "disabled_reason", "eventually_due",
                                     "past_due")},
    }
    account["capabilities"] = dict.fromkeys(account["capabilities"], "active")
    account["charges_enabled"] = True
    account["payouts_enabled"] = True
    account["details_submitted"] = True
    account["requirements"].update(currently_due=[], disabled_reason=None, eventually_due=[],
                                   past_due=[])
    account["tos_acceptance"] = {"date": now(), "ip": "127.0.0.1", "user_agent": None}
    changes.put(account)
    changes.emit("account.updated", account, previous, account=account["id"])
    return account


# ---------------------------------------------------------------------- payment methods

def payment_method_for(changes: Changes, reference: str, param: str = "payment_method",
                       ) -> dict[str, Any]:
    """A test token (``pm_card_visa``) becomes a new PaymentMethod; an id is looked up."""
    card = BY_TOKEN.get(reference)
    if card is None:
        return changes.load("payment_method", reference, param)
    year = datetime.now(UTC).year + 3
    return changes.create("payment_method", "pm", {
        "allow_redisplay": "unspecified",
        "billing_details": {"address": {"city": None, "country": None, "line1": None,
                                        "line2": None, "postal_code": None, "state": None},
                            "email": None, "name": None, "phone": None, "tax_id": None},
        "card": {
            "brand": card.brand, "checks": {"address_line1_check": None,
                                            "address_postal_code_check": None,
                                            "cvc_check": "pass"},
            "country": card.country, "display_brand": card.brand, "exp_month": 12,
            "exp_year": year, "fingerprint": random_text(16), "funding": card.funding,
            "generated_from": None, "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "regulated_status": "unregulated", "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "customer": None,
        "metadata": {},
        "type": "card",
        "_card": card.number,
    })


def retrieve_payment_method(changes: Changes, payment_method_id: str) -> dict[str, Any]:
    return changes.load("payment_method", payment_method_id)


def _card_of(payment_method: dict[str, Any]) -> TestCard:
    return BY_NUMBER[payment_method["_card"]]


# ---------------------------------------------------------------------- payment intents

def check_amount(amount: int, currency: str) -> None:
    minimum = MINIMUM_CHARGE.get(currency, 1)
    if amount < minimum:
        raise invalid_request(
            f"Amount must be at least {display_amount(minimum, currency)} {currency}",
            code="amount_too_small", param="amount")
    if amount > MAXIMUM_CHARGE:
        raise invalid_request(
            f"Amount must be no more than {display_amount(MAXIMUM_CHARGE, currency)}",
            code="amount_too_large", param="amount")


def require_charges_enabled(changes: Changes) -> None:
    if changes.account is None:
        return
    account = changes.load("account", changes.account, "account", account=None)
    if not account["charges_enabled"]:
        raise invalid_request(
            f"The account {account['id']} cannot take payments yet: its card_payments "
            "capability is inactive until onboarding is complete (charges_enabled is false).")


def new_payment_intent(changes: Changes, *, amount: int, currency: str,
                       metadata: dict[str, str], description: str | None = None,
                       receipt_email: str | None = None, customer: str | None = None,
                       automatic: dict[str, Any] | None = None,
                       setup_future_usage: str | None = None,
                       allowed_types: list[str] | None = None,
                       invoice: str | None = None) -> dict[str, Any]:
    intent = changes.create("payment_intent", "pi", {
        "allowed_payment_method_types": allowed_types,
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": automatic,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": None,
        "confirmation_method": "automatic",
        "currency": currency,
        "customer": customer,
        "description": description,
        "last_payment_error": None,
        "latest_charge": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_options": {"card": {"installments": None, "mandate_options": None,
                                            "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": setup_future_usage,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
        "_invoice": invoice,
    })
    intent["client_secret"] = f"{intent['id']}_secret_{random_text(25)}"
    changes.put(intent)
    changes.emit("payment_intent.created", intent)
    return intent


def create_payment_intent(changes: Changes, fees: FeeSchedule,
                          params: Params) -> dict[str, Any]:
    params.allow("amount", "currency", "automatic_payment_methods",
                 "allowed_payment_method_types", "payment_method_types", "metadata",
                 "receipt_email", "description", "customer", "expand", "confirm",
                 "payment_method", "return_url", "statement_descriptor_suffix",
                 "setup_future_usage")
    amount = params.integer("amount", required=True)
    assert amount is not None
    currency = params.required_currency()
    check_amount(amount, currency)
    automatic_params = params.nested("automatic_payment_methods")
    automatic_params.allow("enabled", "allow_redirects")
    # ``allowed_payment_method_types`` in the SDK's API version; older ones said
    # ``payment_method_types``.
    types = params.strings("allowed_payment_method_types") or \
        params.strings("payment_method_types")
    if types and types != ["card"]:
        raise invalid_request(
            "The simulator takes card payments only: allowed_payment_method_types must be "
            "[card].", param="allowed_payment_method_types")
    enabled = automatic_params.boolean("enabled")
    automatic: dict[str, Any] | None = None
    if enabled or (enabled is None and not types):
        automatic = {"allow_redirects": automatic_params.text(
            "allow_redirects", choices=("always", "never")) or "always", "enabled": True}
    customer = params.text("customer")
    if customer:
        changes.load("customer", customer, "customer")
    require_charges_enabled(changes)
    intent = new_payment_intent(
        changes, amount=amount, currency=currency, metadata=params.metadata(),
        description=params.text("description"), receipt_email=params.text("receipt_email"),
        customer=customer, automatic=automatic, allowed_types=types or None,
        setup_future_usage=params.text("setup_future_usage",
                                       choices=("on_session", "off_session")))
    if params.boolean("confirm"):
        confirm = Params({key: params.data[key] for key in ("payment_method", "return_url")
                          if key in params.data})
        outcome = confirm_payment_intent(changes, fees, intent["id"], confirm)
        if outcome.error is not None:
            raise outcome.error
        return outcome.intent
    return intent


def retrieve_payment_intent(changes: Changes, intent_id: str) -> dict[str, Any]:
    return changes.load("payment_intent", intent_id, "intent")


@dataclass
class PaymentOutcome:
    intent: dict[str, Any]
    charge: dict[str, Any] | None
    #: The card error to answer with; the intent and the failed charge are kept anyway.
    error: StripeError | None


def confirm_payment_intent(changes: Changes, fees: FeeSchedule, intent_id: str,
                           params: Params) -> PaymentOutcome:
    params.allow("payment_method", "return_url", "receipt_email", "expand", "off_session",
                 "setup_future_usage", "mandate_data")
    intent = changes.load("payment_intent", intent_id, "intent")
    status = intent["status"]
    if status == "succeeded":
        raise unexpected_state("You cannot confirm this PaymentIntent because it has already "
                               "succeeded after being previously confirmed.")
    if status == "canceled":
        raise unexpected_state("You cannot confirm this PaymentIntent because it has a status "
                               "of canceled. Only a PaymentIntent with one of the following "
                               "statuses may be confirmed: requires_payment_method, "
                               "requires_confirmation, requires_action.")
    reference = params.text("payment_method") or intent["payment_method"]
    if not reference:
        raise unexpected_state("You cannot confirm this PaymentIntent because it's missing a "
                               "payment method. To confirm it, pass a payment_method.")
    automatic = intent["automatic_payment_methods"] or {}
    if automatic.get("enabled") and automatic.get("allow_redirects") != "never" and \
            not params.text("return_url"):
        raise invalid_request(
            "This PaymentIntent is configured to accept payment methods enabled in your "
            "Dashboard, because some of these payment methods might redirect your customer "
            "off of your page, you must provide a `return_url`. If you don't want to accept "
            "redirect-based payment methods, set `automatic_payment_methods[enabled]` to "
            "`true` and `automatic_payment_methods[allow_redirects]` to `never` when creating "
            "Setup Intents and Payment Intents.", param="return_url")
    if params.text("receipt_email"):
        intent["receipt_email"] = params.text("receipt_email")
    payment_method = payment_method_for(changes, reference)
    return attempt_payment(changes, fees, intent, payment_method)


def attempt_payment(changes: Changes, fees: FeeSchedule, intent: dict[str, Any],
                    payment_method: dict[str, Any]) -> PaymentOutcome:
    """Charge the card of ``payment_method`` for ``intent``, as the card network would."""
    card = _card_of(payment_method)
    charge = _new_charge(changes, intent, payment_method, card)
    changes.add_to_index(f"pi-charges:{intent['id']}", charge["id"])
    intent["latest_charge"] = charge["id"]
    if card.succeeds:
        transaction = changes.create("balance_transaction", "txn", _charge_transaction(
            charge["amount"], charge["currency"], fees.card_fee(charge["amount"]),
            charge["id"], intent.get("description")))
        charge["balance_transaction"] = transaction["id"]
        changes.put(charge)
        intent.update(status="succeeded", amount_received=intent["amount"],
                      payment_method=payment_method["id"], last_payment_error=None)
        changes.put(intent)
        changes.emit("charge.succeeded", charge)
        changes.emit("payment_intent.succeeded", intent)
        return PaymentOutcome(intent, charge, None)
    error = {
        "charge": charge["id"],
        "code": card.error_code,
        "decline_code": card.decline_code,
        "doc_url": f"https://docs.stripe.com/error-codes/{str(card.error_code).replace('_', '-')}",
        "message": card.message,
        "payment_method": public(payment_method),
        "type": "card_error",
    }
    intent.update(status="requires_payment_method", payment_method=None,
                  last_payment_error=error)
    changes.put(intent)
    changes.emit("charge.failed", charge)
    changes.emit("payment_intent.payment_failed", intent)
    declined = StripeError(402, "card_error", card.message, code=card.error_code,
                           decline_code=card.decline_code,
                           extra={"charge": charge["id"],
                                  "payment_intent": changes.render(intent),
                                  "payment_method": public(payment_method)},
                           commit=True)
    return PaymentOutcome(intent, charge, declined)


def _new_charge(changes: Changes, intent: dict[str, Any], payment_method: dict[str, Any],
                card: TestCard) -> dict[str, Any]:
    succeeded = card.succeeds
    return changes.create("charge", "ch", {
        "amount": intent["amount"],
        "amount_captured": intent["amount"] if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": payment_method["billing_details"],
        "calculated_statement_descriptor": "AMPLY DONATION",
        "captured": succeeded,
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": card.error_code,
        "failure_message": card.message or None,
        "fraud_details": {},
        "metadata": dict(intent["metadata"]),
        "on_behalf_of": None,
        "outcome": {
            "network_status": "approved_by_network" if succeeded else "declined_by_network",
            "reason": card.decline_code,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "Payment complete." if succeeded else
            "The bank did not return any further details with this decline.",
            "type": "authorized" if succeeded else "issuer_declined",
        },
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": payment_method["id"],
        "payment_method_details": {
            "card": {**{key: payment_method["card"][key] for key in
                        ("brand", "checks", "country", "exp_month", "exp_year",
                         "fingerprint", "funding", "last4")}, "network": card.brand},
            "type": "card",
        },
        "receipt_email": intent["receipt_email"],
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": None,
    })


def _charge_transaction(amount: int, currency: str, fee: int, source: str,
                        description: str | None) -> dict[str, Any]:
    created = now()
    return _transaction(amount, currency, fee, source, description, "charge", "charge",
                        created, "Stripe processing fees")


def _transaction(amount: int, currency: str, fee: int, source: str, description: str | None,
                 kind: str, category: str, created: int, fee_description: str,
                 ) -> dict[str, Any]:
    return {
        "amount": amount,
        "available_on": created + AVAILABLE_AFTER_SECONDS,
        "created": created,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "application": None, "currency": currency,
                         "description": fee_description, "type": "stripe_fee"}] if fee else [],
        "net": amount - fee,
        "reporting_category": category,
        "source": source,
        "status": "pending",
        "type": kind,
    }


def cancel_payment_intent(changes: Changes, intent_id: str, params: Params) -> dict[str, Any]:
    params.allow("cancellation_reason", "expand")
    intent = changes.load("payment_intent", intent_id, "intent")
    if intent["status"] in {"succeeded", "canceled"}:
        raise unexpected_state(
            f"You cannot cancel this PaymentIntent because it has a status of "
            f"{intent['status']}. Only a PaymentIntent with one of the following statuses may "
            "be canceled: requires_payment_method, requires_capture, requires_confirmation, "
            "requires_action, processing.")
    intent.update(status="canceled", canceled_at=now(), cancellation_reason=params.text(
        "cancellation_reason", choices=("duplicate", "fraudulent", "requested_by_customer",
                                        "abandoned")))
    changes.put(intent)
    changes.emit("payment_intent.canceled", intent)
    return intent


# ---------------------------------------------------------------------- charges, balance

def retrieve_charge(changes: Changes, charge_id: str) -> dict[str, Any]:
    return changes.load("charge", charge_id, "charge")


def retrieve_balance_transaction(changes: Changes, transaction_id: str) -> dict[str, Any]:
    return changes.load("balance_transaction", transaction_id)


# ---------------------------------------------------------------------- refunds

def create_refund(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("charge", "payment_intent", "amount", "reason", "metadata", "expand",
                 "instructions_email")
    charge_id = params.text("charge")
    intent_id = params.text("payment_intent")
    if bool(charge_id) == bool(intent_id):
        raise invalid_request("Pass exactly one of charge or payment_intent.", param="charge")
    if intent_id:
        intent = changes.load("payment_intent", intent_id, "payment_intent")
        if intent["status"] != "succeeded" or not intent["latest_charge"]:
            raise invalid_request(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                "refund.", code="charge_not_refundable", param="payment_intent")
        charge_id = intent["latest_charge"]
    assert charge_id is not None
    charge = changes.load("charge", charge_id, "charge")
    if charge["status"] != "succeeded":
        raise invalid_request(f"Charge {charge_id} has not succeeded and cannot be refunded.",
                              code="charge_not_refundable", param="charge")
    if charge["disputed"]:
        raise invalid_request(f"Charge {charge_id} has been charged back; cannot issue a "
                              "refund.", code="charge_disputed", param="charge")
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise invalid_request(f"Charge {charge_id} has already been refunded.",
                              code="charge_already_refunded", param="charge")
    amount = params.integer("amount", minimum=1)
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise invalid_request(
            f"Refund amount ({display_amount(amount, charge['currency'])}) is greater than "
            f"unrefunded amount on charge ({display_amount(remaining, charge['currency'])})",
            code="amount_too_large", param="amount")
    transaction = changes.create("balance_transaction", "txn", _transaction(
        -amount, charge["currency"], 0, "", "REFUND FOR CHARGE", "refund", "refund", now(),
        "Stripe processing fees"))
    refund = changes.create("refund", "re", {
        "amount": amount,
        "balance_transaction": transaction["id"],
        "charge": charge_id,
        "currency": charge["currency"],
        "description": None,
        "destination_details": {"card": {"reference_status": "pending",
                                         "reference_type": "acquirer_reference_number",
                                         "type": "refund"}, "type": "card"},
        "metadata": params.metadata(),
        "payment_intent": charge["payment_intent"],
        "reason": params.text("reason", choices=("duplicate", "fraudulent",
                                                 "requested_by_customer")),
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    })
    transaction["source"] = refund["id"]
    changes.put(transaction)
    changes.add_to_index(f"charge-refunds:{charge_id}", refund["id"])
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    changes.put(charge)
    changes.emit("refund.created", refund)
    changes.emit("charge.refunded", charge, previous)
    return refund


def retrieve_refund(changes: Changes, refund_id: str) -> dict[str, Any]:
    return changes.load("refund", refund_id, "refund")


def list_refunds(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("charge", "payment_intent", "limit", "expand", "starting_after")
    limit = params.integer("limit", minimum=1, maximum=100) or 10
    charge_ids: list[str] = []
    if params.text("charge"):
        charge_ids = [changes.load("charge", params.required_text("charge"), "charge")["id"]]
    elif params.text("payment_intent"):
        intent = changes.load("payment_intent", params.required_text("payment_intent"),
                              "payment_intent")
        charge_ids = changes.index(f"pi-charges:{intent['id']}")
    else:
        raise invalid_request("The simulator lists refunds of one charge or payment_intent.",
                              param="charge")
    refunds = [refund for charge_id in charge_ids
               for refund in changes.find_many(changes.index(f"charge-refunds:{charge_id}"))]
    # Newest first: indexes keep creation order, which ``created`` (in seconds) cannot.
    refunds.reverse()
    return page(refunds, "/v1/refunds", limit, params.text("starting_after"))


def page(items: list[dict[str, Any]], url: str, limit: int,
          starting_after: str | None) -> dict[str, Any]:
    if starting_after:
        ids = [item["id"] for item in items]
        if starting_after not in ids:
            raise no_such("object", starting_after, "starting_after")
        items = items[ids.index(starting_after) + 1:]
    return list_object(url, items[:limit], has_more=len(items) > limit)


# ---------------------------------------------------------------------- disputes

def open_dispute(changes: Changes, fees: FeeSchedule, charge_id: str, *,
                 amount: int | None = None, reason: str = "fraudulent") -> dict[str, Any]:
    """The cardholder disputes the charge: the amount and a dispute fee are withdrawn."""
    charge = changes.load("charge", charge_id, "charge")
    if charge["status"] != "succeeded":
        raise invalid_request(f"Charge {charge_id} did not succeed; it cannot be disputed.")
    if charge["disputed"]:
        raise invalid_request(f"Charge {charge_id} is already disputed.")
    disputed = charge["amount"] if amount is None else amount
    if not 0 < disputed <= charge["amount"]:
        raise invalid_request("The disputed amount must be between 1 and the charge amount.",
                              param="amount")
    dispute = changes.create("dispute", "dp", {
        "amount": disputed,
        "balance_transactions": [],
        "charge": charge_id,
        "currency": charge["currency"],
        "evidence": {"customer_email_address": None, "customer_name": None,
                     "product_description": None, "receipt": None, "refund_policy": None,
                     "uncategorized_text": None},
        "evidence_details": {"due_by": now() + 7 * 24 * 3600, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": False,
        "metadata": {},
        "network_reason_code": "10.4" if reason == "fraudulent" else None,
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "needs_response",
    })
    withdrawal = changes.create("balance_transaction", "txn", _transaction(
        -disputed, charge["currency"], fees.dispute_fee, dispute["id"],
        f"Chargeback withdrawal for {charge_id}", "adjustment", "dispute", now(),
        "Dispute fee"))
    dispute["balance_transactions"] = [public(withdrawal)]
    changes.put(dispute)
    charge["disputed"] = True
    changes.put(charge)
    changes.emit("charge.dispute.created", dispute)
    changes.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(changes: Changes, dispute_id: str, outcome: str) -> dict[str, Any]:
    """The card network decides: ``won`` gives the amount back, ``lost`` keeps it gone."""
    if outcome not in {"won", "lost"}:
        raise invalid_request("outcome must be won or lost", param="outcome")
    dispute = changes.load("dispute", dispute_id)
    if dispute["status"] in {"won", "lost"}:
        raise invalid_request(f"Dispute {dispute_id} is already closed ({dispute['status']}).")
    previous = {"status": dispute["status"]}
    dispute["status"] = outcome
    if outcome == "won":
        reinstated = changes.create("balance_transaction", "txn", _transaction(
            dispute["amount"], dispute["currency"], 0, dispute_id,
            f"Chargeback reversal for {dispute['charge']}", "adjustment", "dispute_reversal",
            now(), "Dispute fee"))
        dispute["balance_transactions"].append(public(reinstated))
    changes.put(dispute)
    if outcome == "won":
        changes.emit("charge.dispute.funds_reinstated", dispute)
    changes.emit("charge.dispute.closed", dispute, previous)
    return dispute


def retrieve_dispute(changes: Changes, dispute_id: str) -> dict[str, Any]:
    return changes.load("dispute", dispute_id, "dispute")


# ---------------------------------------------------------------------- events

def retrieve_event(changes: Changes, event_id: str) -> dict[str, Any]:
    return changes.load("event", event_id)


def list_events(changes: Changes, params: Params) -> dict[str, Any]:
    params.allow("limit", "type", "types", "starting_after", "expand", "created",
                 "delivery_success")
    limit = params.integer("limit", minimum=1, maximum=100) or 10
    wanted = set(params.strings("types"))
    if params.text("type"):
        wanted.add(params.required_text("type"))
    ids = changes.index(f"events:{changes.account or 'platform'}")
    ids.reverse()
    events = changes.find_many(ids)
    if wanted:
        events = [event for event in events if _type_matches(event["type"], wanted)]
    return page(events, "/v1/events", limit, params.text("starting_after"))


def _type_matches(event_type: str, wanted: set[str]) -> bool:
    return any(event_type == pattern or (pattern.endswith(".*") and
                                         event_type.startswith(pattern[:-1]))
               for pattern in wanted)
