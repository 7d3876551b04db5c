"""The one module that talks to Stripe: connected accounts, donations, refunds, disputes,
monthly gifts and webhook events, through the official ``stripe`` SDK.

Donations are direct charges on each organisation's own connected account (the platform
takes no fee). Without ``STRIPE_SECRET_KEY`` the portal is in test mode against the
Stripe simulator (``portal.stripe_simulator``), through the same SDK: only the API address
differs. Functions take ids and plain values, return frozen dataclasses and raise the
``PaymentError`` family; callers never see a ``stripe`` object or exception. Money is an
integer in minor units with an upper-case ISO 4217 code, as everywhere in the portal.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import stripe
from flask import Flask, current_app

from portal.config import ConfigError
from portal.services.errors import DomainError
from portal.stripe_simulator import (
    FeeSchedule,
    Simulator,
    SimulatorSettings,
    development_webhook_secret,
    running_simulator,
)
from portal.stripe_simulator.cards import BY_NUMBER, normalise_number, passes_luhn

if TYPE_CHECKING:
    from stripe.params import (
        AccountCreateParams,
        AccountCreateParamsBusinessProfile,
        CustomerCreateParams,
        PaymentIntentConfirmParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
    )

#: The key the SDK presents to the simulator; the simulator accepts any test key.
SIMULATOR_KEY = "sk_test_simulator"
#: Webhooks older than this, or dated further ahead than this, are refused (seconds).
WEBHOOK_TOLERANCE = 300
MONTHLY_GIFT_EXPAND = ["latest_invoice.confirmation_secret", "latest_invoice.payments"]


# ---------------------------------------------------------------------- errors

class PaymentError(DomainError):
    """Stripe did not do what was asked. ``str(error)`` is safe to show to people."""

    status_code = 502


class CardDeclined(PaymentError):
    """The donor's card was refused; the message tells the donor what to do next."""

    status_code = 402

    def __init__(self, message: str, *, code: str | None, decline_code: str | None,
                 payment_intent_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id


class StripeRateLimited(PaymentError):
    """Too many requests to Stripe at once; try again in a moment."""

    status_code = 429


class StripeUnavailable(PaymentError):
    """Stripe did not answer in time, or answered with a server error."""

    status_code = 503


class InvalidStripeRequest(PaymentError):
    """Stripe refused the request itself (a bug or a misconfiguration, not the donor)."""

    status_code = 400

    def __init__(self, message: str, *, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message, field=param)
        self.code = code
        self.param = param


class StripeObjectNotFound(InvalidStripeRequest):
    status_code = 404


class IdempotencyConflict(InvalidStripeRequest):
    """An idempotency key was used again with different parameters."""

    status_code = 409


class InvalidWebhook(PaymentError):
    """A webhook whose signature, age or body is not acceptable."""

    status_code = 400


_DONOR_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds. Please try another card.",
    "expired_card": "Your card has expired. Please use another card.",
    "incorrect_cvc": "The security code of your card is incorrect. Please check it and "
                     "try again.",
    "incorrect_number": "Your card number is incorrect. Please check it and try again.",
    "processing_error": "Something went wrong while processing your card. Please try again.",
    "test_mode_live_card": "This is a test donation page: real cards are refused. Use a test "
                           "card such as 4242 4242 4242 4242.",
}
_GENERIC_DECLINE = "Your card was declined. Please try another card or contact your bank."


def donor_message(code: str | None, decline_code: str | None) -> str:
    """What to tell a donor about a refused card, without revealing fraud signals."""
    return _DONOR_MESSAGES.get(decline_code or "", _DONOR_MESSAGES.get(code or "",
                                                                       _GENERIC_DECLINE))


# ---------------------------------------------------------------------- values

@dataclass(frozen=True)
class ConnectedAccount:
    id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    country: str | None
    default_currency: str | None
    email: str | None
    #: Information Stripe still needs before the account can take payments.
    requirements_due: tuple[str, ...]


