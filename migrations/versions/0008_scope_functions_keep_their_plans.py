"""Row-security helpers that keep their plans: the public and member organisation lists.

Every statement on a tenant table under the public scope evaluates
``portal_public_orgs()`` once (an init plan), and every dashboard statement on
``organisations`` evaluates ``portal_member_orgs()``. As SQL functions that are not
inlined, their queries were planned again on every call, under row-level security,
which cost about 0.1 ms: more than the statement itself for a page of ledger entries.
PL/pgSQL keeps each function's plan for the session, so a call costs its execution
only. What the functions return, and under whose rights they run, do not change.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEEPING_PLANS = r"""
CREATE OR REPLACE FUNCTION portal_public_orgs() RETURNS text[] LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT portal_public_read() THEN
        RETURN '{}';
    END IF;
    RETURN (SELECT coalesce(array_agg(id), '{}') FROM organisations WHERE status = 'active');
END
$$;
CREATE OR REPLACE FUNCTION portal_member_orgs() RETURNS text[] LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(array_agg(organisation_id), '{}') FROM memberships
             WHERE user_id = portal_user());
END
$$;
"""

PLANNED_EACH_CALL = r"""
CREATE OR REPLACE FUNCTION portal_public_orgs() RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(id), '{}') FROM organisations
     WHERE status = 'active' AND portal_public_read()
$$;
CREATE OR REPLACE FUNCTION portal_member_orgs() RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(organisation_id), '{}') FROM memberships
     WHERE user_id = portal_user()
$$;
"""


def upgrade() -> None:
    op.execute(KEEPING_PLANS)


def downgrade() -> None:
    op.execute(PLANNED_EACH_CALL)
