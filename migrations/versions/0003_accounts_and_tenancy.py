"""Accounts, the dashboard's tables, and tenant isolation by row-level security.

Every tenant table gets row-level security, forced on the owner too. Rows are
visible and writable only for the organisations named in the transaction's
``app.current_org`` setting (set with ``SET LOCAL`` by the portal's one scoped
helper); public pages may read rows of active organisations when
``app.public_read`` is on; operator tools run with ``app.platform`` on. With
nothing set, nothing is visible.

The portal connects as an application role that owns no table and cannot bypass
row-level security; this migration, run by the owner role, grants it exactly what
it needs (no UPDATE or DELETE on ledger entries at all).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NOW = sa.func.now()
ROLE_CHECK = "role IN ('owner', 'admin', 'finance', 'viewer', 'auditor')"

#: Tenant tables and the column naming their organisation; True = the public may read
#: rows of active organisations.
TENANT_TABLES = {
    "organisations": ("id", True),
    "funds": ("organisation_id", True),
    "memberships": ("organisation_id", False),
    "ledger_entries": ("organisation_id", True),
    "ledger_heads": ("organisation_id", True),
    "ledger_totals": ("organisation_id", True),
    "organisation_categories": ("organisation_id", True),
    "invitations": ("organisation_id", False),
    "expenses": ("organisation_id", False),
    "organisation_events": ("organisation_id", False),
}

#: What the application role may do, table by table.
APP_GRANTS = {
    "organisations": "SELECT, INSERT, UPDATE",
    "funds": "SELECT, INSERT, UPDATE",
    "users": "SELECT, INSERT, UPDATE",
    "memberships": "SELECT, INSERT, UPDATE, DELETE",
    "ledger_entries": "SELECT, INSERT",
    # UPDATE only so that an append can lock the head row (SELECT … FOR UPDATE); the
    # ledger's guard trigger refuses any direct change.
    "ledger_heads": "SELECT, UPDATE",
    "ledger_totals": "SELECT",
    "user_recovery_codes": "SELECT, INSERT, UPDATE, DELETE",
    "security_events": "SELECT, INSERT",
    "organisation_categories": "SELECT, INSERT, UPDATE",
    "invitations": "SELECT, INSERT, UPDATE",
    "expenses": "SELECT, INSERT, UPDATE",
    "organisation_events": "SELECT, INSERT",
}
SEQUENCES = ("user_recovery_codes_id_seq", "security_events_id_seq",
             "organisation_events_id_seq")

SCOPE_FUNCTIONS = r"""
CREATE FUNCTION portal_orgs() RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT string_to_array(nullif(current_setting('app.current_org', true), ''), ',')
$$;
CREATE FUNCTION portal_public_read() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('app.public_read', true), '') = 'on'
$$;
CREATE FUNCTION portal_platform() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('app.platform', true), '') = 'on'
$$;
CREATE FUNCTION portal_user() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('app.current_user', true), '')
$$;
-- Organisations the public may read from: active ones (only when public reading is on).
CREATE FUNCTION portal_public_orgs() RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(id), '{}') FROM organisations
     WHERE status = 'active' AND portal_public_read()
$$;
-- Organisations the signed-in user belongs to (their dashboard's list).
CREATE FUNCTION portal_member_orgs() RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(organisation_id), '{}') FROM memberships
     WHERE user_id = portal_user()
$$;
"""


# The ledger's own guards must see every row, whatever the caller's scope: opening an
# organisation's ledger, and refusing to delete an organisation that has entries. They
# widen the scope for their own statement only and put it back.
GUARDS_SEE_EVERYTHING = r"""
CREATE OR REPLACE FUNCTION ledger_keep_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    scope text := coalesce(current_setting('app.platform', true), '');
    has_entries boolean;
BEGIN
    PERFORM set_config('app.platform', 'on', true);
    has_entries := EXISTS (SELECT 1 FROM ledger_entries WHERE organisation_id = OLD.id);
    PERFORM set_config('app.platform', scope, true);
    IF has_entries THEN
        RAISE EXCEPTION 'organisation % has ledger entries and cannot be deleted; suspend it',
            OLD.id USING ERRCODE = 'AL001';
    END IF;
    RETURN OLD;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_open_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    scope text := coalesce(current_setting('app.platform', true), '');