@dataclass(frozen=True)
class OnboardingLink:
    """Stripe's hosted onboarding for one account; single use, valid a few minutes."""

    url: str
    expires_at: datetime


@dataclass(frozen=True)
class PaymentFailure:
    code: str | None
    decline_code: str | None
    #: For the donor (``donor_message``), not Stripe's wording.
    message: str


@dataclass(frozen=True)
class Payment:
    """A PaymentIntent: one attempt to take one donation."""

    id: str
    status: str
    amount: int
    currency: str
    client_secret: str | None
    metadata: Mapping[str, str]
    charge_id: str | None
    customer_id: str | None
    receipt_email: str | None
    description: str | None
    failure: PaymentFailure | None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class ChargeFees:
    """What a successful charge brought in: ``net = amount - fee`` (Stripe's fee)."""

    charge_id: str
    balance_transaction_id: str
    amount: int
    fee: int
    net: int
    currency: str
    available_on: datetime


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent_id: str | None
    status: str
    amount: int
    amount_refunded: int
    refunded: bool
    disputed: bool
    currency: str
    balance_transaction_id: str | None
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    currency: str
    status: str | None
    reason: str | None
    balance_transaction_id: str | None
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class BalanceLine:
    """One movement of money on the account's balance (a dispute's withdrawal, say)."""

    id: str
    amount: int
    fee: int
    net: int
    currency: str
    reporting_category: str


@dataclass(frozen=True)
class Dispute:
    id: str
    charge_id: str
    payment_intent_id: str | None
    amount: int
    currency: str
    #: ``needs_response`` … then ``won`` or ``lost``.
    status: str
    reason: str
    balance_lines: tuple[BalanceLine, ...]


@dataclass(frozen=True)
class MonthlyGift:
    """A subscription that charges the donor every month.

    Right after ``create_monthly_subscription`` it is ``incomplete``: the first invoice's
    payment (``payment_intent_id``, ``client_secret``) must be confirmed like a one-time
    donation; then it becomes ``active`` and later invoices are charged automatically.
    """

    subscription_id: str
    customer_id: str
    status: str
    amount: int
    currency: str
    invoice_id: str | None
    payment_intent_id: str | None
    client_secret: str | None
    current_period_end: datetime | None
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class PaidInvoice:
    """One paid period of a monthly gift (from ``invoice.paid``), with its payment."""

    invoice_id: str
    subscription_id: str | None
    customer_id: str | None
    status: str | None
    billing_reason: str | None
    amount_paid: int
    currency: str
    payment_intent_id: str | None
    charge_id: str | None
    #: The period this invoice pays for (a month of a monthly gift).
    period_start: datetime
    period_end: datetime
    #: The subscription's metadata when the invoice was made.
    subscription_metadata: Mapping[str, str]


@dataclass(frozen=True)
class WebhookEvent:
    """A verified event. ``object`` is the changed object as plain JSON values."""

    id: str
    type: str
    #: The connected account the event happened on (``None``: the platform).
    account: str | None
    created: datetime
    livemode: bool
    object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] | None = None
    request_idempotency_key: str | None = field(default=None, compare=False)


# ---------------------------------------------------------------------- the connection

@dataclass
class _Connection:
    client: stripe.StripeClient
    simulator: Simulator | None


class _State:
    """Per app: the settings, and the client (and simulator) made on first use."""

    def __init__(self, app: Flask) -> None:
        self.config = app.config
        self.lock = threading.Lock()
        self.connection: _Connection | None = None


