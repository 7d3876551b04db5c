from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length


class LoginForm(FlaskForm):  # type: ignore[misc]
    email = EmailField("Email address", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class EmptyForm(FlaskForm):  # type: ignore[misc]
    """A form with nothing but its CSRF token: for buttons that change something."""

