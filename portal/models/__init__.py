"""Typed SQLAlchemy models, one module per aggregate. The schema itself lives in migrations/."""

from portal.extensions import Base
from portal.models.ledger import (
    ENTRY_TYPES,
    VISIBILITY_LEVELS,
    WITHHELD_LEVELS,
    LedgerEntry,
    LedgerHead,
    LedgerTotal,
)
from portal.models.organisation import (
    FUND_TYPES,
    ORGANISATION_STATUSES,
    Fund,
    Organisation,
)
from portal.models.user import ROLES, Membership, User

__all__ = [
    "ENTRY_TYPES",
    "FUND_TYPES",
    "ORGANISATION_STATUSES",
    "ROLES",
    "VISIBILITY_LEVELS",
    "WITHHELD_LEVELS",
    "Base",
    "Fund",
    "LedgerEntry",
    "LedgerHead",
    "LedgerTotal",
    "Membership",
    "Organisation",
    "User",
]
