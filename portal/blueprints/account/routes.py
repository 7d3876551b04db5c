"""Account pages: sign up, sign in (with its second step), passwords, email address,
two-factor sign-in, and the security page with sessions and the security log.

Each form lives in a named block of its page: htmx requests get that block back
(with 422 and the errors beside their fields when something is wrong), other
requests the whole page. Successful changes redirect (htmx: ``HX-Redirect``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Response, flash, redirect, request, session, url_for
from flask_limiter import RateLimitExceeded
from flask_login import current_user
from flask_wtf import FlaskForm

from portal import auth
from portal.blueprints.account import bp, events, limits
from portal.blueprints.account.forms import (
    IP_BINDING_CHOICES,
    PASSWORD_HINT,
    ChangeEmailForm,
    ChangePasswordForm,
    DisableTwoFactorForm,
    EmailForm,
    EmptyForm,
    EnableTwoFactorForm,
    IpBindingForm,
    LoginForm,
    PasswordConfirmForm,
    RegisterForm,
    ResetPasswordForm,
    TwoFactorForm,
)
from portal.blueprints.account.qr import qr_svg
from portal.blueprints.dashboard.access import signed_in
from portal.services import accounts, mfa, passwords, tokens
from portal.services.errors import DomainError
from portal.web import error_page, is_fragment_request, render

PENDING_SETUP = "two_factor_setup"
REASON_MAX = 300


def safe_next(target: str | None, default: str | None = None) -> str:
    """Only ever go back to a page of this site (no open redirects)."""
    if target:
        parts = urlsplit(target)
        local = not parts.scheme and not parts.netloc and target.startswith("/")
        if local and not target.startswith("//") and "\\" not in target:
            return target
    return default or url_for("dashboard.home")


def _go(target: str) -> Response:
    """Redirect; an htmx request is told to load the new page in full instead."""
    if is_fragment_request():
        return Response(status=200, headers={"HX-Redirect": target})
    return redirect(target)  # type: ignore[return-value]


def _refuse(form: FlaskForm, error: DomainError) -> None:
    """Show a service's refusal beside its field (or above the form, if it has none)."""
    field = form._fields.get(error.field) if error.field else None
    if field is None:
        form.form_errors.append(error.message)
    else:
        field.errors = [*field.errors, error.message]


def _status(form: FlaskForm) -> int:
    """422 for a form sent back with errors, 200 for a form shown for the first time."""
    invalid = bool(form.form_errors) or any(field.errors for field in form)
    return 422 if request.method == "POST" and invalid else 200


def _ip() -> str:
    return auth.masked_ip(auth.client_ip())


def _device() -> str:
    return auth.device_name(auth.client_agent())


@bp.after_request
def _private(response: Response) -> Response:
    # Account pages show personal data and carry tokens in their addresses.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.errorhandler(RateLimitExceeded)
def _too_many(error: RateLimitExceeded) -> Response:
    message = str(error.description)
    if request.endpoint == "account.login":
        return render("account/login.html", "login_form", status=429, form=LoginForm(),
                      error=message, unconfirmed=False)
    if request.endpoint == "account.login_two_factor":
        return render("account/login_two_factor.html", "two_factor_form", status=429,
                      form=TwoFactorForm(), error=message)
    return error_page(429, message)


# --------------------------------------------------------------------------- signing in


@bp.route("/login", methods=["GET", "POST"])
@limits.sign_in_by_ip
@limits.sign_in_by_account
def login() -> Response:
    next_url = request.args.get("next")
    if current_user.is_authenticated:
        return _go(safe_next(next_url))
    form = LoginForm()
    page = "account/login.html"
    if not form.validate_on_submit():
        return render(page, "login_form", status=_status(form), form=form, error=None,
                      unconfirmed=False)
    try:
        user = accounts.check_sign_in(form.email.data or "", form.password.data or "",
                                      ip=_ip(), device=_device())
    except accounts.InvalidCredentials as error:
        limits.count_this()
        return render(page, "login_form", status=401, form=form, error=error.message,
                      unconfirmed=False)
    except accounts.EmailNotConfirmed as error:
        return render(page, "login_form", status=403, form=form, error=error.message,
                      unconfirmed=True)
    if user.mfa_enabled:
        auth.begin_two_factor(user, safe_next(next_url))
        return _go(url_for("account.login_two_factor"))
    auth.sign_in(user)
    return _go(safe_next(next_url))


