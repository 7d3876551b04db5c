"""A Stripe API simulator for test mode: the endpoints the portal uses, served over HTTP so
the real ``stripe`` SDK talks to it, with state in Redis and signed webhooks.

``Simulator`` runs one (``running_simulator`` the one of this process); ``Simulator.control``
steers it. See docs/stripe.md.
"""

from portal.stripe_simulator.cards import TEST_CARDS, FeeSchedule, TestCard
from portal.stripe_simulator.errors import StripeError
from portal.stripe_simulator.server import Simulator, SimulatorSettings, running_simulator
from portal.stripe_simulator.webhooks import (
    DeliverCallable,
    DeliveryAttempt,
    DeliverySettings,
    development_webhook_secret,
    signature_header,
)

__all__ = [
    "TEST_CARDS",
    "DeliverCallable",
    "DeliveryAttempt",
    "DeliverySettings",
    "FeeSchedule",
    "Simulator",
    "SimulatorSettings",
    "StripeError",
    "TestCard",
    "development_webhook_secret",
    "running_simulator",
    "signature_header",
]
