"""The donation pages' forms. They check what a form can (required fields, the shape of an
amount in the chosen currency); ``services.donations`` checks the rest (limits, funds,
currencies) and names the field that was wrong."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.money import parse_major
from portal.services.donations import (
    EMAIL_MAX,
    FREQUENCIES,
    MESSAGE_MAX,
    NAME_MAX,
    DonationOptions,
    DonorChoices,
)

OTHER = "other"


class DonationForm(FlaskForm):  # type: ignore[misc]
    currency = SelectField("Currency", validate_choice=False)
    amount = RadioField("Amount", validate_choice=False)
    other_amount = StringField("Other amount", validators=[
        Optional(), Length(max=20, message="That amount is too long.")])
    frequency = RadioField("How often", choices=FREQUENCIES, default="one_time",
                           validate_choice=False)
    cover_fees = BooleanField("Add the card fee, so that all of my gift arrives")
    fund = SelectField("Give to", validate_choice=False)
    donor_name = StringField("Your name", validators=[
        DataRequired("Enter your name: it goes on your receipt."),
        Length(max=NAME_MAX, message=f"Use at most {NAME_MAX} characters.")])
    donor_email = EmailField("Your email address", validators=[
        DataRequired("Enter your email address: your receipt goes there."),
        Length(max=EMAIL_MAX, message=f"Use at most {EMAIL_MAX} characters.")])
    show_name = BooleanField("Show my name in the public ledger")
    message = TextAreaField("A message (optional)", validators=[
        Optional(), Length(max=MESSAGE_MAX, message=f"Use at most {MESSAGE_MAX} characters.")])
    show_message = BooleanField("Publish my message with my gift")

    def __init__(self, options: DonationOptions, fund_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options
        self.currency.choices = {code: code for code in options.currencies}
        self.amount.choices = {**{str(value): str(value) for value in options.presets},
                               OTHER: "Other amount"}
        self.fund.choices = {fund.id: fund.name for fund in options.funds}
        if not self.is_submitted():
            self.currency.data = options.default_currency
            self.fund.data = fund_id or options.funds[0].id
            if options.presets:
                self.amount.data = str(options.presets[len(options.presets) // 2])

    @property
    def chosen_currency(self) -> str:
        chosen = str(self.currency.data or "")
        return chosen if chosen in self.options.currencies else self.options.default_currency

    def validate_amount(self, field: RadioField) -> None:
        if (self.other_amount.data or "").strip():
            return
        if field.data == OTHER:
            raise ValidationError("Enter the amount you would like to give.")
        if field.data not in {str(value) for value in self.options.presets}:
            raise ValidationError("Choose an amount, or enter another amount.")

    def validate_other_amount(self, field: StringField) -> None:
        text = (field.data or "").strip()
        if not text:
            return
        try:
            value = parse_major(text, self.chosen_currency)
        except (ValueError, ArithmeticError) as exc:
            raise ValidationError(f"Enter an amount such as 25 or 25.50 "
                                  f"({self.chosen_currency}).") from exc
        if value <= 0:
            raise ValidationError("Enter an amount greater than zero.")

    def gift(self) -> int:
        """The gift in minor units (after validation)."""
        text = (self.other_amount.data or "").strip()
        if text:
            return parse_major(text, self.chosen_currency)
        return int(self.amount.data)

    def choices(self, organisation_id: str, locale: str) -> DonorChoices:
        return DonorChoices(
            organisation_id=organisation_id, fund_id=str(self.fund.data or ""),
            gift=self.gift(), currency=str(self.currency.data or ""),
            frequency=str(self.frequency.data or ""), cover_fees=bool(self.cover_fees.data),
            donor_name=self.donor_name.data or "", donor_email=self.donor_email.data or "",
            show_name=bool(self.show_name.data), message=self.message.data or "",
            show_message=bool(self.show_message.data), locale=locale)


class CardNumberForm(FlaskForm):  # type: ignore[misc]
    """Test mode only: one of Stripe's test card numbers."""

    card_number = StringField("Card number", validators=[
        DataRequired("Enter a test card number, such as 4242 4242 4242 4242."),
        Length(max=30, message="A card number has at most 19 digits.")])


class ConfirmForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something: nothing but its CSRF token."""
