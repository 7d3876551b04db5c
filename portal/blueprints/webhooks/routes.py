"""``POST /webhooks/stripe``: verify Stripe's signature, then apply the event once.

A bad or missing signature, or a timestamp more than five minutes old or ahead, is
answered 400 before anything is read or written. The answer is a small JSON document
for Stripe's delivery log.
"""

from __future__ import annotations

import logging

from flask import Response, jsonify, request

from portal.blueprints.webhooks import bp
from portal.services import payments, stripe_webhooks
from portal.services.errors import DomainError

log = logging.getLogger(__name__)


def _answer(status: int, **body: object) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/webhooks/stripe")
def stripe() -> Response:
    try:
        event = payments.construct_webhook_event(request.get_data(),
                                                 request.headers.get("Stripe-Signature"))
    except payments.InvalidWebhook as refused:
        log.warning("Stripe webhook refused from %s: %s", request.remote_addr, refused)
        return _answer(400, received=False, error=str(refused))
    try:
        outcome = stripe_webhooks.handle_event(event)
    except DomainError as error:
        return _answer(error.status_code, received=False, event=event.id, error=str(error))
    return _answer(200, received=True, event=event.id, outcome=outcome)
