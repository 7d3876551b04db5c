"""An organisation's dashboard at a glance: money, recent entries, what waits for a
decision, the payment connection and the ledger's last verification."""

from __future__ import annotations

from dataclasses import dataclass

from portal.models import Organisation
from portal.services import (
    expenses,
    funds,
    ledger,
    member_ledger,
    permissions,
    stripe_accounts,
    verification,
)
from portal.services.verification import VerificationReport

RECENT_ENTRIES = 10


@dataclass(frozen=True)
class Overview:
    balances: dict[str, int]
    funds: list[funds.FundView]
    recent: member_ledger.MemberLedgerPage
    #: Expenses waiting for approval; None when the member may not see them.
    waiting: list[expenses.ExpenseRow] | None
    stripe: stripe_accounts.StripeStatus
    last_check: VerificationReport | None
    head: ledger.Head


def overview(actor_id: str, organisation: Organisation) -> Overview:
    membership = permissions.require(actor_id, organisation.id, "view")
    sees_internal = permissions.allowed(membership.role, "view_internal")
    return Overview(
        # Balances per currency are public (the organisation's page shows them).
        balances=ledger.balances(organisation.id),
        funds=funds.list_funds(actor_id, organisation.id, include_archived=False),
        recent=member_ledger.recent(actor_id, organisation, RECENT_ENTRIES),
        waiting=expenses.waiting(organisation.id) if sees_internal else None,
        stripe=stripe_accounts.stripe_status(organisation.id),
        last_check=verification.last_reports([organisation.id]).get(organisation.id),
        head=ledger.get_head(organisation.id),
    )
