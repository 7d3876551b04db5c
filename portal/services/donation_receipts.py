"""A donor's receipt, in its three forms (the thanks page, the email, the PDF), from one
set of plain values.

The receipt names the gift's ledger entry (id, hash, a link to it in the public ledger)
and, once a signed checkpoint covers the entry, its inclusion proof and that checkpoint,
with the commands that check them (docs/verification.md, section 3). The email is sent by
a background job after the payment is recorded, with the PDF (and the proof file, when
there is one) attached; monthly gifts' emails carry the signed link that stops the gift.

The PDF and the email are rendered from plain values with the templates under
``templates/receipts`` and ``templates/email``, formatted in the donor's language; the
PDF is self-contained (WeasyPrint may fetch nothing).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jinja2
import redis
import sqlalchemy as sa
from babel.dates import format_datetime
from flask import Flask, current_app

from portal import jobs
from portal.extensions import db
from portal.models import Donation, DonationPayment, Fund, Organisation
from portal.money import format_money
from portal.services import checkpoints, donations, ledger, mail
from portal.services.errors import DomainError

log = logging.getLogger(__name__)

JOB_KIND = "donations.receipt"
STATUS_TEXT = {
    "pending": "Waiting for your payment to be confirmed",
    "failed": "Your payment did not go through",
    "succeeded": "Received",
    "partially_refunded": "Received, partly refunded",
    "refunded": "Refunded",
    "disputed": "Disputed: the amount is held back while the card network decides",
    "dispute_lost": "Reversed after a dispute",
    "active": "Monthly gift active",
    "canceled": "Monthly gift stopped",
}


class ReceiptNotReady(DomainError):
    """The donation has no recorded payment yet, so there is nothing to give a receipt for."""

    status_code = 409


class ProofNotAvailable(DomainError):
    """No signed checkpoint covers the gift yet (the page says when one will)."""

    status_code = 409


@dataclass(frozen=True)
class ReceiptProof:
    """The gift's entry proven against a signed checkpoint (RFC 6962, base64 hashes)."""

    checkpoint_id: str
    tree_size: int
    root_hash: str
    leaf_index: int
    inclusion_path: tuple[str, ...]
    #: The organisation's signed checkpoint (a C2SP signed note), verbatim.
    note: str
    #: The proof as a c2sp.org/tlog-proof file, checkable offline by ``amply-verify``.
    tlog_proof: str


@dataclass(frozen=True)
class ReceiptLinks:
    """Absolute addresses (from ``PUBLIC_BASE_URL``), so the email and the PDF work too."""

    thanks: str
    pdf: str
    proof: str
    entry: str | None
    ledger: str
    how_to_verify: str
    cancel: str | None = None


@dataclass(frozen=True)
class Receipt:
    donation_id: str
    status: str
    frequency: str
    locale: str
    portal_name: str
    base_url: str
    organisation_id: str
    organisation_slug: str
    organisation_name: str
    organisation_legal_name: str
    fund_name: str
    fund_restricted: bool
    donor_name: str
    public_name: str
    message: str
    message_public: bool
    currency: str
    amount: int
    fee_covered: int
    failure_message: str | None
    links: ReceiptLinks
    #: The payment this receipt is for (None until one is recorded).
    payment_intent_id: str | None = None
    paid_at: str | None = None
    stripe_fee: int | None = None
    fee_currency: str | None = None
    amount_refunded: int = 0
    entry_id: str | None = None
    entry_sequence: int | None = None
    entry_hash: str | None = None
    fee_entry_id: str | None = None
    proof: ReceiptProof | None = None

    @property
    def gift(self) -> int:
        return self.amount - self.fee_covered

    @property
    def paid(self) -> bool:
        return self.entry_id is not None

    @property
    def waiting(self) -> bool:
        """Still waiting for Stripe's word on the payment (pages keep asking)."""
        return not self.paid and self.status == "pending"

    @property
    def is_monthly(self) -> bool:
        return self.frequency == "monthly"

    @property
    def net(self) -> int | None:
        """What reaches the organisation, when the fee is in the gift's currency."""
        if self.stripe_fee is None or self.fee_currency != self.currency:
            return None
        return self.amount - self.stripe_fee

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)

    @property
    def proof_filename(self) -> str:
        return f"{self.entry_id}.tlog-proof"

    @property
    def verify_online(self) -> str:
        return (f"amply-verify proof --org {self.organisation_slug} --entry {self.entry_id} "
                f"--base-url {self.base_url} --public-key amply-key.txt")

    @property
    def verify_file(self) -> str:
        return f"amply-verify proof --file {self.proof_filename} --public-key amply-key.txt"


