"""Typed SQLAlchemy models, one module per aggregate. The schema itself lives in migrations/."""

from portal.extensions import Base
from portal.models.checkpoint import Checkpoint, CheckpointOrganisation
from portal.models.donation import (
    DONATION_FREQUENCIES,
    DONATION_STATUSES,
    PAYMENT_STATUSES,
    Donation,
    DonationPayment,
    OrganisationStripeAccount,
    StripeEvent,
)
from portal.models.expense import EXPENSE_STATUSES, RECEIPT_TYPES, Expense
from portal.models.ledger import (
    ENTRY_TYPES,
    VISIBILITY_LEVELS,
    WITHHELD_LEVELS,
    LedgerEntry,
    LedgerHead,
    LedgerTotal,
    MerkleNode,
)
from portal.models.organisation import (
    FUND_TYPES,
    ORGANISATION_STATUSES,
    Category,
    Fund,
    Invitation,
    Organisation,
    OrganisationEvent,
)
from portal.models.user import IP_BINDINGS, ROLES, Membership, RecoveryCode, SecurityEvent, User

__all__ = [
    "DONATION_FREQUENCIES",
    "DONATION_STATUSES",
    "ENTRY_TYPES",
    "EXPENSE_STATUSES",
    "FUND_TYPES",
    "IP_BINDINGS",
    "ORGANISATION_STATUSES",
    "PAYMENT_STATUSES",
    "RECEIPT_TYPES",
    "ROLES",
    "VISIBILITY_LEVELS",
    "WITHHELD_LEVELS",
    "Base",
    "Category",
    "Checkpoint",
    "CheckpointOrganisation",
    "Donation",
    "DonationPayment",
    "Expense",
    "Fund",
    "Invitation",
    "LedgerEntry",
    "LedgerHead",
    "LedgerTotal",
    "Membership",
    "MerkleNode",
    "Organisation",
    "OrganisationEvent",
    "OrganisationStripeAccount",
    "RecoveryCode",
    "SecurityEvent",
    "StripeEvent",
    "User",
]
