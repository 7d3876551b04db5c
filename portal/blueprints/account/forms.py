"""The account pages' forms: field rules a browser can be told about, plus CSRF tokens."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import EmailField, Field, PasswordField, StringField
from wtforms.validators import AnyOf, DataRequired, EqualTo, InputRequired, Length

from portal.models.user import IP_BINDINGS
from portal.services.passwords import MAX_LENGTH, MIN_LENGTH

EMAIL_MAX = 320
PASSWORD_HINT = (f"At least {MIN_LENGTH} characters. A few unrelated words make a strong, "
                 "memorable password; very common passwords are refused.")
IP_BINDING_CHOICES = {
    "none": ("Not tied to an address",
             "Sessions carry on when your address changes (mobile networks, VPNs)."),
    "subnet": ("Tied to the network",
               "A session ends if it is used from outside the network it signed in from "
               "(the same /24 for IPv4, /48 for IPv6)."),
    "strict": ("Tied to the exact address",
               "A session ends if it is used from any other address. Safest, but you may "
               "have to sign in again often."),
}


def _email() -> EmailField:
    return EmailField("Email address", validators=[
        DataRequired("Enter your email address."), Length(max=EMAIL_MAX)])


def _new_password(label: str = "Password") -> PasswordField:
    return PasswordField(label, validators=[
        DataRequired("Choose a password."),
        Length(max=MAX_LENGTH, message=f"Use at most {MAX_LENGTH} characters.")])


def _confirmation() -> PasswordField:
    return PasswordField("Repeat the password", validators=[
        DataRequired("Repeat the password."),
        EqualTo("password", message="The two passwords are not the same.")])


def _current_password(label: str = "Your current password") -> PasswordField:
    return PasswordField(label, validators=[
        DataRequired("Enter your current password."), Length(max=MAX_LENGTH)])


def _code(label: str) -> StringField:
    return StringField(label, validators=[
        DataRequired("Enter the code."), Length(max=32, message="That code is too long.")])


class AccountForm(FlaskForm):  # type: ignore[misc]
    """The account pages' forms: CSRF-protected, and rendered without empty attributes."""

    class Meta:
        def render_field(self, field: Field, render_kw: dict[str, Any]) -> Any:
            # The shared field macro passes None for "no aria-invalid/aria-describedby";
            # WTForms would write that out as the word "None".
            present = {key: value for key, value in render_kw.items() if value is not None}
            return super().render_field(field, present)  # type: ignore[misc]


class LoginForm(AccountForm):
    email = _email()
    password = PasswordField("Password", validators=[
        DataRequired("Enter your password."), Length(max=MAX_LENGTH)])


class TwoFactorForm(AccountForm):
    code = _code("Code")


class RegisterForm(AccountForm):
    email = _email()
    display_name = StringField("Your name", validators=[
        DataRequired("Enter your name, as other members should see it."), Length(max=200)])
    password = _new_password()
    confirm = _confirmation()


class EmailForm(AccountForm):
    """One email address: resending a confirmation, asking for a reset link."""

    email = _email()


class ResetPasswordForm(AccountForm):
    password = _new_password("New password")
    confirm = _confirmation()


class ChangePasswordForm(AccountForm):
    current_password = _current_password()
    password = _new_password("New password")
    confirm = _confirmation()


class ChangeEmailForm(AccountForm):
    email = EmailField("New email address", validators=[
        DataRequired("Enter the new email address."), Length(max=EMAIL_MAX)])
    password = _current_password()


class EnableTwoFactorForm(AccountForm):
    code = _code("Code from the app")


class PasswordConfirmForm(AccountForm):
    """Re-authentication before a change (new recovery codes)."""

    password = _current_password()


class DisableTwoFactorForm(AccountForm):
    password = _current_password()
    code = _code("Code from the app, or a recovery code")


class IpBindingForm(AccountForm):
    """One of IP_BINDING_CHOICES; the page draws the radio buttons with their hints."""

    binding = StringField("Tie sessions to your address", validators=[
        InputRequired("Choose one of the options."),
        AnyOf(IP_BINDINGS, message="Choose one of the options.")])


class EmptyForm(AccountForm):
    """A form with nothing but its CSRF token: for buttons that change something."""