# --------------------------------------------------------------------------- building


def public_url(endpoint: str, **values: Any) -> str:
    """An absolute address of one of the portal's pages, as the public reaches it."""
    base = urlsplit(str(current_app.config["PUBLIC_BASE_URL"]))
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                       url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _proof(organisation_id: str, entry_id: str) -> ReceiptProof | None:
    proven = checkpoints.prove_entry(organisation_id, entry_id)
    text = proven.tlog_proof()
    if proven.line is None or text is None:
        return None
    proof = proven.proof
    return ReceiptProof(proven.line.checkpoint_id, proof.tree_size, _b64(proof.root),
                        proof.leaf_index, tuple(_b64(value) for value in proof.path),
                        proven.line.note, text)


def _chosen_payment(donation: Donation, payment_intent_id: str | None,
                    ) -> DonationPayment | None:
    query = sa.select(DonationPayment).where(DonationPayment.donation_id == donation.id)
    if payment_intent_id:
        query = query.where(DonationPayment.payment_intent_id == payment_intent_id)
    elif donation.payment_intent_id:
        query = query.order_by(DonationPayment.payment_intent_id != donation.payment_intent_id,
                               DonationPayment.paid_at)
    else:
        query = query.order_by(DonationPayment.paid_at)
    return db.session.scalars(query.limit(1)).first()


def receipt(donation_id: str, payment_intent_id: str | None = None, *,
            with_cancel_link: bool = False) -> Receipt:
    """The receipt of a donation's payment (its first, unless one is named).

    Reads under the caller's scope: a donor's own page opens the one donation
    (``donations.open_donation``), the email job sees everything.
    """
    donation = db.session.get(Donation, donation_id, populate_existing=True) if \
        donations.DONATION_ID_RE.match(donation_id) else None
    if donation is None:
        raise donations.DonationNotFound("There is no such donation.")
    payment = _chosen_payment(donation, payment_intent_id)
    if payment_intent_id and payment is None:
        raise donations.DonationNotFound("This donation has no such payment.")
    organisation = db.session.get(Organisation, donation.organisation_id)
    fund = db.session.get(Fund, donation.fund_id)
    if organisation is None or fund is None:
        raise donations.DonationNotFound("There is no such donation.")
    pay = {"payment": payment.payment_intent_id} if payment and payment_intent_id else {}
    cancel = None
    if with_cancel_link and donation.is_monthly and donation.status != "canceled":
        cancel = public_url("donate.cancel_monthly_gift",
                            token=donations.cancel_token(donation.id, organisation.id))
    entry = ledger.get_entry(organisation.id, payment.donation_entry_id) if payment else None
    links = ReceiptLinks(
        thanks=public_url("donate.thanks", donation_id=donation.id, **pay),
        pdf=public_url("donate.receipt_pdf", donation_id=donation.id, **pay),
        proof=public_url("donate.proof", donation_id=donation.id, **pay),
        entry=public_url("public.entry", slug=organisation.slug, entry_id=entry.entry_id)
        if entry else None,
        ledger=public_url("public.ledger_view", slug=organisation.slug),
        how_to_verify=public_url("public.how_to_verify"),
        cancel=cancel)
    values: dict[str, Any] = {}
    if payment is not None and entry is not None:
        values = {
            "payment_intent_id": payment.payment_intent_id, "paid_at": entry.timestamp,
            "stripe_fee": payment.fee, "fee_currency": payment.fee_currency,
            "amount_refunded": payment.amount_refunded, "entry_id": entry.entry_id,
            "entry_sequence": entry.sequence, "entry_hash": entry.entry_hash,
            "fee_entry_id": payment.fee_entry_id,
            "proof": _proof(organisation.id, entry.entry_id),
        }
    status = donation.status
    if payment is not None and donation.is_monthly and status == "active":
        status = payment.status if payment.status != "succeeded" else "active"
    return Receipt(
        donation_id=donation.id, status=status, frequency=donation.frequency,
        locale=donation.locale, portal_name=str(current_app.config["PORTAL_NAME"]),
        base_url=str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/"),
        organisation_id=organisation.id, organisation_slug=organisation.slug,
        organisation_name=organisation.name, organisation_legal_name=organisation.legal_name,
        fund_name=fund.name, fund_restricted=fund.is_restricted,
        donor_name=donation.donor_name, public_name=donation.public_name,
        message=donation.message, message_public=donation.show_message,
        currency=payment.currency if payment else donation.currency,
        amount=payment.amount if payment else donation.amount,
        fee_covered=donation.fee_covered, failure_message=donation.failure_message,
        links=links, **values)


