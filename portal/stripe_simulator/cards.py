"""Stripe's test cards and test PaymentMethods, and the fee schedule charges are priced with."""

from __future__ import annotations

from dataclasses import dataclass

from portal.money import CURRENCY_EXPONENTS


@dataclass(frozen=True)
class TestCard:
    """A card number from Stripe's testing docs, its PaymentMethod token and its outcome."""

    number: str
    token: str
    brand: str
    funding: str = "credit"
    country: str = "US"
    #: ``None``: the charge succeeds. Otherwise the error code, e.g. ``card_declined``.
    error_code: str | None = None
    decline_code: str | None = None
    message: str = ""

    @property
    def last4(self) -> str:
        return self.number[-4:]

    @property
    def succeeds(self) -> bool:
        return self.error_code is None


_DECLINED = "Your card was declined."

TEST_CARDS: tuple[TestCard, ...] = (
    TestCard("4242424242424242", "pm_card_visa", "visa"),
    TestCard("4000056655665556", "pm_card_visa_debit", "visa", funding="debit"),
    TestCard("5555555555554444", "pm_card_mastercard", "mastercard"),
    TestCard("4000000000000002", "pm_card_visa_chargeDeclined", "visa",
             error_code="card_declined", decline_code="generic_decline", message=_DECLINED),
    TestCard("4000000000009995", "pm_card_visa_chargeDeclinedInsufficientFunds", "visa",
             error_code="card_declined", decline_code="insufficient_funds",
             message="Your card has insufficient funds."),
    TestCard("4000000000009987", "pm_card_visa_chargeDeclinedLostCard", "visa",
             error_code="card_declined", decline_code="lost_card", message=_DECLINED),
    TestCard("4000000000009979", "pm_card_visa_chargeDeclinedStolenCard", "visa",
             error_code="card_declined", decline_code="stolen_card", message=_DECLINED),
    TestCard("4000000000000069", "pm_card_chargeDeclinedExpiredCard", "visa",
             error_code="expired_card", decline_code="expired_card",
             message="Your card has expired."),
    TestCard("4000000000000127", "pm_card_chargeDeclinedIncorrectCvc", "visa",
             error_code="incorrect_cvc", decline_code="incorrect_cvc",
             message="Your card's security code is incorrect."),
    TestCard("4000000000000119", "pm_card_chargeDeclinedProcessingError", "visa",
             error_code="processing_error", decline_code="processing_error",
             message="An error occurred while processing your card. Try again in a little bit."),
)

BY_NUMBER = {card.number: card for card in TEST_CARDS}
BY_TOKEN = {card.token: card for card in TEST_CARDS}


def normalise_number(number: str) -> str:
    return "".join(character for character in number if character.isdigit())


def passes_luhn(number: str) -> bool:
    digits = [int(character) for character in reversed(number)]
    if len(digits) < 12:
        return False
    doubled = [digit * 2 - 9 if digit > 4 else digit * 2 for digit in digits[1::2]]
    return (sum(digits[0::2]) + sum(doubled)) % 10 == 0


@dataclass(frozen=True)
class FeeSchedule:
    """Stripe-like pricing: a percentage in basis points plus a fixed part, in minor units."""

    basis_points: int = 150
    fixed: int = 25
    dispute_fee: int = 2000

    def card_fee(self, amount: int) -> int:
        # Half-up rounding of the percentage, in integers: money never becomes a float.
        return (amount * self.basis_points + 5000) // 10000 + self.fixed


# Stripe's minimum charge amounts for the currencies a European nonprofit is likely to
# take; other currencies need at least one minor unit.
MINIMUM_CHARGE: dict[str, int] = {
    "usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "nzd": 50,
    "dkk": 250, "nok": 300, "sek": 300, "pln": 200, "czk": 1500, "huf": 17500,
    "ron": 200, "bgn": 100, "jpy": 50, "hkd": 400, "sgd": 50, "mxn": 1000,
}
MAXIMUM_CHARGE = 99_999_999


def display_amount(amount: int, currency: str) -> str:
    """``€0.50`` style text for error messages (the simulator's own, not the portal's)."""
    exponent = CURRENCY_EXPONENTS.get(currency.upper(), 2)
    symbol = {"eur": "€", "usd": "$", "gbp": "£"}.get(currency, "")
    if exponent == 0:
        major = str(amount)
    else:
        major = f"{amount // 10**exponent}.{amount % 10**exponent:0{exponent}d}"
    return f"{symbol}{major}" if symbol else f"{major} {currency.upper()}"
