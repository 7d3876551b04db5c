"""The dashboard's forms. Each checks what a form can (required fields, choices, the
shape of an amount); services check the rest and name the field that was wrong."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from babel import Locale
from babel.numbers import get_currency_name
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    DateField,
    EmailField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from portal.models import FUND_TYPES, ROLES, VISIBILITY_LEVELS
from portal.money import CURRENCY_EXPONENTS, minor_units, parse_major
from portal.services.errors import DomainError
from portal.services.expenses import VISIBILITY_LABELS
from portal.services.funds import FUND_TYPE_LABELS
from portal.services.members import ROLE_LABELS

REQUIRED = "This is needed."
# Codes that are not countries an organisation can be registered in.
NOT_COUNTRIES = frozenset({"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"})


# Choices are given as {value: label} dictionaries (in display order): the form of
# WTForms choices that is not deprecated and that its type stubs know.


@lru_cache(maxsize=16)
def currency_choices(locale: str = "en") -> dict[str, str]:
    return {code: f"{code} — {get_currency_name(code, locale=locale)}"
            for code in sorted(CURRENCY_EXPONENTS)}


@lru_cache(maxsize=16)
def country_choices(locale: str = "en") -> dict[str, str]:
    territories = Locale.parse(locale).territories
    return dict(sorted(((code, str(name)) for code, name in territories.items()
                        if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES),
                       key=lambda item: item[1]))


def attach_error(form: FlaskForm, error: DomainError) -> None:
    """Show a service's refusal beside the field it names, or above the form."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None and hasattr(field, "errors"):
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)


def _amount_in(field: Any, currency: str | None) -> int:
    """Minor units of the amount typed in major units (``12.50`` EUR → 1250)."""
    if not currency or currency not in CURRENCY_EXPONENTS:
        raise ValidationError("Choose the currency first.")
    try:
        amount = parse_major(str(field.data or ""), currency)
    except ValueError as exc:
        digits = minor_units(currency)
        example = "120" if digits == 0 else "120." + "5" * digits
        raise ValidationError(
            f"Enter an amount in {currency} like {example}"
            f"{'' if digits == 0 else f' (at most {digits} decimals)'}.") from exc
    if amount <= 0:
        raise ValidationError("Enter an amount above zero.")
    return amount


class EmptyForm(FlaskForm):  # type: ignore[misc]
    """Nothing but the CSRF token: for buttons that change something."""


class OrganisationForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(REQUIRED), Length(max=200)])
    legal_name = StringField("Legal name", validators=[Optional(), Length(max=300)])
    country = SelectField("Country of registration", validators=[DataRequired(REQUIRED)])
    default_currency = SelectField("Main currency", validators=[DataRequired(REQUIRED)])
    description = TextAreaField("What the organisation does",
                                validators=[Optional(), Length(max=5000)])
    website = StringField("Website", validators=[Optional(), Length(max=300)])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.country.choices = {"": "Choose a country", **country_choices()}
        self.default_currency.choices = {"": "Choose a currency", **currency_choices()}


class FundForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(REQUIRED), Length(max=120)])
    type = SelectField("Kind of fund", validators=[DataRequired(REQUIRED)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    goal_amount = StringField("Goal (optional)", validators=[Optional()])
    goal_currency = SelectField("Currency of the goal", validators=[Optional()])

    goal_minor: int | None = None

    def __init__(self, *args: Any, general: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        types = ("general",) if general else tuple(t for t in FUND_TYPES if t != "general")
        self.type.choices = {t: FUND_TYPE_LABELS[t] for t in types}
        self.goal_currency.choices = {"": "No goal", **currency_choices()}

    def validate_goal_amount(self, field: Any) -> None:
        if not (field.data or "").strip():
            self.goal_minor = None
            return
        self.goal_minor = _amount_in(field, self.goal_currency.data)


class CategoryForm(FlaskForm):  # type: ignore[misc]
    label = StringField("Name", validators=[DataRequired(REQUIRED), Length(max=80)])


class ExpenseForm(FlaskForm):  # type: ignore[misc]
    amount = StringField("Amount", validators=[InputRequired(REQUIRED)])
    currency = SelectField("Currency", validators=[DataRequired(REQUIRED)])
    fund = SelectField("Fund", validators=[DataRequired(REQUIRED)])
    category = SelectField("Category", validators=[DataRequired(REQUIRED)])
    payee = StringField("Paid to", validators=[DataRequired(REQUIRED), Length(max=200)])
    description = TextAreaField("What it was for", validators=[Optional(), Length(max=2000)])
    spent_on = DateField("Date spent", validators=[InputRequired(REQUIRED)])
    visibility = RadioField("What the public sees", validators=[InputRequired(REQUIRED)])
    reveal_on = DateField("Disclose on", validators=[Optional()])
    receipt = FileField("Receipt (PDF, PNG or JPEG)")

    amount_minor: int = 0

    def __init__(self, *args: Any, funds: list[tuple[str, str]],
                 categories: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency.choices = currency_choices()
        self.fund.choices = dict(funds)
        self.category.choices = {"": "Choose a category", **dict(categories)}
        self.visibility.choices = {v: VISIBILITY_LABELS[v] for v in VISIBILITY_LEVELS}

    def validate_amount(self, field: Any) -> None:
        self.amount_minor = _amount_in(field, self.currency.data)

    def validate_reveal_on(self, field: Any) -> None:
        if self.visibility.data == "delayed_public" and field.data is None:
            raise ValidationError("Choose the date on which the expense becomes public.")


class ReasonForm(FlaskForm):  # type: ignore[misc]
    """A decision or correction that needs its reason written down."""

    reason = TextAreaField("Reason", validators=[DataRequired(REQUIRED), Length(max=1000)])


class RecategorizeForm(FlaskForm):  # type: ignore[misc]
    category = SelectField("New category", validators=[DataRequired(REQUIRED)])
    note = TextAreaField("Reason (optional, published)", validators=[Optional(),
                                                                    Length(max=1000)])

    def __init__(self, *args: Any, categories: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.category.choices = {"": "Choose a category", **dict(categories)}


class TransferForm(FlaskForm):  # type: ignore[misc]
    recipient = StringField("Send to (the organisation's address name)",
                            validators=[DataRequired(REQUIRED), Length(max=64)])
    amount = StringField("Amount", validators=[InputRequired(REQUIRED)])
    currency = SelectField("Currency", validators=[DataRequired(REQUIRED)])
    fund = SelectField("From fund", validators=[DataRequired(REQUIRED)])
    description = TextAreaField("What it is for (published in both ledgers)",
                                validators=[DataRequired(REQUIRED), Length(max=2000)])

    amount_minor: int = 0

    def __init__(self, *args: Any, funds: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency.choices = currency_choices()
        self.fund.choices = dict(funds)

    def validate_amount(self, field: Any) -> None:
        self.amount_minor = _amount_in(field, self.currency.data)


class InviteForm(FlaskForm):  # type: ignore[misc]
    email = EmailField("Email address", validators=[DataRequired(REQUIRED), Length(max=320)])
    role = SelectField("Role", validators=[DataRequired(REQUIRED)])

    def __init__(self, *args: Any, roles: tuple[str, ...] = ROLES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role.choices = {r: ROLE_LABELS[r] for r in roles}


class RoleForm(FlaskForm):  # type: ignore[misc]
    role = SelectField("Role", validators=[DataRequired(REQUIRED)],
                       choices={r: r.capitalize() for r in ROLES})


class ReportForm(FlaskForm):  # type: ignore[misc]
    """An audit report: a period (both ends optional) and whose view of the ledger."""

    period_from = DateField("First day", validators=[Optional()],
                            description="Leave empty to start at the first entry.")
    period_to = DateField("Last day", validators=[Optional()],
                          description="Leave empty to end at the last entry.")
    audience = RadioField("Report on", default="auditor", choices={
        "auditor": "Every entry in full (from the auditor export; confidential)",
        "public": "What the public sees (from the public export)",
    }, validators=[InputRequired(REQUIRED)])

    def validate_period_to(self, field: DateField) -> None:
        if field.data and self.period_from.data and field.data < self.period_from.data:
            raise ValidationError("The last day is before the first day.")
