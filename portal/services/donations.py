"""Donations as donors make them: the choices a donation page offers, a pending donation
stored before Stripe is asked anything, the payment Stripe is asked to take (a
PaymentIntent, or a monthly subscription, on the organisation's own account), test-card
payments in test mode, and the signed links that stop a monthly gift.

What the payments then became (ledger entries, refunds, disputes) is recorded from
Stripe's events by ``donation_payments``; receipts are ``donation_receipts``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.config import ConfigError
from portal.extensions import db
from portal.ids import new_id
from portal.models import Donation, Fund, LedgerHead, Organisation, OrganisationStripeAccount
from portal.money import format_money, is_known_currency
from portal.services import payments, tenancy, tokens
from portal.services.errors import Conflict, DomainError, NotFound

NAME_MAX = 200
EMAIL_MAX = 320
MESSAGE_MAX = 500
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
DONATION_ID_RE = re.compile(r"^don_[0-9a-f]{24}$")
FREQUENCIES = {"one_time": "Once", "monthly": "Every month"}
CANCEL_LINK_PURPOSE = "monthly-gift-cancel"
#: Every month's receipt carries a fresh link, so a year and a bit is plenty.
CANCEL_LINK_MAX_AGE = 400 * 24 * 3600
#: The session key of the one donation a donor's own pages may read (see ``open_donation``).
DONATION_SCOPE_KEY = "portal.donation_scope"
PAYABLE = ("pending", "failed")
_SET_DONATION = sa.text("SELECT set_config('app.donation', :donation, true)")


class DonationError(DomainError):
    pass


class InvalidDonation(DonationError):
    """The donor's choices cannot be accepted; ``field`` names the form field."""

    status_code = 422


class DonationsUnavailable(DonationError):
    """The organisation cannot take donations here (the message says why)."""

    status_code = 409


class DonationNotFound(DonationError, NotFound):
    pass


class DonationAlreadyCompleted(DonationError, Conflict):
    pass


class NotAMonthlyGift(DonationError):
    status_code = 404


