"""Stripe's webhook events, applied once each.

An event (already verified by ``payments.construct_webhook_event``) must come from the
connected account of a known organisation; the request is then narrowed to that
organisation. Its id is inserted into ``stripe_events`` first, in the same transaction as
everything it changes: a second delivery of the same event waits on that row's unique
index until the first commits, then finds it and does nothing (or, if the first failed and
rolled back, does the work itself). Different events about the same payment meet on the
donation's row and on the ledger's idempotency keys (``donation_payments``). A delivery
that still loses a race to a concurrent one is replayed once, and then finds the work done.

Stripe is answered 2xx whenever the event is applied, was applied before, or is of a kind
the portal does not need; anything else makes Stripe deliver it again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import StripeEvent
from portal.services import (
    donation_payments,
    donation_receipts,
    ledger,
    payments,
    stripe_accounts,
    tenancy,
)
from portal.services.donation_payments import Recorded
from portal.services.errors import Conflict, DomainError

log = logging.getLogger(__name__)


class UnknownAccount(DomainError):
    """The event names a Stripe account no organisation here has connected."""

    status_code = 400


class EventConflict(Conflict):
    """The event contradicts what the ledger already holds (it is not applied)."""


@dataclass(frozen=True)
class Applied:
    """What applying one event did, and the payments it recorded for the first time."""

    outcome: str
    recorded: tuple[Recorded, ...] = ()


Handler = Callable[[payments.WebhookEvent, str], Applied]


def _object_id(event: payments.WebhookEvent, key: str = "id") -> str:
    value = event.object.get(key)
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise payments.InvalidWebhook(f"The {event.type} event names no {key}.")
    return value


def _applied(outcome: str, recorded: Recorded | None) -> Applied:
    return Applied(outcome, (recorded,) if recorded is not None and recorded.fresh else ())


def _account(event: payments.WebhookEvent) -> str:
    assert event.account is not None
    return event.account


def _payment_succeeded(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    recorded = donation_payments.record_payment(organisation_id, _account(event),
                                                _object_id(event))
    return _applied("recorded" if recorded else "ignored: pays no donation", recorded)


def _payment_failed(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    return Applied(donation_payments.record_failure(organisation_id, _account(event),
                                                    _object_id(event)))


def _charge_refunded(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    outcome, recorded = donation_payments.record_refunds(organisation_id, _account(event),
                                                         _object_id(event))
    return _applied(outcome, recorded)


def _refund_updated(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    outcome, recorded = donation_payments.record_refunds(organisation_id, _account(event),
                                                         _object_id(event, "charge"))
    return _applied(outcome, recorded)


def _dispute(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    outcome, recorded = donation_payments.record_dispute(organisation_id, _account(event),
                                                         _object_id(event))
    return _applied(outcome, recorded)


def _invoice_paid(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    recorded = donation_payments.record_invoice(organisation_id, _account(event),
                                                _object_id(event))
    return _applied("recorded" if recorded else "ignored: pays no monthly gift", recorded)


def _subscription_deleted(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    return Applied(donation_payments.record_subscription_ended(organisation_id,
                                                               _object_id(event)))


def _account_updated(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    account = payments.retrieve_account(_account(event))
    changed = stripe_accounts.apply_account(organisation_id, account)
    return Applied("account updated" if changed else "account unchanged")


HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": _payment_succeeded,
    "payment_intent.payment_failed": _payment_failed,
    "charge.refunded": _charge_refunded,
    "charge.refund.updated": _refund_updated,
    "refund.updated": _refund_updated,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.closed": _dispute,
    "invoice.paid": _invoice_paid,
    "customer.subscription.deleted": _subscription_deleted,
    "account.updated": _account_updated,
}


def handle_event(event: payments.WebhookEvent) -> str:
    """Apply a verified event once; return what it did (for the answer and the log).

    Raises ``UnknownAccount`` for an account no organisation has connected (nothing is
    written), the ``PaymentError`` family when Stripe cannot be asked about the event's
    object (nothing is written; Stripe delivers it again), ``EventConflict`` when it
    contradicts the ledger.
    """
    if event.account is None:
        log.info("Stripe event %s (%s) of the platform account ignored", event.id, event.type)
        return "ignored: not an event of a connected account"
    organisation_id = stripe_accounts.organisation_for_account(event.account)
    if organisation_id is None:
        log.warning("Stripe event %s (%s) names account %s, which no organisation has "
                    "connected", event.id, event.type, event.account)
        raise UnknownAccount(f"No organisation here has connected the Stripe account "
                             f"{event.account}.")
    tenancy.for_organisations([organisation_id])
    try:
        applied = _apply_once(event, organisation_id)
    except (IntegrityError, ledger.IdempotencyConflict):
        # A concurrent delivery wrote the same thing first: this one now finds it done.
        db.session.rollback()
        try:
            applied = _apply_once(event, organisation_id)
        except (IntegrityError, ledger.IdempotencyConflict) as exc:
            db.session.rollback()
            log.error("Stripe event %s (%s) conflicts with the ledger: %s", event.id,
                      event.type, exc)
            raise EventConflict(f"Event {event.id} contradicts the ledger.") from exc
    for recorded in applied.recorded:
        donation_receipts.queue_receipt(recorded.donation_id, recorded.payment_intent_id)
    return applied.outcome


def _apply_once(event: payments.WebhookEvent, organisation_id: str) -> Applied:
    claimed = db.session.scalar(
        insert(StripeEvent).values(
            id=event.id, organisation_id=organisation_id, type=event.type[:100],
            account=_account(event), created_at=event.created)
        .on_conflict_do_nothing(index_elements=["id"]).returning(StripeEvent.id))
    if claimed is None:
        db.session.rollback()
        return Applied("duplicate")
    handler = HANDLERS.get(event.type)
    try:
        if handler is None:
            log.info("Stripe event %s (%s) ignored", event.id, event.type)
            applied = Applied("ignored")
        else:
            applied = handler(event, organisation_id)
    except DomainError:
        db.session.rollback()
        raise
    db.session.execute(
        sa.update(StripeEvent).where(StripeEvent.id == event.id)
        .values(processed_at=sa.func.clock_timestamp(), outcome=applied.outcome[:200]))
    db.session.commit()
    log.info("Stripe event %s (%s): %s", event.id, event.type, applied.outcome)
    return applied