BEGIN
    PERFORM set_config('app.platform', 'on', true);
    INSERT INTO ledger_heads (organisation_id) VALUES (NEW.id);
    PERFORM set_config('app.platform', scope, true);
    RETURN NULL;
END;
$$;
"""
GUARDS_BEFORE = r"""
CREATE OR REPLACE FUNCTION ledger_keep_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_entries WHERE organisation_id = OLD.id) THEN
        RAISE EXCEPTION 'organisation % has ledger entries and cannot be deleted; suspend it',
            OLD.id USING ERRCODE = 'AL001';
    END IF;
    RETURN OLD;
END;
$$;

CREATE OR REPLACE FUNCTION ledger_open_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO ledger_heads (organisation_id) VALUES (NEW.id);
    RETURN NULL;
END;
$$;
"""


def _policies(table: str, column: str, public: bool) -> str:
    # (SELECT f()) makes each setting an init plan: read once per statement, not per row.
    tenant = (f"(SELECT portal_platform()) OR {column} = ANY ((SELECT portal_orgs())::text[])")
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_tenant ON {table} USING ({tenant}) WITH CHECK ({tenant})",
    ]
    if table == "organisations":
        # Suspended organisations stay readable (name only) so their pages can say
        # "gone" (410) rather than "never existed"; their ledgers do not.
        statements.append(
            "CREATE POLICY organisations_public_read ON organisations FOR SELECT"
            " USING ((SELECT portal_public_read()) AND status IN ('active', 'suspended'))")
        statements.append(
            "CREATE POLICY organisations_member_read ON organisations FOR SELECT"
            " USING (id = ANY ((SELECT portal_member_orgs())::text[]))")
    elif public:
        statements.append(
            f"CREATE POLICY {table}_public_read ON {table} FOR SELECT"
            f" USING ({column} = ANY ((SELECT portal_public_orgs())::text[]))")
    if table == "memberships":
        statements.append(
            "CREATE POLICY memberships_own_read ON memberships FOR SELECT"
            " USING (user_id = (SELECT portal_user()))")
    return ";\n".join(statements)


def upgrade() -> None:
    op.add_column("users", sa.Column("password_changed_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("mfa_secret", sa.String(255)))
    op.add_column("users", sa.Column("mfa_enabled_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("mfa_last_step", sa.BigInteger))
    op.add_column("users", sa.Column("ip_binding", sa.String(8), nullable=False,
                                     server_default="none"))
    op.create_check_constraint("ip_binding", "users",
                               "ip_binding IN ('none', 'subnet', 'strict')")

    op.create_table(
        "user_recovery_codes",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("user_id", sa.String(40),
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_user_recovery_codes_user_id_users"), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_user_recovery_codes_user_id", "user_recovery_codes", ["user_id"])

    op.create_table(
        "security_events",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("user_id", sa.String(40),
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_security_events_user_id_users")),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("device", sa.String(120), nullable=False, server_default=""),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_security_events_user_id_created_at", "security_events",
                    ["user_id", "created_at"])

    op.create_table(
        "organisation_categories",
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_organisation_categories_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("slug", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(80), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'",
                           name="ck_organisation_categories_slug"),
    )

    op.create_table(
        "invitations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_invitations_organisation_id_organisations"),
                  nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("invited_by", sa.String(40),
                  sa.ForeignKey("users.id", ondelete="SET NULL",
                                name="fk_invitations_invited_by_users")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("accepted_by", sa.String(40),
                  sa.ForeignKey("users.id", ondelete="SET NULL",
                                name="fk_invitations_accepted_by_users")),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(ROLE_CHECK, name="ck_invitations_role"),
    )
    op.create_index("ix_invitations_organisation_id", "invitations", ["organisation_id"])

    op.create_table(
        "expenses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_expenses_organisation_id_organisations"),
                  nullable=False),
        sa.Column("submitted_by", sa.String(40),
                  sa.ForeignKey("users.id", name="fk_expenses_submitted_by_users"),
                  nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("fund_id", sa.String(40),
                  sa.ForeignKey("funds.id", name="fk_expenses_fund_id_funds"), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("payee", sa.String(200), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False, server_default=""),
        sa.Column("spent_on", sa.Date, nullable=False),
        sa.Column("visibility", sa.String(24), nullable=False, server_default="public_full"),
        sa.Column("reveal_at", sa.DateTime(timezone=True)),
        sa.Column("receipt_sha256", sa.String(64)),
        sa.Column("receipt_name", sa.String(200)),
        sa.Column("receipt_mime", sa.String(40)),
        sa.Column("receipt_size", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False, server_default="submitted"),
        sa.Column("decided_by", sa.String(40),
                  sa.ForeignKey("users.id", name="fk_expenses_decided_by_users")),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("rejection_reason", sa.String(1000)),
        sa.Column("ledger_entry_id", sa.String(40)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("ledger_entry_id", name="uq_expenses_ledger_entry_id"),
        sa.CheckConstraint("amount > 0", name="ck_expenses_amount"),
        sa.CheckConstraint("status IN ('submitted', 'approved', 'rejected', 'withdrawn')",
                           name="ck_expenses_status"),
        sa.CheckConstraint("decided_by IS NULL OR decided_by <> submitted_by",
                           name="ck_expenses_four_eyes"),
        sa.CheckConstraint("status <> 'rejected' OR length(rejection_reason) > 0",
                           name="ck_expenses_rejection_reason"),
        sa.CheckConstraint("status <> 'approved' OR ledger_entry_id IS NOT NULL",
                           name="ck_expenses_approved_entry"),
    )
    op.create_index("ix_expenses_organisation_id_status", "expenses",
                    ["organisation_id", "status"])

    op.create_table(
        "organisation_events",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_organisation_events_organisation_id_organisations"),
                  nullable=False),
        sa.Column("actor_id", sa.String(40),
                  sa.ForeignKey("users.id", ondelete="SET NULL",
                                name="fk_organisation_events_actor_id_users")),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(80), nullable=False, server_default=""),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_organisation_events_organisation_id_created_at",
                    "organisation_events", ["organisation_id", "created_at"])

    op.execute(SCOPE_FUNCTIONS)
    for table, (column, public) in TENANT_TABLES.items():
        op.execute(_policies(table, column, public))
    op.execute(GUARDS_SEE_EVERYTHING)
    _grant_to_app_role()


def _app_role() -> str | None:
    """The role the portal connects as, when it is not the role running migrations."""
    from flask import current_app
    from sqlalchemy.engine import make_url

    url = current_app.config.get("SQLALCHEMY_DATABASE_URI")
    role = make_url(url).username if url else None
    current = op.get_bind().execute(sa.text("SELECT current_user")).scalar_one()
    exists = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    return role if role and role != current and exists else None


def _grant_to_app_role() -> None:
    role = _app_role()
    if role is None:
        return
    quoted = '"' + role.replace('"', '""') + '"'
    for table, privileges in APP_GRANTS.items():
        op.execute(f"GRANT {privileges} ON {table} TO {quoted}")
    for sequence in SEQUENCES:
        op.execute(f"GRANT USAGE ON SEQUENCE {sequence} TO {quoted}")


def downgrade() -> None:
    op.execute(GUARDS_BEFORE)
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_tenant ON {table}")
        op.execute(f"DROP POLICY IF EXISTS {table}_public_read ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS organisations_member_read ON organisations")
    op.execute("DROP POLICY IF EXISTS memberships_own_read ON memberships")
    for function in ("portal_member_orgs", "portal_public_orgs", "portal_user",
                     "portal_platform", "portal_public_read", "portal_orgs"):
        op.execute(f"DROP FUNCTION {function}()")
    for table in ("organisation_events", "expenses", "invitations", "organisation_categories",
                  "security_events", "user_recovery_codes"):
        op.drop_table(table)
    op.drop_constraint(op.f("ck_users_ip_binding"), "users")
    for column in ("ip_binding", "mfa_last_step", "mfa_enabled_at", "mfa_secret",
                   "password_changed_at"):
        op.drop_column("users", column)