@bp.route("/login/two-factor", methods=["GET", "POST"])
@limits.code_by_ip
@limits.code_by_account
@limits.code_by_account_daily
def login_two_factor() -> Response:
    pending = auth.pending_two_factor()
    if pending is None:
        if request.method == "POST":
            flash("Your sign-in waited too long for its code. Please sign in again.", "info")
        return _go(url_for("account.login"))
    form = TwoFactorForm()
    page = "account/login_two_factor.html"
    if not form.validate_on_submit():
        return render(page, "two_factor_form", status=_status(form), form=form, error=None)
    try:
        passed = mfa.verify_second_step(pending.user_id, form.code.data or "",
                                        stamp=pending.stamp, ip=_ip(), device=_device())
    except mfa.SignInExpired as error:
        auth.abandon_two_factor()
        flash(error.message, "error")
        return _go(url_for("account.login"))
    except mfa.InvalidCode as error:
        limits.count_this()
        if auth.two_factor_failed():
            flash("Too many wrong codes for one sign-in. Please sign in again.", "error")
            return _go(url_for("account.login"))
        return render(page, "two_factor_form", status=401, form=form, error=error.message)
    auth.sign_in(passed.user, method=passed.method)
    if passed.method == "recovery code":
        left = passed.recovery_codes_left
        advice = " Make new ones on the two-factor page soon." if left <= 3 else ""
        flash(f"You signed in with a recovery code; it cannot be used again. "
              f"{left} of your recovery codes are left.{advice}", "info")
    return _go(pending.next_url)


@bp.post("/logout")
def logout() -> Response:
    if EmptyForm().validate_on_submit() and current_user.is_authenticated:
        auth.sign_out()
    return redirect(url_for("public.index"))  # type: ignore[return-value]


# --------------------------------------------------------------------------- signing up


@bp.route("/register", methods=["GET", "POST"])
@limits.mail_by_ip
@limits.mail_by_address
def register() -> Response:
    if current_user.is_authenticated:
        return _go(url_for("account.security"))
    form = RegisterForm()
    page = "account/register.html"
    if form.validate_on_submit():
        try:
            sent_to = accounts.sign_up(form.email.data or "", form.password.data or "",
                                       form.display_name.data or "")
        except (accounts.InvalidAccount, passwords.WeakPassword) as error:
            _refuse(form, error)
        else:
            limits.count_this()
            return render(page, "register_form", form=form, sent_to=sent_to,
                          password_hint=PASSWORD_HINT)
    return render(page, "register_form", status=_status(form), form=form, sent_to=None,
                  password_hint=PASSWORD_HINT)


@bp.route("/confirm/resend", methods=["GET", "POST"])
@limits.mail_by_ip
@limits.mail_by_address
def resend_confirmation() -> Response:
    form = EmailForm()
    page = "account/resend_confirmation.html"
    if form.validate_on_submit():
        try:
            sent_to = accounts.resend_confirmation(form.email.data or "")
        except accounts.InvalidAccount as error:
            _refuse(form, error)
        else:
            limits.count_this()
            return render(page, "resend_form", form=form, sent_to=sent_to)
    return render(page, "resend_form", status=_status(form), form=form, sent_to=None)