class CardFormUnavailable(DonationError):
    """Test cards are taken only while the portal uses the Stripe simulator."""

    status_code = 404


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FeeSchedule:
    """The card fee "cover the fees" pays: ``basis_points`` of the charge plus ``fixed``."""

    basis_points: int
    fixed: int

    def fee(self, charged: int) -> int:
        """Stripe's fee on a charge, the percentage rounded half up (in integers)."""
        return (charged * self.basis_points + 5000) // 10000 + self.fixed

    def gross_up(self, gift: int) -> int:
        """The smallest charge that leaves at least ``gift`` once its own fee is taken."""
        charged = -(-(gift + self.fixed) * 10000 // (10000 - self.basis_points))
        while charged - self.fee(charged) < gift:
            charged += 1
        while charged > gift and charged - 1 - self.fee(charged - 1) >= gift:
            charged -= 1
        return charged

    @property
    def percent(self) -> str:
        """``1.5`` for 150 basis points: the percentage as people write it."""
        whole, rest = divmod(self.basis_points, 100)
        return f"{whole}.{rest:02d}".rstrip("0").rstrip(".")


def _integer_setting(config: Mapping[str, Any], name: str, fallback: str) -> int:
    raw = str(config[name]).strip()
    if not raw:
        return int(config[fallback])
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from exc


def fee_schedule(config: Mapping[str, Any] | None = None) -> FeeSchedule:
    settings = config if config is not None else current_app.config
    return FeeSchedule(
        _integer_setting(settings, "DONATION_FEE_BASIS_POINTS",
                         "STRIPE_SIMULATOR_FEE_BASIS_POINTS"),
        _integer_setting(settings, "DONATION_FEE_FIXED", "STRIPE_SIMULATOR_FEE_FIXED"))


def preset_amounts(config: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    settings = config if config is not None else current_app.config
    raw = str(settings["DONATION_PRESET_AMOUNTS"])
    try:
        return tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError("DONATION_PRESET_AMOUNTS must list whole numbers of minor units, "
                          f"separated by commas, not {raw!r}") from exc


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse donation settings that cannot work, naming the setting."""
    low, high = int(config["DONATION_MIN_AMOUNT"]), int(config["DONATION_MAX_AMOUNT"])
    if not 0 < low <= high:
        raise ConfigError("DONATION_MIN_AMOUNT must be at least 1 and at most "
                          "DONATION_MAX_AMOUNT")
    presets = preset_amounts(config)
    if any(not low <= amount <= high for amount in presets):
        raise ConfigError("each of DONATION_PRESET_AMOUNTS must lie between "
                          "DONATION_MIN_AMOUNT and DONATION_MAX_AMOUNT")
    fees = fee_schedule(config)
    if not 0 <= fees.basis_points < 10000 or fees.fixed < 0:
        raise ConfigError("DONATION_FEE_BASIS_POINTS must be 0 to 9999 and DONATION_FEE_FIXED "
                          "must not be negative")
    if not str(config["DONATION_RATE_LIMIT"]).strip():
        raise ConfigError("DONATION_RATE_LIMIT must not be empty")


# --------------------------------------------------------------------------- the page


class DonateState(NamedTuple):
    """Whether an organisation's pages may offer donations, and if not, why."""

    can_donate: bool
    reason: str


def donate_state(organisation_id: str) -> DonateState:
    """Can people give to this organisation here? Read by its public pages (a donate
    button only when ``can_donate``) and by the donation page itself."""
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None or not organisation.is_active:
        return DonateState(False, "This organisation is not taking donations on this portal.")
    account = db.session.get(OrganisationStripeAccount, organisation_id)
    if account is None:
        return DonateState(False, f"{organisation.name} has not connected a Stripe account "
                                  "yet, so it cannot take donations online here.")
    if not account.charges_enabled:
        return DonateState(False, f"{organisation.name} is still setting up its Stripe "
                                  "account: Stripe has not enabled payments for it yet.")
    if not payments.uses_simulator() and not current_app.config["STRIPE_PUBLISHABLE_KEY"]:
        return DonateState(False, "Online donations are not configured on this portal yet "
                                  "(it has no Stripe publishable key).")
    return DonateState(True, "")


@dataclass(frozen=True)
class FundChoice:
    id: str
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class DonationOptions:
    """What a donation page offers for one organisation."""

    organisation_id: str
    currencies: tuple[str, ...]
    funds: tuple[FundChoice, ...]
    presets: tuple[int, ...]
    minimum: int
    maximum: int
    fees: FeeSchedule
    test_mode: bool

    @property
    def default_currency(self) -> str:
        return self.currencies[0]

    def fund(self, fund_id: str) -> FundChoice | None:
        return next((fund for fund in self.funds if fund.id == fund_id), None)


def donation_options(organisation_id: str) -> DonationOptions:
    """Currencies (the organisation's own first, then those its ledger holds), open funds
    (the General Fund first), amounts, limits and the fee schedule."""
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise DonationNotFound("No such organisation.")
    balances = db.session.scalar(sa.select(LedgerHead.balances)
                                 .where(LedgerHead.organisation_id == organisation_id)) or {}
    currencies = tuple(dict.fromkeys([organisation.default_currency, *sorted(balances)]))
    funds = db.session.scalars(
        sa.select(Fund).where(Fund.organisation_id == organisation_id,
                              Fund.archived_at.is_(None))
        .order_by(Fund.type != "general", Fund.name))
    config = current_app.config
    return DonationOptions(
        organisation_id, currencies,
        tuple(FundChoice(fund.id, fund.name, fund.type, fund.description) for fund in funds),
        preset_amounts(), int(config["DONATION_MIN_AMOUNT"]), int(config["DONATION_MAX_AMOUNT"]),
        fee_schedule(), payments.is_test_mode())


# --------------------------------------------------------------------------- starting


@dataclass(frozen=True)
class DonorChoices:
    """Everything a donor chose on the form, as plain values (amounts in minor units)."""

    organisation_id: str
    fund_id: str
    gift: int
    currency: str
    frequency: str
    cover_fees: bool
    donor_name: str
    donor_email: str
    show_name: bool
    message: str = ""
    show_message: bool = False
    locale: str = "en"


def _clean_text(text: str, field: str, limit: int, *, lines: bool = False) -> str:
    cleaned = unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()
    allowed = {"\n", "\t"} if lines else set()
    if any(unicodedata.category(char) == "Cc" and char not in allowed for char in cleaned):
        raise InvalidDonation("Remove the control characters from this text.", field=field)
    if len(cleaned) > limit:
        raise InvalidDonation(f"Use at most {limit} characters.", field=field)
    return cleaned


def _check(choices: DonorChoices, options: DonationOptions) -> DonorChoices:
    if choices.currency not in options.currencies or not is_known_currency(choices.currency):
        raise InvalidDonation(f"This organisation takes donations in "
                              f"{', '.join(options.currencies)}.", field="currency")
    if choices.frequency not in FREQUENCIES:
        raise InvalidDonation("Choose once or every month.", field="frequency")
    if options.fund(choices.fund_id) is None:
        raise InvalidDonation("Choose one of the organisation's funds.", field="fund")
    def money(amount: int) -> str:
        return format_money(amount, choices.currency, choices.locale)

    if choices.gift < options.minimum:
        raise InvalidDonation(f"The smallest donation is {money(options.minimum)}.",
                              field="amount")
    if choices.gift > options.maximum:
        raise InvalidDonation(f"The largest donation is {money(options.maximum)}.",
                              field="amount")
    name = _clean_text(choices.donor_name, "donor_name", NAME_MAX)
    if not name:
        raise InvalidDonation("Enter your name (it is shown publicly only if you choose so).",
                              field="donor_name")
    email = _clean_text(choices.donor_email, "donor_email", EMAIL_MAX)
    if not EMAIL_RE.match(email):
        raise InvalidDonation("Enter an email address such as name@example.org, for your "
                              "receipt.", field="donor_email")
    message = _clean_text(choices.message, "message", MESSAGE_MAX, lines=True)
    return DonorChoices(choices.organisation_id, choices.fund_id, choices.gift,
                        choices.currency, choices.frequency, choices.cover_fees, name, email,
                        choices.show_name, message, choices.show_message and bool(message),
                        choices.locale)


def start_donation(choices: DonorChoices) -> str:
    """Store a pending donation and return its id (``don_…``); commit.

    Nothing is asked of Stripe yet: the donation, with the idempotency key every later
    request to Stripe about it will carry, is stored first, so that no retry or reload
    can ever make a second payment for it.
    """
    state = donate_state(choices.organisation_id)
    if not state.can_donate:
        raise DonationsUnavailable(state.reason)
    options = donation_options(choices.organisation_id)
    checked = _check(choices, options)
    fee_covered = 0
    if checked.cover_fees:
        fee_covered = options.fees.gross_up(checked.gift) - checked.gift
    charged = checked.gift + fee_covered
    if charged > options.maximum:
        total = format_money(charged, checked.currency, checked.locale)
        largest = format_money(options.maximum, checked.currency, checked.locale)
        raise InvalidDonation(
            f"With the fees covered this would be {total}, more than the largest donation "
            f"({largest}). Choose a smaller amount, or do not cover the fees.", field="amount")
    donation_id = new_id("don")
    # The donor's own organisation: the one write a public page makes.
    tenancy.include(checked.organisation_id)
    db.session.add(Donation(
        id=donation_id, organisation_id=checked.organisation_id, fund_id=checked.fund_id,
        frequency=checked.frequency, amount=charged, currency=checked.currency,
        cover_fees=checked.cover_fees, fee_covered=fee_covered, donor_name=checked.donor_name,
        donor_email=checked.donor_email, show_name=checked.show_name,
        message=checked.message, show_message=checked.show_message,
        locale=checked.locale[:16] or "en", status="pending",
        idempotency_key=f"amply-{donation_id}"))
    db.session.commit()
    return donation_id


# --------------------------------------------------------------------------- one donation


def open_donation(donation_id: str) -> None:
    """Let this request read (and advance) exactly one donation: the donor's own.

    A donor's pages know the donation by its unguessable id. Rather than widening the
    request to the whole organisation (whose donations hold other donors' addresses), the
    id is put in the transaction's ``app.donation`` setting, which the database's
    policies compare with each row (migration 0005). Like the tenant scope, it is applied
    again to every transaction the session begins.
    """
    if not DONATION_ID_RE.match(donation_id):
        raise DonationNotFound("There is no such donation.")
    session = db.session()
    session.info[DONATION_SCOPE_KEY] = donation_id
    if session.in_transaction():
        session.execute(_SET_DONATION, {"donation": donation_id})


def close_donation() -> None:
    """Forget the donation scope (the start of every donation page)."""
    session = db.session()
    if session.info.pop(DONATION_SCOPE_KEY, None) is not None and session.in_transaction():
        session.execute(_SET_DONATION, {"donation": ""})


@event.listens_for(Session, "after_begin")
def _donation_scope_each_transaction(session: Session, transaction: Any,
                                     connection: Any) -> None:
    donation_id = session.info.get(DONATION_SCOPE_KEY)
    if donation_id:
        connection.execute(_SET_DONATION, {"donation": donation_id})


def _donation(donation_id: str, *, lock: bool = False) -> Donation:
    found = db.session.get(Donation, donation_id, populate_existing=True,
                           with_for_update=lock) if DONATION_ID_RE.match(donation_id) else None
    if found is None:
        raise DonationNotFound("There is no such donation.")
    return found


def _account_of(organisation_id: str) -> str:
    account = db.session.get(OrganisationStripeAccount, organisation_id)
    if account is None:
        raise DonationsUnavailable("This organisation has no Stripe account any more.")
    return account.stripe_account_id


@dataclass(frozen=True)
class DonationSummary:
    """A donation as the donor's pages describe it."""

    id: str
    organisation_id: str
    organisation_slug: str
    organisation_name: str
    fund_name: str
    frequency: str
    gift: int
    fee_covered: int
    amount: int
    currency: str
    status: str
    failure_message: str | None
    payment_intent_id: str | None

    @property
    def is_monthly(self) -> bool:
        return self.frequency == "monthly"


def _summary(donation: Donation) -> DonationSummary:
    organisation = db.session.get(Organisation, donation.organisation_id)
    fund = db.session.get(Fund, donation.fund_id)
    if organisation is None or fund is None:
        raise DonationNotFound("There is no such donation.")
    return DonationSummary(
        donation.id, organisation.id, organisation.slug, organisation.name, fund.name,
        donation.frequency, donation.amount - donation.fee_covered, donation.fee_covered,
        donation.amount, donation.currency, donation.status, donation.failure_message,
        donation.payment_intent_id)


def donation_summary(donation_id: str) -> DonationSummary:
    return _summary(_donation(donation_id))


@dataclass(frozen=True)
class PaymentStep:
    """What the payment page needs: the donation and what Stripe.js (or the test-card
    form) confirms."""

    donation: DonationSummary
    account_id: str
    payment_intent_id: str
    client_secret: str | None
    #: Test cards in a plain form (the simulator) instead of Stripe's Payment Element.
    card_form: bool
    test_mode: bool
    publishable_key: str


def payment_step(donation_id: str) -> PaymentStep:
    """Make sure Stripe has a payment for the donation, and return what confirming it needs.

    The first call creates the PaymentIntent (or, for a monthly gift, the subscription
    whose first invoice it pays) with the donation's stored idempotency key and commits
    its id; later calls (a reload, a retry after Stripe failed) find it again. Raises
    ``DonationAlreadyCompleted`` once the donation is paid, and the ``PaymentError``
    family when Stripe does not answer as it should (nothing is charged then, and the
    donation stays pending, ready for the next try).
    """
    donation = _donation(donation_id)
    if donation.status not in PAYABLE:
        raise DonationAlreadyCompleted("This donation is already complete.")
    account_id = _account_of(donation.organisation_id)
    if donation.payment_intent_id is None:
        _create_payment(donation, account_id)
        db.session.commit()
    assert donation.payment_intent_id is not None
    intent = payments.retrieve_payment_intent(account_id, donation.payment_intent_id)
    if intent.status in {"succeeded", "processing"}:
        raise DonationAlreadyCompleted("This donation has been paid; its receipt follows.")
    return PaymentStep(_summary(donation), account_id, intent.id, intent.client_secret,
                       payments.uses_simulator(), payments.is_test_mode(),
                       str(current_app.config["STRIPE_PUBLISHABLE_KEY"]))


def _create_payment(donation: Donation, account_id: str) -> None:
    portal = str(current_app.config["PORTAL_NAME"])
    metadata = {"donation_id": donation.id, "organisation_id": donation.organisation_id,
                "fund_id": donation.fund_id}
    if donation.is_monthly:
        gift = payments.create_monthly_subscription(
            account_id, amount=donation.amount, currency=donation.currency,
            email=donation.donor_email, name=donation.donor_name,
            idempotency_key=donation.idempotency_key,
            description=f"Monthly gift through {portal}", metadata=metadata)
        donation.subscription_id = gift.subscription_id
        donation.customer_id = gift.customer_id
        donation.payment_intent_id = gift.payment_intent_id
    else:
        intent = payments.create_payment_intent(
            account_id, amount=donation.amount, currency=donation.currency,
            metadata=metadata, idempotency_key=donation.idempotency_key,
            description=f"Gift through {portal} ({donation.id})")
        donation.payment_intent_id = intent.id
    if donation.payment_intent_id is None:
        raise payments.InvalidStripeRequest("Stripe made no payment for this donation.")


def pay_with_test_card(donation_id: str, card_number: str, return_url: str) -> None:
    """Test mode: pay the donation with one of Stripe's test cards.

    A refused card raises ``CardDeclined`` (its message is for the donor) after the
    donation is marked failed with that message: it stays payable with another card, and
    no ledger entry is written. A successful payment is recorded when Stripe's event
    arrives (``donation_payments``), never here.
    """
    if not payments.uses_simulator():
        raise CardFormUnavailable("Cards are entered in Stripe's payment form on this portal.")
    step = payment_step(donation_id)
    try:
        payments.simulator_confirm_payment_intent(
            step.account_id, step.payment_intent_id, card_number, return_url=return_url)
    except payments.CardDeclined as declined:
        mark_failed(donation_id, str(declined))
        db.session.commit()
        raise


def mark_failed(donation_id: str, message: str) -> bool:
    """Note why a payment failed, unless the donation has been paid meanwhile; flushes."""
    done = db.session.execute(
        sa.update(Donation)
        .where(Donation.id == donation_id, Donation.status.in_(PAYABLE))
        .values(status="failed", failure_message=message[:500])
        .execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0))


# --------------------------------------------------------------------------- monthly gifts


def cancel_token(donation_id: str, organisation_id: str) -> str:
    """The signed token of a monthly gift's cancel link (sent with every receipt)."""
    return tokens.make(CANCEL_LINK_PURPOSE, {"donation": donation_id,
                                             "org": organisation_id})


def _monthly_gift_of(token: str) -> Donation:
    payload = tokens.read(CANCEL_LINK_PURPOSE, token, max_age=CANCEL_LINK_MAX_AGE)
    if not isinstance(payload, dict):
        raise tokens.InvalidToken("This link is not valid. Check that it was copied in full.")
    # The signature vouches for the organisation: its donation may be read and changed.
    tenancy.include(str(payload.get("org", "")))
    donation = _donation(str(payload.get("donation", "")))
    if not donation.is_monthly or donation.organisation_id != payload.get("org"):
        raise NotAMonthlyGift("This link does not belong to a monthly gift.")
    return donation


def monthly_gift(token: str) -> DonationSummary:
    """The monthly gift a cancel link stands for (to ask the donor to confirm)."""
    return _summary(_monthly_gift_of(token))


def cancel_monthly_gift(token: str) -> DonationSummary:
    """Stop the monthly gift of a cancel link; commit. Payments already made stay in the
    ledger. Cancelling twice is harmless: the second time it is simply already stopped."""
    donation = _monthly_gift_of(token)
    if donation.status == "canceled":
        return _summary(donation)
    if donation.subscription_id is not None:
        account_id = _account_of(donation.organisation_id)
        gift = payments.retrieve_subscription(account_id, donation.subscription_id)
        if gift.status not in {"canceled", "incomplete_expired"}:
            payments.cancel_subscription(account_id, donation.subscription_id)
    donation = _donation(donation.id, lock=True)
    donation.status = "canceled"
    donation.canceled_at = donation.canceled_at or datetime.now(UTC)
    db.session.commit()
    return _summary(donation)
