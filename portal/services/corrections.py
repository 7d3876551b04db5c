"""Corrections from the dashboard: reverse an entry, move an expense to another category.

Both append entries through the ledger's own functions (entries are never edited) and
are written to the organisation's activity log in the same transaction.
"""

from __future__ import annotations

from portal.services import activity, categories, ledger, permissions
from portal.services.errors import DomainError
from portal.services.transactions import one_transaction

REASON_MAX = ledger.TEXT_LIMITS["reason"]


class InvalidCorrection(DomainError):
    status_code = 422


def _reason(reason: str, *, required: bool) -> str | None:
    reason = " ".join(reason.split())
    if not reason:
        if required:
            raise InvalidCorrection("Say why the entry is reversed; the reason is published "
                                    "with the reversal.", field="reason")
        return None
    if len(reason) > REASON_MAX:
        raise InvalidCorrection(f"Use at most {REASON_MAX:,} characters.", field="reason")
    return reason


def reverse_entry(actor_id: str, organisation_id: str, entry_id: str,
                  reason: str) -> ledger.Entry:
    """Append the exact opposite of an entry; it can be reversed once."""
    permissions.require(actor_id, organisation_id, "record_correction")
    text = _reason(reason, required=True)
    assert text is not None
    with one_transaction():
        reversal = ledger.reverse_entry(organisation_id, entry_id, text)
        activity.record(organisation_id, actor_id, "entry_reversed", entry_id,
                        reversal_entry_id=reversal.entry_id, reason=text)
    return reversal


def recategorize_expense(actor_id: str, organisation_id: str, entry_id: str,
                         new_category: str, reason: str = "") -> ledger.Entry:
    """Move an approved expense to another of the organisation's categories."""
    permissions.require(actor_id, organisation_id, "record_correction")
    categories.require_active(organisation_id, new_category, field="category")
    text = _reason(reason, required=False)
    with one_transaction():
        try:
            entry = ledger.recategorize_expense(organisation_id, entry_id, new_category,
                                                reason=text)
        except ledger.InvalidEntry as refused:
            if refused.field == "new_category":
                raise InvalidCorrection("The expense is in this category already.",
                                        field="category") from refused
            raise
        activity.record(organisation_id, actor_id, "expense_recategorized", entry_id,
                        recategorization_entry_id=entry.entry_id,
                        old_category=entry.metadata.get("old_category", ""),
                        new_category=new_category)
    return entry