@bp.get("/confirm/<token>")
def confirm_email(token: str) -> Response:
    try:
        accounts.confirm_email(token)
    except tokens.InvalidToken as error:
        return render("account/link_invalid.html", status=400, message=error.message,
                      again=url_for("account.resend_confirmation"),
                      again_label="Ask for a new confirmation link")
    flash("Your email address is confirmed. You can sign in now.", "success")
    if current_user.is_authenticated:
        return _go(url_for("account.security"))
    return _go(url_for("account.login"))


# --------------------------------------------------------------------------- passwords


@bp.route("/password/forgot", methods=["GET", "POST"])
@limits.mail_by_ip
@limits.mail_by_address
def forgot_password() -> Response:
    form = EmailForm()
    page = "account/forgot_password.html"
    if form.validate_on_submit():
        try:
            sent_to = accounts.request_password_reset(form.email.data or "")
        except accounts.InvalidAccount as error:
            _refuse(form, error)
        else:
            limits.count_this()
            return render(page, "forgot_form", form=form, sent_to=sent_to)
    return render(page, "forgot_form", status=_status(form), form=form, sent_to=None)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> Response:
    try:
        email = accounts.check_reset_token(token)
    except tokens.InvalidToken as error:
        return render("account/link_invalid.html", status=400, message=error.message,
                      again=url_for("account.forgot_password"),
                      again_label="Ask for a new link")
    form = ResetPasswordForm()
    page = "account/reset_password.html"
    if form.validate_on_submit():
        try:
            accounts.reset_password(token, form.password.data or "")
        except passwords.WeakPassword as error:
            _refuse(form, error)
        else:
            auth.sign_out()
            flash("Your password has been changed and every session signed out. Sign in "
                  "with the new password.", "success")
            return _go(url_for("account.login"))
    return render(page, "reset_form", status=_status(form), form=form, email=email,
                  token=token, password_hint=PASSWORD_HINT)


@bp.route("/password", methods=["GET", "POST"])
@limits.reauthentication
@signed_in
def change_password() -> Response:
    form = ChangePasswordForm()
    page = "account/change_password.html"
    if form.validate_on_submit():
        try:
            stamp = accounts.change_password(
                current_user.id, form.current_password.data or "", form.password.data or "",
                ip=_ip(), keep_session=auth.current_session_id())
        except accounts.WrongPassword as error:
            limits.count_this()
            _refuse(form, error)
        except passwords.WeakPassword as error:
            _refuse(form, error)
        else:
            auth.keep_signed_in(stamp)
            flash("Your password has been changed. Your other sessions have been signed "
                  "out.", "success")
            return _go(url_for("account.security"))
    return render(page, "password_form", status=_status(form), form=form,
                  password_hint=PASSWORD_HINT)


# --------------------------------------------------------------------------- email address


@bp.route("/email", methods=["GET", "POST"])
@limits.reauthentication
@limits.mail_by_ip
@limits.mail_by_address
@signed_in
def change_email() -> Response:
    form = ChangeEmailForm()
    page = "account/change_email.html"
    if form.validate_on_submit():
        try:
            sent_to = accounts.request_email_change(
                current_user.id, form.password.data or "", form.email.data or "", ip=_ip())
        except accounts.WrongPassword as error:
            limits.count_this()
            _refuse(form, error)
        except accounts.InvalidAccount as error:
            _refuse(form, error)
        else:
            limits.count_this()
            return render(page, "email_form", form=form, sent_to=sent_to)
    return render(page, "email_form", status=_status(form), form=form, sent_to=None)


