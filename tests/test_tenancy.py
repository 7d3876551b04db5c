"""Tenant isolation in PostgreSQL itself: row-level security and the portal role's rights."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from portal.embedded import APP_ROLE
from portal.extensions import db
from portal.ids import new_id
from portal.models import Organisation
from portal.services import ledger, tenancy
from portal.services.tenancy import Scope

pytestmark = pytest.mark.usefixtures("app")

#: Every table whose rows belong to one organisation, with the column that says which.
TENANT_TABLES = {
    "organisations": "id", "funds": "organisation_id", "memberships": "organisation_id",
    "ledger_entries": "organisation_id", "ledger_heads": "organisation_id",
    "ledger_totals": "organisation_id", "organisation_categories": "organisation_id",
    "invitations": "organisation_id", "expenses": "organisation_id",
    "organisation_events": "organisation_id", "merkle_nodes": "organisation_id",
    "organisation_stripe_accounts": "organisation_id", "donations": "organisation_id",
    "donation_payments": "organisation_id", "stripe_events": "organisation_id",
}
#: Tables naming organisations whose rows are published for everyone (signed checkpoints);
#: row-level security is forced on them too, so that only operators write them.
PUBLISHED_TABLES = {"checkpoint_organisations": "organisation_id", "checkpoints": ""}


def count(table: str, column: str, organisation_id: str) -> int:
    return int(db.session.execute(
        sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :o"),
        {"o": organisation_id}).scalar_one())


@pytest.fixture
def two(create_org: Callable[..., Organisation]) -> tuple[str, str]:
    first, second = create_org(), create_org()
    for org in (first, second):
        ledger.append_entry(org.id, "donation_received", 100, "EUR")
    db.session.commit()
    return first.id, second.id


def test_every_tenant_table_is_under_forced_row_level_security() -> None:
    tables_with_org = set(db.session.scalars(sa.text(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'organisation_id'")))
    assert tables_with_org | {"organisations", "checkpoints"} == {*TENANT_TABLES,
                                                                  *PUBLISHED_TABLES}
    tables = [*TENANT_TABLES, *PUBLISHED_TABLES]
    rows = db.session.execute(sa.text(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
        " WHERE relname = ANY(:tables) AND relkind = 'r'"), {"tables": tables})
    found = {name: (enabled, forced) for name, enabled, forced in rows}
    assert found == dict.fromkeys(tables, (True, True))


def test_the_portal_role_owns_nothing_and_bypasses_nothing() -> None:
    role = db.session.execute(sa.text(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
        " WHERE rolname = :r"), {"r": APP_ROLE}).one()
    assert tuple(role) == (False, False, False, False)
    owned = db.session.scalars(sa.text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = :r"),
        {"r": APP_ROLE}).all()
    assert owned == []
    assert db.session.scalar(sa.text("SELECT current_user")) == APP_ROLE


@pytest.mark.parametrize(("table", "privilege", "allowed"), [
    ("ledger_entries", "INSERT", True), ("ledger_entries", "UPDATE", False),
    ("ledger_entries", "DELETE", False), ("ledger_entries", "TRUNCATE", False),
    ("ledger_totals", "INSERT", False), ("ledger_heads", "DELETE", False),
    ("organisations", "DELETE", False), ("security_events", "UPDATE", False),
    ("organisation_events", "DELETE", False), ("alembic_version", "SELECT", False),
])
def test_the_portal_role_has_exactly_the_rights_it_needs(
    table: str, privilege: str, allowed: bool
) -> None:
    assert db.session.scalar(sa.text("SELECT has_table_privilege(:r, :t, :p)"),
                             {"r": APP_ROLE, "t": table, "p": privilege}) is allowed


def test_a_scope_of_one_organisation_sees_none_of_another(two: tuple[str, str]) -> None:
    mine, theirs = two
    tenancy.set_scope(Scope(organisations=(mine,)))
    for table, column in TENANT_TABLES.items():
        assert count(table, column, theirs) == 0, table
    assert count("ledger_entries", "organisation_id", mine) == 1
    assert db.session.scalars(sa.text("SELECT id FROM organisations")).all() == [mine]


def test_without_a_scope_nothing_is_visible(two: tuple[str, str]) -> None:
    tenancy.set_scope(Scope())
    for table, column in TENANT_TABLES.items():
        for organisation in two:
            assert count(table, column, organisation) == 0, table


def test_writes_outside_the_scope_are_refused(two: tuple[str, str]) -> None:
    mine, theirs = two
    tenancy.set_scope(Scope(organisations=(mine,)))
    with pytest.raises(DBAPIError) as refused, db.session.begin_nested():
        db.session.execute(sa.text(
            "INSERT INTO funds (id, organisation_id, name, type) VALUES (:id, :o, 'X', 'project')"),
            {"id": new_id("fund"), "o": theirs})
    assert isinstance(refused.value.orig, psycopg.Error)
    assert refused.value.orig.sqlstate == "42501"  # new row violates row-level security
    with pytest.raises(ledger.UnknownOrganisation):
        ledger.append_entry(theirs, "donation_received", 100, "EUR")


def test_public_reading_sees_active_ledgers_but_no_private_tables(
    two: tuple[str, str], create_org: Callable[..., Organisation]
) -> None:
    pending = create_org(status="pending").id
    active, _ = two
    tenancy.public_reading()
    assert count("ledger_entries", "organisation_id", active) == 1
    assert count("ledger_heads", "organisation_id", pending) == 0
    assert count("memberships", "organisation_id", active) == 0
    db.session.execute(sa.text("UPDATE organisations SET name = 'x' WHERE id = :o"),
                       {"o": active})
    tenancy.platform()
    name = db.session.scalar(sa.text("SELECT name FROM organisations WHERE id = :o"),
                             {"o": active})
    assert name != "x"  # readable, not writable


def test_the_scope_survives_commits(two: tuple[str, str]) -> None:
    mine, theirs = two
    tenancy.set_scope(Scope(organisations=(mine,)))
    db.session.commit()
    assert count("ledger_entries", "organisation_id", mine) == 1
    assert count("ledger_entries", "organisation_id", theirs) == 0


def test_the_query_helper_refuses_organisations_outside_the_scope(two: tuple[str, str]) -> None:
    from portal.models import Fund

    mine, theirs = two
    tenancy.set_scope(Scope(organisations=(mine,)))
    assert len(db.session.scalars(tenancy.organisation_rows(Fund, mine)).all()) == 1
    with pytest.raises(PermissionError):
        tenancy.organisation_rows(Fund, theirs)


def test_the_public_read_memo_lives_as_long_as_the_public_scope_and_transaction(
    two: tuple[str, str]
) -> None:
    mine, _ = two
    tenancy.platform()
    assert tenancy.public_read_memo() is None  # heads can move under this scope
    tenancy.public_reading()
    assert ledger.get_head(mine).sequence == 1
    memo = tenancy.public_read_memo()
    assert memo is not None and memo[("head", mine)].sequence == 1
    assert tenancy.public_read_memo() is memo  # one memo for the transaction
    tenancy.platform()
    ledger.append_entry(mine, "donation_received", 100, "EUR")
    tenancy.public_reading()  # a new scope forgets what the old one kept
    assert ledger.get_head(mine).sequence == 2
    db.session.commit()
    tenancy.public_reading()
    ledger.get_head(mine)
    assert tenancy.public_read_memo() is not memo  # and so does a new transaction