# --------------------------------------------------------------------------- rendering


@jinja2.pass_context
def _money(context: jinja2.runtime.Context, amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return ""
    return format_money(amount, currency, str(context.get("locale", "en")))


@jinja2.pass_context
def _datetime(context: jinja2.runtime.Context, value: str | None) -> str:
    if not value:
        return ""
    moment = datetime.fromisoformat(value).astimezone(UTC)
    locale = str(context.get("locale", "en")).replace("-", "_")
    try:
        text = format_datetime(moment, "medium", tzinfo=UTC, locale=locale)
    except ValueError:
        text = format_datetime(moment, "medium", tzinfo=UTC, locale="en")
    return f"{text} UTC"


def _environment(app: Flask) -> jinja2.Environment:
    """The templates of receipts, outside any request: plain values, the donor's locale."""
    found: jinja2.Environment | None = app.extensions.get("donation_receipts_jinja")
    if found is None:
        assert app.jinja_loader is not None
        found = jinja2.Environment(
            loader=app.jinja_loader, undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=True))
        found.filters.update(money=_money, datetime=_datetime)
        app.extensions["donation_receipts_jinja"] = found
    return found


def render(template: str, current: Receipt) -> str:
    """One of the receipt's documents (``receipts/…`` or ``email/…``) for ``current``."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return _environment(app).get_template(template).render(
        receipt=current, locale=current.locale)


def _refuse_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A receipt is self-contained: WeasyPrint may not fetch anything."""
    raise ValueError(f"a receipt does not load outside resources ({url})")


def receipt_pdf(current: Receipt) -> bytes:
    """The receipt as a PDF (tagged, for screen readers)."""
    if not current.paid:
        raise ReceiptNotReady("The receipt is made once the payment is recorded.")
    import weasyprint

    html = render("receipts/donation.html", current)
    document = weasyprint.HTML(string=html, url_fetcher=_refuse_fetch)
    pdf: bytes = document.write_pdf(pdf_tags=True)
    return pdf


def proof_file(current: Receipt) -> str:
    """The ``.tlog-proof`` file of the gift's entry, once a checkpoint covers it."""
    if current.proof is None:
        raise ProofNotAvailable("No signed checkpoint covers this gift yet; checkpoints are "
                                "made once a day, so its proof is ready by tomorrow.")
    return current.proof.tlog_proof


# --------------------------------------------------------------------------- the email


def queue_receipt(donation_id: str, payment_intent_id: str) -> None:
    """Ask a background worker to email the receipt of a payment just recorded."""
    try:
        jobs.enqueue(JOB_KIND, {"donation_id": donation_id,
                                "payment_intent_id": payment_intent_id})
    except redis.RedisError:
        log.exception("the receipt of %s (%s) could not be queued", donation_id,
                      payment_intent_id)


def subject(current: Receipt) -> str:
    amount = format_money(current.amount, current.currency, current.locale)
    kind = "monthly gift" if current.is_monthly else "gift"
    return f"Your receipt: {amount} {kind} to {current.organisation_name}"


def send_receipt(donation_id: str, payment_intent_id: str) -> bool:
    """Email the receipt of one payment to its donor, once; commit. False if already sent."""
    payment = db.session.get(DonationPayment, payment_intent_id, with_for_update=True,
                             populate_existing=True)
    if payment is None or payment.donation_id != donation_id:
        raise donations.DonationNotFound("There is no such payment.")
    if payment.receipt_sent_at is not None:
        db.session.rollback()
        return False
    donation = db.session.get(Donation, donation_id)
    assert donation is not None
    current = receipt(donation_id, payment_intent_id, with_cancel_link=True)
    attachments = [mail.Attachment(f"receipt-{donation_id}.pdf", receipt_pdf(current),
                                   "application/pdf")]
    if current.proof is not None:
        # Bytes, saved as they are: the signed note's em dash must survive any mail client.
        attachments.append(mail.Attachment(current.proof_filename,
                                           current.proof.tlog_proof.encode(),
                                           "application/octet-stream"))
    mail.send(donation.donor_email, subject(current),
              render("email/donation_receipt.txt", current),
              html=render("email/donation_receipt.html", current),
              attachments=tuple(attachments))
    payment.receipt_sent_at = datetime.now(UTC)
    db.session.commit()
    return True


@jobs.handler(JOB_KIND)
def _send_receipt_job(params: dict[str, Any], progress: jobs.Progress) -> dict[str, Any]:
    progress.message("Sending the donor's receipt")
    sent = send_receipt(str(params["donation_id"]), str(params["payment_intent_id"]))
    return {"sent": sent}