@bp.route("/email/confirm/<token>", methods=["GET", "POST"])
def confirm_email_change(token: str) -> Response:
    invalid: dict[str, Any] = {"again": url_for("account.change_email"),
                               "again_label": "Ask for a new link"}
    try:
        change = accounts.read_email_change(token)
    except tokens.InvalidToken as error:
        return render("account/link_invalid.html", status=400, message=error.message,
                      **invalid)
    form = EmptyForm()
    if form.validate_on_submit():
        signed_in_user = current_user.id if current_user.is_authenticated else None
        try:
            changed = accounts.confirm_email_change(
                token, signed_in_user=signed_in_user, keep_session=auth.current_session_id())
        except DomainError as error:
            return render("account/link_invalid.html", status=error.status_code,
                          message=error.message, **invalid)
        if changed.stamp is not None:
            auth.keep_signed_in(changed.stamp)
            flash(f"Your account now uses {changed.new_email}. Your other sessions have "
                  "been signed out.", "success")
            return _go(url_for("account.security"))
        flash(f"Your account now uses {changed.new_email}. Sign in with it.", "success")
        return _go(url_for("account.login"))
    return render("account/confirm_email_change.html", form=form, change=change, token=token)


# --------------------------------------------------------------------------- security page


def _security_page(block: str | None = None, *, status: int = 200,
                   ip_form: IpBindingForm | None = None, message: str | None = None,
                   ) -> Response:
    user = current_user
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    rows = [{
        "handle": record.handle,
        "device": auth.device_name(record.user_agent),
        "ip": auth.masked_ip(record.ip),
        "created_at": datetime.fromtimestamp(record.created_at, UTC),
        "last_active": datetime.fromtimestamp(record.last_active, UTC),
        "current": auth.is_current_session(record.session_id),
    } for record in accounts.active_sessions(user.id)]
    if ip_form is None:
        ip_form = IpBindingForm(formdata=None, binding=user.ip_binding)
    return render(
        "account/security.html", block, status=status, user=user, sessions=rows,
        log=accounts.security_log(user.id, page), describe_event=events.describe,
        ip_form=ip_form, ip_choices=IP_BINDING_CHOICES, messages={block: message},
        sign_out_form=EmptyForm(),
        recovery_codes_left=mfa.recovery_codes_left(user.id) if user.mfa_enabled else 0,
    )


@bp.get("/security")
@signed_in
def security() -> Response:
    return _security_page("security_log")


@bp.post("/security/ip-binding")
@signed_in
def set_ip_binding() -> Response:
    form = IpBindingForm()
    if not form.validate_on_submit():
        return _security_page("ip_binding", status=422, ip_form=form)
    accounts.set_ip_binding(current_user.id, form.binding.data or "", ip=_ip())
    auth.anchor_to_current_address()
    label = IP_BINDING_CHOICES[current_user.ip_binding][0]
    message = f"Saved: {label.lower()}."
    if is_fragment_request():
        return _security_page("ip_binding", ip_form=form, message=message)
    flash(message, "success")
    return redirect(url_for("account.security"))  # type: ignore[return-value]


@bp.post("/sessions/<handle>/revoke")
@signed_in
def revoke_session(handle: str) -> Response:
    try:
        accounts.revoke_session(current_user.id, handle,
                                current_session=auth.current_session_id(), ip=_ip())
    except DomainError as error:
        message, category = error.message, "error"
    else:
        message, category = "That session has been signed out.", "success"
    if is_fragment_request():
        return _security_page("sessions", message=message)
    flash(message, category)
    return redirect(url_for("account.security"))  # type: ignore[return-value]


@bp.post("/sessions/sign-out-others")
@signed_in
def sign_out_others() -> Response:
    stamp = accounts.sign_out_other_sessions(current_user.id,
                                             keep_session=auth.current_session_id(), ip=_ip())
    auth.keep_signed_in(stamp)
    message = "Every other session has been signed out."
    if is_fragment_request():
        return _security_page("sessions", message=message)
    flash(message, "success")
    return redirect(url_for("account.security"))  # type: ignore[return-value]


# --------------------------------------------------------------------------- two-factor


def _setup_secret() -> str:
    """The secret being set up in this session (kept sealed), made on first sight."""
    sealed = session.get(PENDING_SETUP)
    if sealed:
        try:
            return mfa.unseal(current_user.id, str(sealed))
        except ValueError:
            pass
    secret = mfa.new_secret()
    session[PENDING_SETUP] = mfa.seal(current_user.id, secret)
    return secret


