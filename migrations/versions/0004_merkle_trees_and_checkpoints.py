"""Merkle trees over every ledger, and signed checkpoints.

Each organisation's entries are the leaves of an RFC 6962 Merkle tree (leaf data:
the entry's ``entry_hash`` text). The database keeps the tree's complete inner
nodes: a statement trigger adds, in the inserting transaction, the nodes the new
entries complete (O(log n) per entry). Leaves are not stored: a leaf hash is
``SHA-256(0x00 || entry_hash)`` of the entry row. Any root and any proof up to the
head is then a handful of node reads.

Checkpoints are the signed, published tree heads (docs/ledger-spec.md): one row
per period and one line per organisation, append-only like the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOW = sa.func.now()

# The nodes that leaves [first_leaf, last_leaf] (0-based) complete, level by level: a
# parent is new exactly when its right child is new, so the new parents of [lo, hi]
# are [lo / 2, (hi - 1) / 2], and so on up while that range is not empty.
EXTEND_TREE_FUNCTION = r"""
CREATE FUNCTION ledger_extend_merkle_tree(org text, first_leaf bigint, last_leaf bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    lvl smallint := 1;
    lo bigint := first_leaf;
    hi bigint := last_leaf;
BEGIN
    WHILE hi >= 1 AND lo / 2 <= (hi - 1) / 2 LOOP
        IF lvl = 1 THEN
            INSERT INTO merkle_nodes (organisation_id, level, position, hash)
            SELECT org, 1, p,
                   sha256('\x01'::bytea
                          || sha256('\x00'::bytea || convert_to(l.entry_hash, 'UTF8'))
                          || sha256('\x00'::bytea || convert_to(r.entry_hash, 'UTF8')))
              FROM generate_series(lo / 2, (hi - 1) / 2) AS p
              JOIN ledger_entries l ON l.organisation_id = org AND l.sequence = 2 * p + 1
              JOIN ledger_entries r ON r.organisation_id = org AND r.sequence = 2 * p + 2;
        ELSE
            INSERT INTO merkle_nodes (organisation_id, level, position, hash)
            SELECT org, lvl, p, sha256('\x01'::bytea || l.hash || r.hash)
              FROM generate_series(lo / 2, (hi - 1) / 2) AS p
              JOIN merkle_nodes l
                ON l.organisation_id = org AND l.level = lvl - 1 AND l.position = 2 * p
              JOIN merkle_nodes r
                ON r.organisation_id = org AND r.level = lvl - 1 AND r.position = 2 * p + 1;
        END IF;
        lo := lo / 2;
        hi := (hi - 1) / 2;
        lvl := lvl + 1;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION ledger_extend_merkle_tree(text, bigint, bigint) FROM PUBLIC;

CREATE FUNCTION ledger_grow_merkle_trees() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM ledger_extend_merkle_tree(organisation_id, min(sequence) - 1, max(sequence) - 1)
       FROM new_entries GROUP BY organisation_id;
    RETURN NULL;
END;
$$;
"""

ENTRIES_TRIGGER = """
CREATE TRIGGER ledger_entries_merkle AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_grow_merkle_trees();
"""

# Created after the trees of existing ledgers are built: from then on only the
# ledger's trigger may add nodes, and nothing may change them.
GUARD_TRIGGERS = """
CREATE TRIGGER merkle_nodes_guard BEFORE INSERT ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_derived();
CREATE TRIGGER merkle_nodes_no_change BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER checkpoints_no_change BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoint_organisations_no_change
    BEFORE UPDATE OR DELETE ON checkpoint_organisations
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoint_organisations_no_truncate BEFORE TRUNCATE ON checkpoint_organisations
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""

TENANT = "(SELECT portal_platform()) OR organisation_id = ANY ((SELECT portal_orgs())::text[])"
POLICIES = f"""
ALTER TABLE merkle_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE merkle_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY merkle_nodes_tenant ON merkle_nodes USING ({TENANT}) WITH CHECK ({TENANT});
CREATE POLICY merkle_nodes_public_read ON merkle_nodes FOR SELECT
    USING (organisation_id = ANY ((SELECT portal_public_orgs())::text[]));

-- Checkpoints are published: anyone may read them; only operator tools write them.
ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY checkpoints_read ON checkpoints FOR SELECT USING (true);
CREATE POLICY checkpoints_write ON checkpoints FOR INSERT
    WITH CHECK ((SELECT portal_platform()));
ALTER TABLE checkpoint_organisations ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoint_organisations FORCE ROW LEVEL SECURITY;
CREATE POLICY checkpoint_organisations_read ON checkpoint_organisations FOR SELECT
    USING (true);
CREATE POLICY checkpoint_organisations_write ON checkpoint_organisations FOR INSERT
    WITH CHECK ((SELECT portal_platform()));
"""

APP_GRANTS = {
    "merkle_nodes": "SELECT",
    "checkpoints": "SELECT, INSERT",
    "checkpoint_organisations": "SELECT, INSERT",
}


def upgrade() -> None:
    op.create_table(
        "merkle_nodes",
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id",
                                name="fk_merkle_nodes_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.CheckConstraint("level BETWEEN 1 AND 62", name="ck_merkle_nodes_level"),
        sa.CheckConstraint("position >= 0", name="ck_merkle_nodes_position"),
        sa.CheckConstraint("octet_length(hash) = 32", name="ck_merkle_nodes_hash"),
    )

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("period", sa.Date, nullable=False, unique=True),
        sa.Column("timestamp", sa.String(20), nullable=False),
        sa.Column("previous_id", sa.String(20),
                  sa.ForeignKey("checkpoints.id", name="fk_checkpoints_previous_id_checkpoints")),
        sa.Column("entry_count", sa.BigInteger, nullable=False),
        sa.Column("organisation_count", sa.Integer, nullable=False),
        sa.Column("cumulative_hash", sa.String(80), nullable=False),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(8), nullable=False),
        sa.Column("document", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("id = 'chk_' || to_char(period, 'YYYY_MM_DD')",
                           name="ck_checkpoints_id"),
    )

    op.create_table(
        "checkpoint_organisations",
        sa.Column("checkpoint_id", sa.String(20),
                  sa.ForeignKey("checkpoints.id",
                                name="fk_checkpoint_organisations_checkpoint_id_checkpoints"),
                  primary_key=True),
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id",
                                name="fk_checkpoint_organisations_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("head_hash", sa.String(80)),
        sa.Column("totals", JSONB, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.CheckConstraint("tree_size >= 0", name="ck_checkpoint_organisations_tree_size"),
        sa.CheckConstraint("octet_length(root_hash) = 32",
                           name="ck_checkpoint_organisations_root_hash"),
    )
    op.create_index("ix_checkpoint_organisations_organisation_id_tree_size",
                    "checkpoint_organisations", ["organisation_id", "tree_size"])

    op.execute(EXTEND_TREE_FUNCTION)
    op.execute(POLICIES)
    _build_existing_trees()
    op.execute(ENTRIES_TRIGGER)
    op.execute(GUARD_TRIGGERS)
    _grant_to_app_role()


def _build_existing_trees() -> None:
    """Trees for the entries appended before this revision, one ledger at a time."""
    op.execute("SELECT set_config('app.platform', 'on', true)")
    op.execute(
        "SELECT ledger_extend_merkle_tree(organisation_id, 0, max(sequence) - 1)"
        " FROM ledger_entries GROUP BY organisation_id"
    )
    op.execute("SELECT set_config('app.platform', '', true)")


def _grant_to_app_role() -> None:
    from flask import current_app
    from sqlalchemy.engine import make_url

    url = current_app.config.get("SQLALCHEMY_DATABASE_URI")
    role = make_url(url).username if url else None
    bind = op.get_bind()
    current = bind.execute(sa.text("SELECT current_user")).scalar_one()
    exists = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                          {"r": role}).scalar()
    if not role or role == current or not exists:
        return
    quoted = '"' + role.replace('"', '""') + '"'
    for table, privileges in APP_GRANTS.items():
        op.execute(f"GRANT {privileges} ON {table} TO {quoted}")


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_entries_merkle ON ledger_entries")
    op.execute("DROP FUNCTION ledger_grow_merkle_trees()")
    op.execute("DROP FUNCTION ledger_extend_merkle_tree(text, bigint, bigint)")
    op.drop_table("checkpoint_organisations")
    op.drop_table("checkpoints")
    op.drop_table("merkle_nodes")
