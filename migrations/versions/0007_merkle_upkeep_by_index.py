"""Merkle upkeep by index range scans, whatever the ledger's size.

The tree function of 0004 joined the new nodes' children to ``ledger_entries`` and
``merkle_nodes``. Planned on statistics that lag behind a growing ledger (a bulk load
adds thousands of entries per batch), that join could scan every entry of the ledger
for each batch, or even for each node: the cost of an append or a batch then grew
with the ledger. Here the children of each level's new nodes, one contiguous range,
are read in order by one index range scan and paired with a window function. That
plan fits one node as well as thousands, so the function keeps it (a generic plan)
instead of planning its statements again on every append, which cost more than
running them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The nodes that leaves [first_leaf, last_leaf] (0-based) complete, level by level: a
# parent is new exactly when its right child is new, so the new parents of [lo, hi]
# are [lo / 2, (hi - 1) / 2], and so on up while that range is not empty.
BY_INDEX = r"""
CREATE OR REPLACE FUNCTION ledger_extend_merkle_tree(org text, first_leaf bigint,
                                                     last_leaf bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    lvl smallint := 1;
    lo bigint := first_leaf;
    hi bigint := last_leaf;
BEGIN
    WHILE hi >= 1 AND lo / 2 <= (hi - 1) / 2 LOOP
        -- The children of parents [lo / 2, (hi - 1) / 2] are one contiguous range of
        -- the level below: read it in order, pair each right child with its left one.
        IF lvl = 1 THEN
            INSERT INTO merkle_nodes (organisation_id, level, position, hash)
            SELECT org, 1, c.sequence / 2 - 1, sha256('\x01'::bytea || c.left_leaf || c.leaf)
              FROM (SELECT l.sequence, l.leaf, lag(l.leaf) OVER (ORDER BY l.sequence) AS left_leaf
                      FROM (SELECT e.sequence,
                                   sha256('\x00'::bytea || convert_to(e.entry_hash, 'UTF8'))
                                       AS leaf
                              FROM ledger_entries e
                             WHERE e.organisation_id = org
                               AND e.sequence BETWEEN (lo / 2) * 2 + 1
                                                  AND ((hi - 1) / 2) * 2 + 2) AS l) AS c
             WHERE c.sequence % 2 = 0;
        ELSE
            INSERT INTO merkle_nodes (organisation_id, level, position, hash)
            SELECT org, lvl, c.position / 2, sha256('\x01'::bytea || c.left_hash || c.hash)
              FROM (SELECT n.position, n.hash,
                           lag(n.hash) OVER (ORDER BY n.position) AS left_hash
                      FROM merkle_nodes n
                     WHERE n.organisation_id = org AND n.level = lvl - 1
                       AND n.position BETWEEN (lo / 2) * 2 AND ((hi - 1) / 2) * 2 + 1) AS c
             WHERE c.position % 2 = 1;
        END IF;
        lo := lo / 2;
        hi := (hi - 1) / 2;
        lvl := lvl + 1;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION ledger_extend_merkle_tree(text, bigint, bigint) FROM PUBLIC;
"""


def upgrade() -> None:
    op.execute(BY_INDEX)
    # A node's organisation is one with ledger entries, which cannot be deleted; the
    # foreign key's check on every node is a cost without a use.
    op.drop_constraint("fk_merkle_nodes_organisation_id_organisations", "merkle_nodes",
                       type_="foreignkey")
    # Refusing direct inserts needs one check per statement, not one per node.
    op.execute("DROP TRIGGER merkle_nodes_guard ON merkle_nodes")
    op.execute("CREATE TRIGGER merkle_nodes_guard BEFORE INSERT ON merkle_nodes"
               " FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_derived()")


def downgrade() -> None:
    # The tree function computes exactly the nodes the one of 0004 did, and 0004's own
    # downgrade drops it.
    op.create_foreign_key("fk_merkle_nodes_organisation_id_organisations", "merkle_nodes",
                          "organisations", ["organisation_id"], ["id"])
    op.execute("DROP TRIGGER merkle_nodes_guard ON merkle_nodes")
    op.execute("CREATE TRIGGER merkle_nodes_guard BEFORE INSERT ON merkle_nodes"
               " FOR EACH ROW EXECUTE FUNCTION ledger_guard_derived()")