def init_app(app: Flask) -> None:
    """Check the Stripe settings; the client (and the simulator) start on first use."""
    config = app.config
    positive = {"STRIPE_TIMEOUT_SECONDS": config["STRIPE_TIMEOUT_SECONDS"],
                "STRIPE_SIMULATOR_WEBHOOK_ATTEMPTS": config["STRIPE_SIMULATOR_WEBHOOK_ATTEMPTS"]}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be greater than 0")
    for name in ("STRIPE_MAX_NETWORK_RETRIES", "STRIPE_SIMULATOR_FEE_BASIS_POINTS",
                 "STRIPE_SIMULATOR_FEE_FIXED", "STRIPE_SIMULATOR_DISPUTE_FEE",
                 "STRIPE_SIMULATOR_WEBHOOK_BACKOFF_MS"):
        if config[name] < 0:
            raise ConfigError(f"{name} must not be negative")
    app.extensions["payments"] = _State(app)


def _state() -> _State:
    state: _State = current_app.extensions["payments"]
    return state


def uses_simulator() -> bool:
    """True when no secret key is set: Stripe's API is the simulator's."""
    return not _state().config["STRIPE_SECRET_KEY"]


def is_test_mode() -> bool:
    """True with the simulator or a test key: no real money moves (label pages with it)."""
    key = str(_state().config["STRIPE_SECRET_KEY"])
    return not key or key.startswith(("sk_test_", "rk_test_"))


def _webhook_secret(config: Mapping[str, Any]) -> str:
    if config["STRIPE_WEBHOOK_SECRET"]:
        return str(config["STRIPE_WEBHOOK_SECRET"])
    if not config["STRIPE_SECRET_KEY"]:
        return development_webhook_secret(str(config["SECRET_KEY"]))
    return ""


def simulator_settings(config: Mapping[str, Any]) -> SimulatorSettings:
    """The simulator settings an app's configuration asks for."""
    return SimulatorSettings(
        webhook_secret=_webhook_secret(config),
        webhook_url=config["STRIPE_SIMULATOR_WEBHOOK_URL"] or
        str(config["PUBLIC_BASE_URL"]).rstrip("/") + "/webhooks/stripe",
        fees=FeeSchedule(basis_points=config["STRIPE_SIMULATOR_FEE_BASIS_POINTS"],
                         fixed=config["STRIPE_SIMULATOR_FEE_FIXED"],
                         dispute_fee=config["STRIPE_SIMULATOR_DISPUTE_FEE"]),
        webhook_attempts=config["STRIPE_SIMULATOR_WEBHOOK_ATTEMPTS"],
        webhook_backoff_ms=config["STRIPE_SIMULATOR_WEBHOOK_BACKOFF_MS"],
    )


def _connection() -> _Connection:
    state = _state()
    with state.lock:
        if state.connection is None:
            state.connection = _connect(state.config)
        return state.connection


def _connect(config: Mapping[str, Any]) -> _Connection:
    key = str(config["STRIPE_SECRET_KEY"])
    base = str(config["STRIPE_API_BASE"]).rstrip("/")
    simulator = None
    if not key:
        key = SIMULATOR_KEY
        if not base:
            simulator = running_simulator(config["REDIS_URL"], simulator_settings(config))
            base = simulator.url
    http_client = stripe.RequestsClient(timeout=float(config["STRIPE_TIMEOUT_SECONDS"]))
    retries = int(config["STRIPE_MAX_NETWORK_RETRIES"])
    if base:
        client = stripe.StripeClient(
            key, base_addresses={"api": base, "connect": base, "files": base},
            max_network_retries=retries, http_client=http_client)
    else:
        client = stripe.StripeClient(key, max_network_retries=retries, http_client=http_client)
    return _Connection(client, simulator)


def _client() -> stripe.StripeClient:
    return _connection().client


def simulator() -> Simulator:
    """This process's simulator (started if need be), to steer it from tests and tools."""
    if not uses_simulator() or _state().config["STRIPE_API_BASE"]:
        raise RuntimeError("the built-in Stripe simulator is not in use "
                           "(STRIPE_SECRET_KEY or STRIPE_API_BASE is set)")
    found = _connection().simulator
    assert found is not None
    return found


