"""Tenant scope: the one helper through which every query for organisation data goes.

PostgreSQL's row-level security shows a transaction only the rows of the
organisations named in its ``app.current_org`` setting (see migration 0003). The
scope set here is kept on the session and written into every transaction it
begins, with ``SET LOCAL`` semantics, so a commit never leaves a stale scope behind
and a forgotten filter in a query cannot reach another organisation's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.extensions import db

SCOPE_KEY = "portal.tenant_scope"
IDLE = TransactionStatus.IDLE
T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """What the current unit of work may see and change."""

    organisations: tuple[str, ...] = ()
    user_id: str | None = None
    public_read: bool = False
    platform: bool = False


NOTHING = Scope()
PUBLIC = Scope(public_read=True)

_SET_SCOPE = (
    "SELECT set_config('app.current_org', %(orgs)s, true),"
    " set_config('app.current_user', %(user)s, true),"
    " set_config('app.public_read', %(public)s, true),"
    " set_config('app.platform', %(platform)s, true)"
)


def _settings(scope: Scope) -> dict[str, str]:
    return {
        "orgs": ",".join(scope.organisations), "user": scope.user_id or "",
        "public": "on" if scope.public_read else "off",
        "platform": "on" if scope.platform else "off",
    }


def _driver(connection: sa.Connection) -> psycopg.Connection[Any]:
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def _apply(session: Session, scope: Scope) -> None:
    _driver(session.connection()).execute(_SET_SCOPE, _settings(scope))


@event.listens_for(Session, "after_begin")
def _scope_each_transaction(session: Session, transaction: Any,
                            connection: sa.Connection) -> None:
    scope = session.info.get(SCOPE_KEY)
    if scope is None or scope == NOTHING:
        return
    driver = _driver(connection)
    if driver.info.transaction_status == IDLE:
        # The driver would send BEGIN and the scope as two round trips; a pipeline
        # sends them together, and every transaction starts this way.
        with driver.pipeline():
            driver.execute(_SET_SCOPE, _settings(scope))
    else:
        driver.execute(_SET_SCOPE, _settings(scope))


def current() -> Scope:
    return db.session.info.get(SCOPE_KEY, NOTHING)  # type: ignore[no-any-return]


def set_scope(scope: Scope) -> None:
    """Use ``scope`` from now on, in this transaction and the ones after it."""
    session = db.session()
    session.info[SCOPE_KEY] = scope
    session.info.pop(_MEMO_KEY, None)
    if session.in_transaction():
        _apply(session, scope)


_MEMO_KEY = "portal.public_read_memo"


def public_read_memo() -> dict[Any, Any] | None:
    """Somewhere to keep what was read, for the rest of this transaction, while the
    scope is the public one; None under any other scope.

    The public scope cannot write, so nothing read under it (a ledger's head, say)
    changes through this transaction. What is kept is forgotten when the scope
    changes or the transaction ends.
    """
    session = db.session()
    if session.info.get(SCOPE_KEY) != PUBLIC:
        return None
    transaction = session.get_transaction()
    if transaction is None:
        return None
    kept = session.info.get(_MEMO_KEY)
    if kept is None or kept[0] is not transaction:
        kept = (transaction, {})
        session.info[_MEMO_KEY] = kept
    return kept[1]


def reset() -> None:
    """Nothing visible: the start of every request."""
    set_scope(NOTHING)


def public_reading() -> None:
    """Public pages: rows of active organisations may be read, nothing written."""
    set_scope(PUBLIC)


def platform() -> None:
    """Operator tools and platform administration: every organisation."""
    set_scope(replace(current(), platform=True))


def for_user(user_id: str | None) -> None:
    """A signed-in person: their memberships and their organisations' names are readable."""
    set_scope(replace(current(), user_id=user_id))


def for_organisations(organisation_ids: Iterable[str], *, user_id: str | None = None) -> None:
    """Read and write the rows of these organisations (a dashboard, a transfer)."""
    base = current()
    set_scope(Scope(tuple(sorted(set(organisation_ids))), user_id or base.user_id,
                    base.public_read, base.platform))


def include(organisation_id: str) -> None:
    """Add one organisation to the scope (the receiving side of a transfer, say)."""
    scope = current()
    if organisation_id not in scope.organisations:
        set_scope(replace(scope, organisations=tuple(
            sorted({*scope.organisations, organisation_id}))))


@contextmanager
def scoped(scope: Scope) -> Iterator[None]:
    """Run a block with ``scope``, then return to the scope before it."""
    before = current()
    set_scope(scope)
    try:
        yield
    finally:
        set_scope(before)


def organisation_rows(model: type[T], organisation_id: str) -> sa.Select[Any]:
    """``SELECT model WHERE organisation_id = …``, refused outside the organisation's scope.

    The explicit filter keeps queries index-friendly; the scope check and the
    database's row-level security make a mistake here fail loudly instead of leaking.
    """
    scope = current()
    if not scope.platform and organisation_id not in scope.organisations:
        raise PermissionError(f"organisation {organisation_id} is outside this request's scope")
    column = getattr(model, "organisation_id")  # noqa: B009 - every tenant model has it
    return sa.select(model).where(column == organisation_id)
