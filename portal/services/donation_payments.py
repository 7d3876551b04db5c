"""What Stripe says happened to a donation's money, written into the public ledger.

Each function reads the current state of one Stripe object through ``payments`` (never
the event's copy, which may be older, or in another API version) and appends what the
ledger does not hold yet. Every entry carries an idempotency key naming the Stripe object
it stands for (``stripe:pi_…:donation``, ``stripe:pi_…:fee``, ``stripe:re_…:refund``,
``stripe:dp_…:opened``, ``stripe:dp_…:fee``, ``stripe:dp_…:won``), unique per ledger in
the database, and each PaymentIntent becomes one ``donation_payments`` row: so events
delivered twice, late, out of order or at the same time all end in the same entries.
A refund or a dispute whose payment is not recorded yet records the payment first.

Writers of one donation take turns on its row (``SELECT … FOR UPDATE``) before the
ledger's head, always in that order. These helpers flush; the webhook commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Donation, DonationPayment
from portal.services import ledger, payments
from portal.services.donations import PAYABLE, mark_failed

log = logging.getLogger(__name__)

#: Stripe's dispute statuses that are decided; a decided dispute never reopens.
DECIDED_DISPUTES = frozenset({"won", "lost", "warning_closed"})


@dataclass(frozen=True)
class Recorded:
    """A payment in the ledger; ``fresh`` when this call wrote it (its receipt is due)."""

    donation_id: str
    payment_intent_id: str
    fresh: bool


def _payment(payment_intent_id: str, *, lock: bool = False) -> DonationPayment | None:
    return db.session.get(DonationPayment, payment_intent_id, populate_existing=True,
                          with_for_update=lock)


def _lock(donation_id: str) -> Donation:
    donation = db.session.get(Donation, donation_id, populate_existing=True,
                              with_for_update=True)
    assert donation is not None
    return donation


def _donation_for(organisation_id: str, intent: payments.Payment,
                  subscription_id: str | None = None) -> Donation | None:
    """The donation a PaymentIntent pays: named in its metadata (one-time gifts), or
    found by its intent, customer or subscription (the invoices of monthly gifts)."""
    named = intent.metadata.get("donation_id")
    if named:
        found = db.session.get(Donation, named)
        if found is not None and found.organisation_id == organisation_id:
            return found
    clauses = [Donation.payment_intent_id == intent.id]
    if intent.customer_id:
        clauses.append(Donation.customer_id == intent.customer_id)
    if subscription_id:
        clauses.append(Donation.subscription_id == subscription_id)
    return db.session.scalars(
        sa.select(Donation).where(Donation.organisation_id == organisation_id,
                                  sa.or_(*clauses)).limit(1)).first()


def _common(donation: Donation, payment_intent_id: str) -> dict[str, Any]:
    return {"donation_id": donation.id, "stripe_payment_intent_id": payment_intent_id,
            "fund_id": donation.fund_id}


def _donation_metadata(donation: Donation, payment_intent_id: str) -> dict[str, Any]:
    """The public record of a gift: never the donor's email, their name only if they
    chose to show it, their message only if they chose to publish it."""
    metadata = {**_common(donation, payment_intent_id), "donor_name": donation.public_name}
    if donation.show_message and donation.message:
        metadata["message"] = donation.message
    if donation.is_monthly:
        metadata["frequency"] = "monthly"
    if donation.fee_covered:
        metadata["fee_covered_by_donor"] = donation.fee_covered
    return metadata


def record_payment(organisation_id: str, account_id: str, payment_intent_id: str, *,
                   invoice_id: str | None = None,
                   subscription_id: str | None = None) -> Recorded | None:
    """Write a succeeded PaymentIntent as ``donation_received`` plus its ``fee``.

    None when the intent has not succeeded or pays no donation of this organisation.
    """
    existing = _payment(payment_intent_id)
    if existing is not None:
        if invoice_id and existing.invoice_id is None:
            existing.invoice_id = invoice_id
            db.session.flush()
        return Recorded(existing.donation_id, payment_intent_id, fresh=False)
    intent = payments.retrieve_payment_intent(account_id, payment_intent_id)
    if intent.status != "succeeded" or intent.charge_id is None:
        return None
    found = _donation_for(organisation_id, intent, subscription_id)
    if found is None:
        log.info("payment %s of %s pays no donation; not recorded", intent.id,
                 organisation_id)
        return None
    fees = payments.balance_transaction_for_charge(account_id, intent.charge_id)
    donation = _lock(found.id)
    existing = _payment(payment_intent_id)
    if existing is not None:  # another delivery recorded it while this one asked Stripe
        return Recorded(existing.donation_id, payment_intent_id, fresh=False)
    key = f"stripe:{intent.id}"
    drafts = [ledger.EntryDraft("donation_received", intent.amount, intent.currency,
                                _donation_metadata(donation, intent.id),
                                idempotency_key=f"{key}:donation")]
    if fees.fee > 0:
        drafts.append(ledger.EntryDraft(
            "fee", -fees.fee, fees.currency,
            {**_common(donation, intent.id), "category": "payment-fees",
             "description": "Stripe's card processing fee"},
            idempotency_key=f"{key}:fee"))
    entries = ledger.append_entries(organisation_id, drafts)
    payment = DonationPayment(
        payment_intent_id=intent.id, organisation_id=organisation_id,
        donation_id=donation.id, invoice_id=invoice_id, charge_id=intent.charge_id,
        amount=intent.amount, currency=intent.currency, fee=fees.fee,
        fee_currency=fees.currency, amount_refunded=0, status="succeeded",
        donation_entry_id=entries[0].entry_id,
        fee_entry_id=entries[1].entry_id if len(entries) > 1 else None,
        paid_at=ledger.parse_timestamp(entries[0].timestamp))
    db.session.add(payment)
    if donation.payment_intent_id is None and not donation.is_monthly:
        donation.payment_intent_id = intent.id
    _follow(donation, payment)
    db.session.flush()
    return Recorded(donation.id, intent.id, fresh=True)


def _payment_status(payment: DonationPayment) -> str:
    if payment.dispute_status == "lost":
        return "dispute_lost"
    if payment.dispute_status is not None and payment.dispute_status not in DECIDED_DISPUTES:
        return "disputed"
    if payment.amount_refunded >= payment.amount:
        return "refunded"
    if payment.amount_refunded > 0:
        return "partially_refunded"
    return "succeeded"


def _follow(donation: Donation, payment: DonationPayment) -> None:
    """The payment's status from its facts, and the donation's from its payment."""
    payment.status = _payment_status(payment)
    if donation.is_monthly:
        if donation.status in PAYABLE:
            donation.status = "active"
    else:
        donation.status = payment.status
    donation.failure_message = None
    if donation.completed_at is None:
        donation.completed_at = payment.paid_at


def record_failure(organisation_id: str, account_id: str, payment_intent_id: str) -> str:
    """A payment attempt failed: the donation says why and stays payable; no entry.

    Stripe's current state decides, so a failure reported after the donor paid with
    another card changes nothing (and records the payment if that is still missing).
    """
    intent = payments.retrieve_payment_intent(account_id, payment_intent_id)
    if intent.status == "succeeded":
        recorded = record_payment(organisation_id, account_id, payment_intent_id)
        return "recorded" if recorded is not None else "ignored"
    donation = _donation_for(organisation_id, intent)
    if donation is None:
        return "ignored"
    message = intent.failure.message if intent.failure else \
        "Your payment did not go through. Please try again."
    return "failed" if mark_failed(donation.id, message) else "unchanged"


def record_refunds(organisation_id: str, account_id: str, charge_id: str,
                   ) -> tuple[str, Recorded | None]:
    """Write each succeeded refund of the charge as ``refund_issued``, linked to the gift."""
    charge = payments.retrieve_charge(account_id, charge_id)
    if charge.payment_intent_id is None:
        return "ignored", None
    recorded = record_payment(organisation_id, account_id, charge.payment_intent_id)
    if recorded is None:
        return "ignored", None
    refunds = [refund for refund in payments.list_refunds(account_id, charge_id)
               if refund.status == "succeeded"]
    donation = _lock(recorded.donation_id)
    payment = _payment(recorded.payment_intent_id)
    assert payment is not None
    common = {**_common(donation, payment.payment_intent_id),
              "original_entry_id": payment.donation_entry_id}
    if refunds:
        ledger.append_entries(organisation_id, [
            ledger.EntryDraft("refund_issued", -refund.amount, refund.currency,
                              {**common, "stripe_refund_id": refund.id,
                               "description": "Refund to the donor"},
                              idempotency_key=f"stripe:{refund.id}:refund")
            for refund in reversed(refunds)])  # Stripe lists the newest first
    refunded = min(payment.amount, sum(refund.amount for refund in refunds))
    payment.amount_refunded = max(payment.amount_refunded, refunded)
    _follow(donation, payment)
    db.session.flush()
    return f"refunds: {len(refunds)}", recorded


def record_dispute(organisation_id: str, account_id: str, dispute_id: str,
                   ) -> tuple[str, Recorded | None]:
    """A chargeback: ``dispute_opened`` (and Stripe's dispute fee) when it is opened,
    ``dispute_won`` when it is decided for the organisation."""
    dispute = payments.retrieve_dispute(account_id, dispute_id)
    intent_id = dispute.payment_intent_id or payments.retrieve_charge(
        account_id, dispute.charge_id).payment_intent_id
    if intent_id is None:
        return "ignored", None
    recorded = record_payment(organisation_id, account_id, intent_id)
    if recorded is None:
        return "ignored", None
    donation = _lock(recorded.donation_id)
    payment = _payment(recorded.payment_intent_id)
    assert payment is not None
    common = {**_common(donation, payment.payment_intent_id),
              "original_entry_id": payment.donation_entry_id, "stripe_dispute_id": dispute.id}
    key = f"stripe:{dispute.id}"
    drafts = [ledger.EntryDraft(
        "dispute_opened", -dispute.amount, dispute.currency,
        {**common, "description": "Disputed by the cardholder: the amount is held back"},
        idempotency_key=f"{key}:opened")]
    # The fee Stripe took with the withdrawal; lines added later (a reinstatement) carry
    # none, so the fee entry is the same whenever the dispute is read.
    withdrawals = [line for line in dispute.balance_lines if line.reporting_category == "dispute"]
    dispute_fee = sum(line.fee for line in withdrawals)
    if dispute_fee > 0:
        drafts.append(ledger.EntryDraft(
            "fee", -dispute_fee, withdrawals[0].currency,
            {**common, "category": "payment-fees", "description": "Stripe's dispute fee"},
            idempotency_key=f"{key}:fee"))
    if dispute.status == "won":
        drafts.append(ledger.EntryDraft(
            "dispute_won", dispute.amount, dispute.currency,
            {**common, "description": "The dispute was decided for the organisation: the "
                                      "amount came back"},
            idempotency_key=f"{key}:won"))
    ledger.append_entries(organisation_id, drafts)
    payment.dispute_id = dispute.id
    if payment.dispute_status not in DECIDED_DISPUTES:
        payment.dispute_status = dispute.status
    _follow(donation, payment)
    db.session.flush()
    return f"dispute {dispute.status}", recorded


def record_invoice(organisation_id: str, account_id: str, invoice_id: str) -> Recorded | None:
    """A paid invoice of a monthly gift: its payment, like any other."""
    invoice = payments.paid_invoice(account_id, invoice_id)
    if invoice.status != "paid" or invoice.payment_intent_id is None:
        return None
    return record_payment(organisation_id, account_id, invoice.payment_intent_id,
                          invoice_id=invoice.invoice_id,
                          subscription_id=invoice.subscription_id)


def record_subscription_ended(organisation_id: str, subscription_id: str) -> str:
    """A monthly gift stopped at Stripe (by the donor's link, or by the organisation)."""
    donation = db.session.scalars(
        sa.select(Donation).where(Donation.organisation_id == organisation_id,
                                  Donation.subscription_id == subscription_id)
        .with_for_update()).first()
    if donation is None:
        return "ignored"
    if donation.status != "canceled":
        donation.status = "canceled"
        donation.canceled_at = datetime.now(UTC)
        db.session.flush()
    return "canceled"