@contextmanager
def _stripe_errors() -> Iterator[None]:
    """Stripe's exceptions, as the portal's own."""
    try:
        yield
    except stripe.CardError as error:
        json_body = error.json_body if isinstance(error.json_body, dict) else {}
        body = json_body.get("error") or {}
        intent = body.get("payment_intent") or {}
        raise CardDeclined(donor_message(error.code, body.get("decline_code")),
                           code=error.code, decline_code=body.get("decline_code"),
                           payment_intent_id=intent.get("id")) from error
    except stripe.RateLimitError as error:
        raise StripeRateLimited("Stripe is busy right now. Please try again in a moment.",
                                ) from error
    except stripe.IdempotencyError as error:
        raise IdempotencyConflict(error.user_message or str(error)) from error
    except stripe.InvalidRequestError as error:
        kind = StripeObjectNotFound if error.code == "resource_missing" else \
            InvalidStripeRequest
        raise kind(error.user_message or str(error), code=error.code,
                   param=error.param) from error
    except (stripe.AuthenticationError, stripe.PermissionError) as error:
        raise InvalidStripeRequest(f"Stripe refused the portal's credentials: "
                                   f"{error.user_message or error}") from error
    except (stripe.APIConnectionError, stripe.APIError) as error:
        raise StripeUnavailable("Stripe could not be reached. Please try again in a few "
                                "minutes.") from error
    except stripe.StripeError as error:
        raise StripeUnavailable(f"Stripe failed: {error.user_message or error}") from error


def _options(account_id: str | None, idempotency_key: str | None = None,
             ) -> stripe.RequestOptions:
    options: stripe.RequestOptions = {}
    if account_id:
        options["stripe_account"] = account_id
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    return options