def _two_factor_page(*, status: int = 200, enable_form: EnableTwoFactorForm | None = None,
                     codes_form: PasswordConfirmForm | None = None,
                     disable_form: DisableTwoFactorForm | None = None,
                     recovery_codes: list[str] | None = None) -> Response:
    user = current_user
    next_url = request.args.get("next")
    context: dict[str, Any] = {
        "user": user, "recovery_codes": recovery_codes,
        "reason": (request.args.get("reason") or "")[:REASON_MAX],
        "next_url": next_url if next_url and safe_next(next_url) == next_url else None,
        "continue_to": safe_next(next_url, url_for("account.security")),
        "codes_form": codes_form or PasswordConfirmForm(prefix="codes", formdata=None),
        "disable_form": disable_form or DisableTwoFactorForm(prefix="disable", formdata=None),
        "enable_form": enable_form or EnableTwoFactorForm(formdata=None),
    }
    if user.mfa_enabled:
        context["recovery_codes_left"] = mfa.recovery_codes_left(user.id)
    elif recovery_codes is None:
        secret = _setup_secret()
        uri = mfa.provisioning_uri(secret, user.email)
        context["secret"] = mfa.grouped(secret)
        context["qr"] = qr_svg(uri, label="QR code to add this account to an authenticator app")
    return render("account/two_factor.html", "two_factor", status=status, **context)


@bp.route("/two-factor", methods=["GET", "POST"])
@limits.reauthentication
@signed_in
def mfa_setup() -> Response:
    if request.method == "GET" or current_user.mfa_enabled:
        return _two_factor_page()
    form = EnableTwoFactorForm()
    if not form.validate_on_submit():
        return _two_factor_page(status=422, enable_form=form)
    try:
        codes = mfa.enable(current_user.id, _setup_secret(), form.code.data or "", ip=_ip(),
                           keep_session=auth.current_session_id())
    except mfa.InvalidCode as error:
        limits.count_this()
        _refuse(form, error)
        return _two_factor_page(status=422, enable_form=form)
    session.pop(PENDING_SETUP, None)
    auth.keep_signed_in(codes.stamp)
    return _two_factor_page(recovery_codes=codes.recovery_codes)


@bp.post("/two-factor/recovery-codes")
@limits.reauthentication
@signed_in
def regenerate_recovery_codes() -> Response:
    form = PasswordConfirmForm(prefix="codes")
    if not form.validate_on_submit():
        return _two_factor_page(status=422, codes_form=form)
    try:
        codes = mfa.regenerate_recovery_codes(current_user.id, form.password.data or "",
                                              ip=_ip(), keep_session=auth.current_session_id())
    except accounts.WrongPassword as error:
        limits.count_this()
        _refuse(form, error)
        return _two_factor_page(status=422, codes_form=form)
    except mfa.TwoFactorState as error:
        flash(error.message, "error")
        return _go(url_for("account.mfa_setup"))
    auth.keep_signed_in(codes.stamp)
    return _two_factor_page(recovery_codes=codes.recovery_codes)


@bp.post("/two-factor/disable")
@limits.reauthentication
@signed_in
def disable_mfa() -> Response:
    form = DisableTwoFactorForm(prefix="disable")
    if not form.validate_on_submit():
        return _two_factor_page(status=422, disable_form=form)
    try:
        stamp = mfa.disable(current_user.id, form.password.data or "", form.code.data or "",
                            ip=_ip(), keep_session=auth.current_session_id())
    except (accounts.WrongPassword, mfa.InvalidCode) as error:
        limits.count_this()
        _refuse(form, error)
        return _two_factor_page(status=422, disable_form=form)
    except mfa.TwoFactorState as error:
        flash(error.message, "error")
        return _go(url_for("account.mfa_setup"))
    auth.keep_signed_in(stamp)
    flash("Two-factor sign-in is off. Your other sessions have been signed out.", "success")
    return _go(url_for("account.security"))
