from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, redirect, request, url_for
from flask_login import current_user

from portal.auth import client_ip, masked_ip, sign_in, sign_out
from portal.blueprints.account import bp
from portal.blueprints.account.forms import EmptyForm, LoginForm
from portal.extensions import db
from portal.services import accounts
from portal.web import render


def safe_next(target: str | None) -> str:
    """Only ever go back to a page of this site (no open redirects)."""
    if target:
        parts = urlsplit(target)
        local = not parts.scheme and not parts.netloc and target.startswith("/")
        if local and not target.startswith("//") and "\\" not in target:
            return target
    return url_for("dashboard.home")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))  # type: ignore[return-value]
    form = LoginForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render("account/login.html", "login_form", status=status, form=form,
                      error=None)
    try:
        user = accounts.authenticate(form.email.data or "", form.password.data or "")
    except accounts.InvalidCredentials as error:
        accounts.log(None, "sign_in_failed", ip=masked_ip(client_ip()),
                     email=str(form.email.data)[:320])
        db.session.commit()
        return render("account/login.html", "login_form", status=401, form=form,
                      error=error.message)
    sign_in(user)
    db.session.commit()
    return redirect(safe_next(request.args.get("next")))  # type: ignore[return-value]


@bp.post("/logout")
def logout() -> Response:
    if EmptyForm().validate_on_submit() and current_user.is_authenticated:
        sign_out()
        db.session.commit()
    return redirect(url_for("public.index"))  # type: ignore[return-value]