def _id(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if value is None or isinstance(value, str):
        return value
    return str(value.id)


def _moment(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _plain(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    values = metadata.to_dict() if isinstance(metadata, stripe.StripeObject) else metadata
    return {str(key): str(value) for key, value in values.items()}


# ---------------------------------------------------------------------- accounts

def create_connected_account(*, country: str, email: str | None, idempotency_key: str,
                             business_name: str | None = None,
                             business_url: str | None = None,
                             account_type: Literal["express", "standard"] = "express",
                             business_type: Literal["non_profit", "company", "individual"] =
                             "non_profit",
                             metadata: Mapping[str, str] | None = None) -> ConnectedAccount:
    """A connected account for one organisation; send its people to ``create_account_link``
    next. ``idempotency_key`` should name the organisation, so a retry makes no second one."""
    params: AccountCreateParams = {
        "type": account_type,
        "country": country.upper(),
        "business_type": business_type,
        "capabilities": {"card_payments": {"requested": True},
                         "transfers": {"requested": True}},
        "metadata": dict(metadata or {}),
    }
    if email:
        params["email"] = email
    profile: AccountCreateParamsBusinessProfile = {}
    if business_name:
        profile["name"] = business_name
    if business_url:
        profile["url"] = business_url
    if profile:
        params["business_profile"] = profile
    with _stripe_errors():
        account = _client().v1.accounts.create(params=params,
                                               options=_options(None, idempotency_key))
    return _account(account)


def retrieve_account(account_id: str) -> ConnectedAccount:
    with _stripe_errors():
        return _account(_client().v1.accounts.retrieve(account_id))


def create_account_link(account_id: str, *, refresh_url: str,
                        return_url: str) -> OnboardingLink:
    """Stripe's hosted onboarding. Stripe sends the person to ``return_url`` when done (check
    ``retrieve_account`` or wait for ``account.updated``), to ``refresh_url`` if the link has
    expired or was used: make a new link there."""
    with _stripe_errors():
        link = _client().v1.account_links.create(params={
            "account": account_id, "refresh_url": refresh_url, "return_url": return_url,
            "type": "account_onboarding"})
    return OnboardingLink(link.url, datetime.fromtimestamp(link.expires_at, UTC))


def _account(account: stripe.Account) -> ConnectedAccount:
    requirements = account.requirements
    return ConnectedAccount(
        id=account.id,
        charges_enabled=bool(account.charges_enabled),
        payouts_enabled=bool(account.payouts_enabled),
        details_submitted=bool(account.details_submitted),
        country=account.country,
        default_currency=(account.default_currency or "").upper() or None,
        email=account.email,
        requirements_due=tuple(requirements.currently_due or ()) if requirements else (),
    )


# ---------------------------------------------------------------------- one-time donations

def create_payment_intent(account_id: str, *, amount: int, currency: str,
                          metadata: Mapping[str, str], idempotency_key: str,
                          receipt_email: str | None = None,
                          description: str | None = None) -> Payment:
    """A PaymentIntent on the organisation's own account (a direct charge, no platform fee).

    Put the donation's id in ``metadata`` (``donation_id``): it comes back on the charge and
    in every event. ``idempotency_key`` should be derived from the donation, so that a retry
    (ours or the SDK's) never creates a second intent. Hand ``client_secret`` to the
    Payment Element (or use ``simulator_confirm_payment_intent`` in test mode).
    """
    params: PaymentIntentCreateParams = {
        "amount": amount,
        "currency": currency.lower(),
        "automatic_payment_methods": {"enabled": True},
        "metadata": dict(metadata),
    }
    if receipt_email:
        params["receipt_email"] = receipt_email
    if description:
        params["description"] = description
    with _stripe_errors():
        intent = _client().v1.payment_intents.create(
            params=params, options=_options(account_id, idempotency_key))
    return _payment(intent)


def retrieve_payment_intent(account_id: str, payment_intent_id: str) -> Payment:
    with _stripe_errors():
        intent = _client().v1.payment_intents.retrieve(payment_intent_id,
                                                       options=_options(account_id))
    return _payment(intent)


def cancel_payment_intent(account_id: str, payment_intent_id: str) -> Payment:
    """Give up on an unpaid donation (an abandoned form): it can no longer be paid."""
    with _stripe_errors():
        intent = _client().v1.payment_intents.cancel(
            payment_intent_id, params={"cancellation_reason": "abandoned"},
            options=_options(account_id))
    return _payment(intent)


def simulator_confirm_payment_intent(account_id: str, payment_intent_id: str,
                                     card_number: str, *, return_url: str,
                                     receipt_email: str | None = None,
                                     idempotency_key: str | None = None) -> Payment:
    """Pay a PaymentIntent with one of Stripe's test cards, for the test-mode card form.

    4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined, 4000 0000 0000 9995 has
    insufficient funds (``CardDeclined``, with a message for the donor). The card becomes
    Stripe's matching test PaymentMethod, so this also works with ``sk_test_`` keys; it is
    refused in live mode. ``return_url`` is where redirect-based methods would come back to.
    """
    if not is_test_mode():
        raise InvalidStripeRequest("Test cards can only be used in test mode.")
    number = normalise_number(card_number)
    if not passes_luhn(number):
        raise CardDeclined(donor_message("incorrect_number", None), code="incorrect_number",
                           decline_code=None, payment_intent_id=payment_intent_id)
    card = BY_NUMBER.get(number)
    if card is None:
        raise CardDeclined(donor_message("card_declined", "test_mode_live_card"),
                           code="card_declined", decline_code="test_mode_live_card",
                           payment_intent_id=payment_intent_id)
    params: PaymentIntentConfirmParams = {"payment_method": card.token, "return_url": return_url}
    if receipt_email:
        params["receipt_email"] = receipt_email
    with _stripe_errors():
        intent = _client().v1.payment_intents.confirm(
            payment_intent_id, params=params, options=_options(account_id, idempotency_key))
    return _payment(intent)


def _payment(intent: stripe.PaymentIntent) -> Payment:
    error = intent.last_payment_error
    failure = None
    if error is not None:
        failure = PaymentFailure(error.code, error.decline_code,
                                 donor_message(error.code, error.decline_code))
    return Payment(
        id=intent.id,
        status=intent.status,
        amount=intent.amount,
        currency=intent.currency.upper(),
        client_secret=intent.client_secret,
        metadata=_plain(intent.metadata),
        charge_id=_id(intent.latest_charge),
        customer_id=_id(intent.customer),
        receipt_email=intent.receipt_email,
        description=intent.description,
        failure=failure,
    )


# ---------------------------------------------------------------------- charges and fees

def retrieve_charge(account_id: str, charge_id: str) -> Charge:
    with _stripe_errors():
        charge = _client().v1.charges.retrieve(charge_id, options=_options(account_id))
    return Charge(
        id=charge.id,
        payment_intent_id=_id(charge.payment_intent),
        status=charge.status,
        amount=charge.amount,
        amount_refunded=charge.amount_refunded,
        refunded=charge.refunded,
        disputed=charge.disputed,
        currency=charge.currency.upper(),
        balance_transaction_id=_id(charge.balance_transaction),
        metadata=_plain(charge.metadata),
    )


def balance_transaction_for_charge(account_id: str, charge_id: str) -> ChargeFees:
    """Stripe's fee and the net amount of a successful charge (what the ledger records)."""
    with _stripe_errors():
        charge = _client().v1.charges.retrieve(
            charge_id, params={"expand": ["balance_transaction"]},
            options=_options(account_id))
    transaction = charge.balance_transaction
    if transaction is None or isinstance(transaction, str):
        raise InvalidStripeRequest(f"Charge {charge_id} has no balance transaction (it did not "
                                   "succeed).", param="charge")
    return ChargeFees(
        charge_id=charge.id,
        balance_transaction_id=transaction.id,
        amount=transaction.amount,
        fee=transaction.fee,
        net=transaction.net,
        currency=transaction.currency.upper(),
        available_on=datetime.fromtimestamp(transaction.available_on, UTC),
    )


# ---------------------------------------------------------------------- refunds, disputes

def create_refund(account_id: str, *, idempotency_key: str,
                  payment_intent_id: str | None = None, charge_id: str | None = None,
                  amount: int | None = None,
                  reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None =
                  None, metadata: Mapping[str, str] | None = None) -> Refund:
    """Give money back: all of what is left (``amount=None``) or part of it. Stripe keeps
    its fee. ``charge.refunded`` follows with the charge's new ``amount_refunded``."""
    if (payment_intent_id is None) == (charge_id is None):
        raise ValueError("pass exactly one of payment_intent_id and charge_id")
    params: RefundCreateParams = {"metadata": dict(metadata or {})}
    if payment_intent_id:
        params["payment_intent"] = payment_intent_id
    if charge_id:
        params["charge"] = charge_id
    if amount is not None:
        params["amount"] = amount
    if reason:
        params["reason"] = reason
    with _stripe_errors():
        refund = _client().v1.refunds.create(params=params,
                                             options=_options(account_id, idempotency_key))
    return _refund(refund)


def list_refunds(account_id: str, charge_id: str) -> list[Refund]:
    """Every refund of a charge, newest first (``charge.refunded`` events do not list them)."""
    with _stripe_errors():
        page = _client().v1.refunds.list(params={"charge": charge_id, "limit": 100},
                                         options=_options(account_id))
        return [_refund(refund) for refund in page.auto_paging_iter()]


def _refund(refund: stripe.Refund) -> Refund:
    return Refund(
        id=refund.id,
        charge_id=_id(refund.charge),
        payment_intent_id=_id(refund.payment_intent),
        amount=refund.amount,
        currency=refund.currency.upper(),
        status=refund.status,
        reason=refund.reason,
        balance_transaction_id=_id(refund.balance_transaction),
        metadata=_plain(refund.metadata),
    )


def retrieve_dispute(account_id: str, dispute_id: str) -> Dispute:
    with _stripe_errors():
        dispute = _client().v1.disputes.retrieve(dispute_id, options=_options(account_id))
    return Dispute(
        id=dispute.id,
        charge_id=str(_id(dispute.charge)),
        payment_intent_id=_id(dispute.payment_intent),
        amount=dispute.amount,
        currency=dispute.currency.upper(),
        status=dispute.status,
        reason=dispute.reason,
        balance_lines=tuple(BalanceLine(line.id, line.amount, line.fee, line.net,
                                        line.currency.upper(), line.reporting_category)
                            for line in dispute.balance_transactions),
    )


# ---------------------------------------------------------------------- monthly gifts

def create_monthly_subscription(account_id: str, *, amount: int, currency: str,
                                email: str, idempotency_key: str, description: str,
                                name: str | None = None,
                                metadata: Mapping[str, str] | None = None) -> MonthlyGift:
    """A monthly gift: a customer, a monthly price and an ``incomplete`` subscription.

    Confirm the first invoice's payment (``payment_intent_id`` / ``client_secret``) as for a
    one-time donation; each paid month then arrives as ``invoice.paid`` (see
    ``paid_invoice``). ``description`` names the gift on the donor's statement and invoices.
    """
    options = _options(account_id)
    metadata = dict(metadata or {})
    customer_params: CustomerCreateParams = {"email": email, "metadata": metadata}
    if name:
        customer_params["name"] = name
    with _stripe_errors():
        client = _client()
        customer = client.v1.customers.create(
            params=customer_params, options={**options, "idempotency_key":
                                             f"{idempotency_key}:customer"})
        price = client.v1.prices.create(params={
            "currency": currency.lower(), "unit_amount": amount,
            "recurring": {"interval": "month"}, "product_data": {"name": description},
        }, options={**options, "idempotency_key": f"{idempotency_key}:price"})
        subscription = client.v1.subscriptions.create(params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "payment_behavior": "default_incomplete",
            "payment_settings": {"save_default_payment_method": "on_subscription"},
            "description": description,
            "metadata": metadata,
            "expand": MONTHLY_GIFT_EXPAND,
        }, options={**options, "idempotency_key": f"{idempotency_key}:subscription"})
    return _monthly_gift(subscription)


def retrieve_subscription(account_id: str, subscription_id: str) -> MonthlyGift:
    with _stripe_errors():
        subscription = _client().v1.subscriptions.retrieve(
            subscription_id, params={"expand": MONTHLY_GIFT_EXPAND},
            options=_options(account_id))
    return _monthly_gift(subscription)


def cancel_subscription(account_id: str, subscription_id: str) -> MonthlyGift:
    """Stop a monthly gift now; ``customer.subscription.deleted`` follows."""
    with _stripe_errors():
        subscription = _client().v1.subscriptions.cancel(
            subscription_id, params={"expand": MONTHLY_GIFT_EXPAND},
            options=_options(account_id))
    return _monthly_gift(subscription)


def _monthly_gift(subscription: stripe.Subscription) -> MonthlyGift:
    items = subscription.items.data
    amount = sum((item.price.unit_amount or 0) * (item.quantity or 1) for item in items)
    invoice = subscription.latest_invoice
    invoice_id = _id(invoice)
    client_secret = intent_id = None
    if invoice is not None and not isinstance(invoice, str):
        secret = getattr(invoice, "confirmation_secret", None)
        client_secret = secret.client_secret if secret is not None else None
        payments = getattr(invoice, "payments", None)
        if payments is not None and payments.data:
            intent_id = _id(payments.data[0].payment.payment_intent)
    return MonthlyGift(
        subscription_id=subscription.id,
        customer_id=str(_id(subscription.customer)),
        status=subscription.status,
        amount=amount,
        currency=subscription.currency.upper(),
        invoice_id=invoice_id,
        payment_intent_id=intent_id,
        client_secret=client_secret,
        current_period_end=_moment(items[0].current_period_end) if items else None,
        metadata=_plain(subscription.metadata),
    )


def paid_invoice(account_id: str, invoice_id: str) -> PaidInvoice:
    """An invoice of a monthly gift with the payment that paid it (for ``invoice.paid``).

    Invoices no longer carry their PaymentIntent or charge: they are found through the
    invoice's payments, which this looks up.
    """
    options = _options(account_id)
    with _stripe_errors():
        client = _client()
        invoice = client.v1.invoices.retrieve(invoice_id, options=options)
        payments = client.v1.invoice_payments.list(params={
            "invoice": invoice_id, "expand": ["data.payment.payment_intent"]}, options=options)
    paid = [payment for payment in payments.data if payment.status == "paid"]
    intent = paid[0].payment.payment_intent if paid else None
    details = invoice.parent.subscription_details if invoice.parent else None
    # The lines carry the period paid for; the invoice's own period is the one before it.
    lines = invoice.lines.data
    start, end = (lines[0].period.start, lines[0].period.end) if lines else (
        invoice.period_start, invoice.period_end)
    return PaidInvoice(
        invoice_id=str(invoice.id),
        subscription_id=_id(details.subscription) if details else None,
        customer_id=_id(invoice.customer),
        status=invoice.status,
        billing_reason=invoice.billing_reason,
        amount_paid=invoice.amount_paid,
        currency=invoice.currency.upper(),
        payment_intent_id=_id(intent),
        charge_id=_id(intent.latest_charge) if intent is not None and
        not isinstance(intent, str) else None,
        period_start=datetime.fromtimestamp(start, UTC),
        period_end=datetime.fromtimestamp(end, UTC),
        subscription_metadata=_plain(details.metadata) if details else {},
    )


# ---------------------------------------------------------------------- webhooks, events

def construct_webhook_event(payload: bytes, sig_header: str | None) -> WebhookEvent:
    """Verify a webhook from its raw body and ``Stripe-Signature`` header.

    Refused (``InvalidWebhook``): a wrong signature, a body changed after signing, a
    timestamp older than five minutes or more than five minutes ahead (a replayed or
    pre-dated request). The secret is ``STRIPE_WEBHOOK_SECRET`` or, with the simulator,
    the development secret derived from ``SECRET_KEY``.
    """
    secret = _webhook_secret(_state().config)
    if not secret:
        raise InvalidWebhook("No webhook signing secret is configured (STRIPE_WEBHOOK_SECRET).")
    try:
        stripe.Webhook.construct_event(payload, sig_header, secret, tolerance=WEBHOOK_TOLERANCE)
    except stripe.SignatureVerificationError as error:
        raise InvalidWebhook(f"Invalid Stripe signature: {error.user_message or error}",
                             ) from error
    except ValueError as error:
        raise InvalidWebhook("The webhook body is not a Stripe event.") from error
    assert sig_header is not None
    # The SDK refuses old timestamps only; a signature dated in the future is refused here.
    stamps = [int(part[2:]) for part in sig_header.split(",") if part.startswith("t=")]
    if not stamps or stamps[0] > time.time() + WEBHOOK_TOLERANCE:
        raise InvalidWebhook("The webhook's timestamp is in the future.")
    return _event(json.loads(payload))


def retrieve_event(account_id: str | None, event_id: str) -> WebhookEvent:
    """Fetch an event again from Stripe (to double-check one, or to replay it)."""
    with _stripe_errors():
        event = _client().v1.events.retrieve(event_id, options=_options(account_id))
    return _event(event.to_dict(for_json=True))


def _event(body: Mapping[str, Any]) -> WebhookEvent:
    if body.get("object") != "event" or not isinstance(body.get("data"), dict):
        raise InvalidWebhook("The webhook body is not a Stripe event.")
    data = body["data"]
    request = body.get("request") or {}
    return WebhookEvent(
        id=str(body["id"]),
        type=str(body["type"]),
        account=body.get("account"),
        created=datetime.fromtimestamp(int(body["created"]), UTC),
        livemode=bool(body.get("livemode")),
        object=data["object"],
        previous_attributes=data.get("previous_attributes"),
        request_idempotency_key=request.get("idempotency_key") if isinstance(request, dict)
        else None,
    )
