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

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.extensions import db

SCOPE_KEY = "portal.tenant_scope"
T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """What the current unit of work may see and change."""

    organisations: tuple[str, ...] = ()
    user_id: str | None = None
    public_read: bool = False
    platform: bool = False


NOTHING = Scope()

_SET_SCOPE = sa.text(
    "SELECT set_config('app.current_org', :orgs, true),"
    " set_config('app.current_user', :user, true),"
    " set_config('app.public_read', :public, true),"
    " set_config('app.platform', :platform, true)"
)


def _apply(session: Session, scope: Scope) -> None:
    session.execute(_SET_SCOPE, {
        "orgs": ",".join(scope.organisations), "user": scope.user_id or "",
        "public": "on" if scope.public_read else "off",
        "platform": "on" if scope.platform else "off",
    })


@event.listens_for(Session, "after_begin")
def _scope_each_transaction(session: Session, transaction: Any, connection: Any) -> None:
    scope = session.info.get(SCOPE_KEY)
    if scope is not None and scope != NOTHING:
        connection.execute(_SET_SCOPE, {
            "orgs": ",".join(scope.organisations), "user": scope.user_id or "",
            "public": "on" if scope.public_read else "off",
            "platform": "on" if scope.platform else "off",
        })


def current() -> Scope:
    return db.session.info.get(SCOPE_KEY, NOTHING)  # type: ignore[no-any-return]


def set_scope(scope: Scope) -> None:
    """Use ``scope`` from now on, in this transaction and the ones after it."""
    session = db.session()
    session.info[SCOPE_KEY] = scope
    if session.in_transaction():
        _apply(session, scope)


def reset() -> None:
    """Nothing visible: the start of every request."""
    set_scope(NOTHING)


def public_reading() -> None:
    """Public pages: rows of active organisations may be read, nothing written."""
    set_scope(Scope(public_read=True))


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
