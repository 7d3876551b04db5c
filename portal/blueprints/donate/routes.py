"""The donation pages.

``/orgs/<slug>/donate`` (or ``…/funds/<fund>/donate``) takes the donor's choices and stores
a pending donation; ``/donations/<id>/pay`` asks Stripe for the payment and shows the
Payment Element (or, in test mode with the simulator, a test-card form); Stripe (or the
form) then sends the donor to ``/donations/<id>/thanks``, which waits for Stripe's event
and shows the receipt. Forms re-render their own block for htmx requests (422 with the
errors beside their fields), and every page works without JavaScript.
"""

from __future__ import annotations

from flask import Response, abort, current_app, redirect, request, url_for

from portal.blueprints.donate import bp
from portal.blueprints.donate.forms import CardNumberForm, ConfirmForm, DonationForm
from portal.extensions import limiter
from portal.services import donation_receipts, donations, organisations, payments
from portal.web import CONTENT_SECURITY_POLICY, get_locale, is_fragment_request, render

RATE_LIMIT_MESSAGE = ("Too many donation attempts from your network in a short time. "
                      "Please wait a minute and try again.")
#: What Stripe.js needs, and only on the page that mounts the Payment Element.
STRIPE_SOURCES = {
    "script-src": "https://js.stripe.com https://*.js.stripe.com",
    "frame-src": "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com",
    "connect-src": "https://api.stripe.com https://*.stripe.com",
    "img-src": "https://*.stripe.com",
}

SELF = "'self'"

donation_limit = limiter.shared_limit(
    lambda: str(current_app.config["DONATION_RATE_LIMIT"]), scope="donations",
    methods=["POST"], error_message=RATE_LIMIT_MESSAGE)


def _go(target: str) -> Response:
    """Redirect; an htmx request is told to load the new page in full instead."""
    if is_fragment_request():
        return Response(status=200, headers={"HX-Redirect": target})
    return redirect(target, code=303)  # type: ignore[return-value]


def _private(response: Response) -> Response:
    """A donor's own page (it names their donation): never stored by caches."""
    response.headers["Cache-Control"] = "no-store"
    return response


def stripe_policy() -> str:
    """The portal's Content-Security-Policy, opened to Stripe.js for the payment page."""
    directives = dict(part.strip().split(" ", 1) for part in
                      CONTENT_SECURITY_POLICY.split(";") if part.strip())
    for name, sources in STRIPE_SOURCES.items():
        directives[name] = f"{directives.get(name, SELF)} {sources}"
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


# --------------------------------------------------------------------------- the form


@bp.route("/orgs/<slug>/donate", methods=["GET", "POST"], endpoint="donate")
@bp.route("/orgs/<slug>/funds/<fund_id>/donate", methods=["GET", "POST"],
          endpoint="donate_to_fund")
@donation_limit
def donate(slug: str, fund_id: str | None = None) -> Response:
    org = organisations.find_public_organisation(slug)
    state = donations.donate_state(org.id)
    if not state.can_donate:
        return render("donate/unavailable.html", org=org, reason=state.reason)
    options = donations.donation_options(org.id)
    fund = options.fund(fund_id) if fund_id is not None else None
    if fund_id is not None and fund is None:
        abort(404, "This fund does not take donations: it may have been closed.")
    form = DonationForm(options, fund_id)
    if form.validate_on_submit():
        try:
            donation_id = donations.start_donation(form.choices(org.id, get_locale()))
        except donations.InvalidDonation as error:
            target = form._fields.get(error.field or "") or form.amount
            target.errors = [*target.errors, error.message]
        else:
            return _go(url_for(".pay", donation_id=donation_id))
    invalid = request.method == "POST" and bool(form.errors)
    return render("donate/donate.html", "donate_form", status=422 if invalid else 200,
                  org=org, form=form, options=options, fund=fund)


# --------------------------------------------------------------------------- paying


@bp.get("/donations/<donation_id>/pay")
def pay(donation_id: str) -> Response:
    donations.open_donation(donation_id)
    try:
        step = donations.payment_step(donation_id)
    except donations.DonationAlreadyCompleted:
        return redirect(url_for(".thanks", donation_id=donation_id), code=303)  # type: ignore[return-value]
    except payments.PaymentError as error:
        return _private(render("donate/pay.html", status=error.status_code,
                               donation=donations.donation_summary(donation_id), step=None,
                               form=None, stripe_error=str(error)))
    response = render("donate/pay.html", donation=step.donation, step=step,
                      form=CardNumberForm() if step.card_form else None, stripe_error=None)
    if not step.card_form:
        response.headers["Content-Security-Policy"] = stripe_policy()
    return _private(response)


@bp.post("/donations/<donation_id>/pay")
@donation_limit
def pay_with_card(donation_id: str) -> Response:
    donations.open_donation(donation_id)
    thanks = url_for(".thanks", donation_id=donation_id)
    form = CardNumberForm()
    stripe_error = None
    status = 422
    if form.validate_on_submit():
        try:
            donations.pay_with_test_card(donation_id, form.card_number.data or "",
                                         return_url=url_for(".thanks", donation_id=donation_id,
                                                            _external=True))
        except donations.DonationAlreadyCompleted:
            return _go(thanks)
        except payments.CardDeclined as declined:
            form.card_number.errors = [*form.card_number.errors, str(declined)]
            status = declined.status_code
        except payments.PaymentError as error:
            stripe_error, status = str(error), error.status_code
        else:
            return _go(thanks)
    return _private(render("donate/pay.html", "pay_form", status=status,
                           donation=donations.donation_summary(donation_id), step=None,
                           form=form, stripe_error=stripe_error))


# --------------------------------------------------------------------------- the receipt


@bp.get("/donations/<donation_id>/thanks")
def thanks(donation_id: str) -> Response:
    donations.open_donation(donation_id)
    receipt = donation_receipts.receipt(donation_id, request.args.get("payment") or None)
    return _private(render("donate/thanks.html", "receipt", receipt=receipt))


@bp.get("/donations/<donation_id>/receipt.pdf")
def receipt_pdf(donation_id: str) -> Response:
    donations.open_donation(donation_id)
    receipt = donation_receipts.receipt(donation_id, request.args.get("payment") or None)
    response = Response(donation_receipts.receipt_pdf(receipt), mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="receipt-{donation_id}.pdf"'
    return _private(response)


@bp.get("/donations/<donation_id>/proof")
def proof(donation_id: str) -> Response:
    donations.open_donation(donation_id)
    receipt = donation_receipts.receipt(donation_id, request.args.get("payment") or None)
    response = Response(donation_receipts.proof_file(receipt), mimetype="text/plain")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{receipt.proof_filename}"')
    return _private(response)


# --------------------------------------------------------------------------- monthly gifts


@bp.route("/donations/cancel/<token>", methods=["GET", "POST"])
def cancel_monthly_gift(token: str) -> Response:
    form = ConfirmForm()
    if form.validate_on_submit():
        gift = donations.cancel_monthly_gift(token)
        return _private(render("donate/cancel.html", gift=gift, form=form, just_canceled=True))
    gift = donations.monthly_gift(token)
    return _private(render("donate/cancel.html", gift=gift, form=form, just_canceled=False))
