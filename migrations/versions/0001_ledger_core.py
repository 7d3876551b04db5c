"""Organisations, funds, users, memberships and the append-only hash-chained ledger.

The database itself guards the ledger: entries cannot be updated, deleted or
truncated; an insert must continue its organisation's chain exactly (sequence,
previous hash, timestamp order, running balance); heads, balances and totals are
maintained by triggers and cannot be written directly.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Formats are checked without the regex engine, which costs several microseconds
# per row and so dominates bulk loads. Each check equals the regex beside it.


def _is_hash(column: str) -> str:
    """``column ~ '^sha256:[0-9a-f]{64}$'``."""
    return (f"(length({column}) = 71 AND left({column}, 7) = 'sha256:'"
            f" AND ltrim(substr({column}, 8), '0123456789abcdef') = '')")


# ``timestamp ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'``
IS_TIMESTAMP = "translate(timestamp, '123456789', '000000000') = '0000-00-00T00:00:00Z'"
# ``entry_id ~ '^led_[0-9a-f]{24,36}$'`` (the column holds 40 characters)
IS_ENTRY_ID = ("left(entry_id, 4) = 'led_' AND length(entry_id) BETWEEN 28 AND 40"
               " AND ltrim(substr(entry_id, 5), '0123456789abcdef') = ''")
# ``currency ~ '^[A-Z]{3}$'``
IS_CURRENCY = "translate(currency, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', repeat('A', 26)) = 'AAA'"
MONEY_IN = "'donation_received', 'transfer_in', 'dispute_won'"
MONEY_OUT = (
    "'fee', 'expense', 'transfer_out', 'refund_issued', 'donation_reversed', 'dispute_opened'"
)
ENTRY_TYPES = f"{MONEY_IN}, {MONEY_OUT}, 'adjustment', 'expense_recategorized'"
VISIBILITIES = "'public_full', 'public_aggregated', 'delayed_public', 'internal_only'"


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("legal_name", sa.String(300), nullable=False, server_default=""),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("default_currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("website", sa.String(300), nullable=False, server_default=""),
        sa.Column("stripe_account_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.UniqueConstraint("slug", name="uq_organisations_slug"),
        sa.UniqueConstraint("stripe_account_id", name="uq_organisations_stripe_account_id"),
        sa.CheckConstraint("status IN ('pending', 'active', 'suspended')",
                           name="ck_organisations_status"),
        sa.CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name="ck_organisations_slug"),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name="ck_organisations_country"),
        sa.CheckConstraint("default_currency ~ '^[A-Z]{3}$'",
                           name="ck_organisations_default_currency"),
    )

    op.create_table(
        "funds",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_funds_organisation_id_organisations"),
                  nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("type", sa.String(16), nullable=False, server_default="project"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("goal_amount", sa.BigInteger),
        sa.Column("goal_currency", sa.String(3)),
        sa.Column("archived_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.UniqueConstraint("organisation_id", "name", name="uq_funds_organisation_id_name"),
        sa.CheckConstraint("type IN ('general', 'project', 'restricted', 'emergency')",
                           name="ck_funds_type"),
        sa.CheckConstraint(
            "(goal_amount IS NULL AND goal_currency IS NULL)"
            " OR (goal_amount > 0 AND goal_currency ~ '^[A-Z]{3}$')",
            name="ck_funds_goal",
        ),
    )
    op.create_index("ix_funds_organisation_id", "funds", ["organisation_id"])
    op.create_index("uq_funds_one_general", "funds", ["organisation_id"], unique=True,
                    postgresql_where=sa.text("type = 'general'"))

    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("security_stamp", sa.String(64), nullable=False),
        sa.Column("is_platform_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("email_confirmed_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)

    op.create_table(
        "memberships",
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_memberships_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("user_id", sa.String(40),
                  sa.ForeignKey("users.id", ondelete="CASCADE",
                                name="fk_memberships_user_id_users"),
                  primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('owner', 'admin', 'finance', 'viewer', 'auditor')",
                           name="ck_memberships_role"),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])

    op.create_table(
        "ledger_entries",
        sa.Column("entry_id", sa.String(40), primary_key=True),
        # No foreign key: the ledger's trigger refuses entries of organisations
        # without a ledger head, set-based, and organisations with entries cannot be
        # deleted (organisations_keep_ledgers), at a fraction of a per-row FK check.
        sa.Column("organisation_id", sa.String(40), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.String(20), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("metadata", JSONB, nullable=False),
        sa.Column("prev_entry_hash", sa.String(80)),
        sa.Column("entry_hash", sa.String(80), nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        # The part of balance_after that is never disclosed entry by entry: the sum of
        # public_aggregated and internal_only amounts so far, in this currency. Public
        # running balances subtract it, so no hidden amount shows by difference.
        sa.Column("withheld_after", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.String(200)),
        sa.UniqueConstraint("organisation_id", "sequence",
                            name="uq_ledger_entries_organisation_id_sequence"),
        sa.CheckConstraint(_is_hash("entry_hash"), name="ck_ledger_entries_entry_hash"),
        sa.CheckConstraint(f"prev_entry_hash IS NULL OR {_is_hash('prev_entry_hash')}",
                           name="ck_ledger_entries_prev_entry_hash"),
        sa.CheckConstraint("sequence >= 1 AND (sequence = 1) = (prev_entry_hash IS NULL)",
                           name="ck_ledger_entries_sequence"),
        sa.CheckConstraint(IS_ENTRY_ID, name="ck_ledger_entries_entry_id"),
        sa.CheckConstraint(IS_TIMESTAMP, name="ck_ledger_entries_timestamp"),
        sa.CheckConstraint(IS_CURRENCY, name="ck_ledger_entries_currency"),
        sa.CheckConstraint(f"type IN ({ENTRY_TYPES})", name="ck_ledger_entries_type"),
        sa.CheckConstraint(
            f"CASE WHEN type IN ({MONEY_IN}) THEN amount > 0"
            f" WHEN type IN ({MONEY_OUT}) THEN amount < 0"
            " WHEN type = 'expense_recategorized' THEN amount = 0"
            " ELSE amount <> 0 END",
            name="ck_ledger_entries_sign",
        ),
        sa.CheckConstraint("jsonb_typeof(metadata) = 'object'",
                           name="ck_ledger_entries_metadata_object"),
        sa.CheckConstraint(
            f"COALESCE(metadata->>'visibility', 'public_full') IN ({VISIBILITIES})"
            " AND ((COALESCE(metadata->>'visibility', 'public_full') = 'delayed_public')"
            " = (metadata ? 'reveal_at'))",
            name="ck_ledger_entries_visibility",
        ),
        sa.CheckConstraint(
            "type <> 'adjustment' OR length(metadata->>'reason') > 0",
            name="ck_ledger_entries_adjustment_reason",
        ),
        sa.CheckConstraint(
            "type <> 'expense_recategorized' OR (metadata ? 'refers_to'"
            " AND metadata ? 'old_category' AND metadata ? 'new_category')",
            name="ck_ledger_entries_recategorization",
        ),
        # Entries that only make sense linked to another carry their links.
        sa.CheckConstraint(
            "type NOT IN ('transfer_in', 'transfer_out') OR (metadata ? 'transfer_ref'"
            " AND metadata ? 'counterparty_organisation_id' AND metadata ? 'counterpart_entry_id')",
            name="ck_ledger_entries_transfer_links",
        ),
        sa.CheckConstraint(
            "type <> 'donation_reversed' OR metadata ? 'reverses'",
            name="ck_ledger_entries_reversal_link",
        ),
    )
    op.create_index(
        "uq_ledger_entries_idempotency", "ledger_entries", ["organisation_id", "idempotency_key"],
        unique=True, postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    # An entry can be reversed once: the database, not only the service, says so.
    op.execute(
        "CREATE UNIQUE INDEX uq_ledger_entries_reverses ON ledger_entries"
        " (organisation_id, (metadata->>'reverses')) WHERE metadata ? 'reverses'"
    )
    op.execute(
        "CREATE INDEX ix_ledger_entries_refers_to ON ledger_entries"
        " (organisation_id, (metadata->>'refers_to')) WHERE metadata ? 'refers_to'"
    )

    op.create_table(
        "ledger_heads",
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_ledger_heads_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("entry_hash", sa.String(80)),
        sa.Column("timestamp", sa.String(20)),
        # Balance per currency after the head entry, e.g. {"EUR": 51300}.
        sa.Column("balances", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        # The withheld part of each balance (see ledger_entries.withheld_after).
        sa.Column("withheld", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_table(
        "ledger_totals",
        sa.Column("organisation_id", sa.String(40),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE",
                                name="fk_ledger_totals_organisation_id_organisations"),
                  primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("entry_type", sa.String(32), primary_key=True),
        sa.Column("category", sa.String(64), primary_key=True),
        sa.Column("fund_id", sa.String(40), primary_key=True),
        sa.Column("visibility", sa.String(24), primary_key=True),
        sa.Column("entry_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("amount", sa.BigInteger, nullable=False, server_default="0"),
    )

    op.execute(GUARD_FUNCTIONS)
    op.execute(ACCEPT_ENTRIES_FUNCTION)
    op.execute(TRIGGERS)


GUARD_FUNCTIONS = r"""
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'AL001',
              HINT = 'Correct an entry by appending a reversal or an adjustment.';
END;
$$;

-- Heads, balances and totals are derived from the entries: only the ledger's own
-- trigger (nested, so pg_trigger_depth() > 1) may write them.
CREATE FUNCTION ledger_guard_derived() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION '% is maintained by the ledger: direct % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'AL001';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION ledger_keep_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_entries WHERE organisation_id = OLD.id) THEN
        RAISE EXCEPTION 'organisation % has ledger entries and cannot be deleted; suspend it',
            OLD.id USING ERRCODE = 'AL001';
    END IF;
    RETURN OLD;
END;
$$;

CREATE FUNCTION ledger_open_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO ledger_heads (organisation_id) VALUES (NEW.id);
    RETURN NULL;
END;
$$;
"""

# One statement-level trigger checks and absorbs every INSERT, whether it carries
# one entry or a bulk load of thousands: set-based checks cost the same per row.
# Concurrent writers are serialised by the unique (organisation_id, sequence) index
# and by the head row's lock taken in the UPDATE below; the application also locks
# the head before it computes hashes.
ACCEPT_ENTRIES_FUNCTION = r"""
CREATE FUNCTION ledger_accept_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    r record;
    bad record;
BEGIN
    -- Every row must continue its ledger exactly: the first problem (if any) comes
    -- first, and every row carries whether the batch holds links to check.
    SELECT c.* INTO r
      FROM (SELECT o.*,
                   CASE WHEN o.head_sequence IS NULL THEN 'unknown organisation'
                        WHEN o.sequence <> o.head_sequence + o.rn
                            THEN 'sequence does not follow the head'
                        WHEN o.prev_entry_hash IS DISTINCT FROM o.expected_prev
                            THEN 'prev_entry_hash does not match the head'
                        WHEN o.timestamp < COALESCE(o.expected_min_timestamp, '')
                            THEN 'timestamp is earlier than the previous entry'
                        WHEN o.balance_after <> o.expected_balance
                            THEN format('balance_after %s should be %s',
                                        o.balance_after, o.expected_balance)
                        WHEN o.withheld_after <> o.expected_withheld
                            THEN format('withheld_after %s should be %s',
                                        o.withheld_after, o.expected_withheld)
                   END AS problem,
                   bool_or(o.metadata ? 'reverses') OVER () AS has_reversals,
                   bool_or(o.type = 'expense_recategorized') OVER () AS has_recategorizations
              FROM (SELECT n.entry_id, n.organisation_id, n.sequence, n.prev_entry_hash,
                           n.timestamp, n.balance_after, n.withheld_after, n.type,
                           n.metadata,
                           h.sequence AS head_sequence,
                           row_number() OVER w AS rn,
                           CASE WHEN row_number() OVER w = 1 THEN h.entry_hash
                                ELSE lag(n.entry_hash) OVER w END AS expected_prev,
                           CASE WHEN row_number() OVER w = 1 THEN h.timestamp
                                ELSE lag(n.timestamp) OVER w END AS expected_min_timestamp,
                           COALESCE((h.balances->>n.currency)::bigint, 0)
                               + sum(n.amount) OVER wc AS expected_balance,
                           COALESCE((h.withheld->>n.currency)::bigint, 0)
                               + sum(CASE WHEN n.metadata->>'visibility'
                                               IN ('public_aggregated', 'internal_only')
                                          THEN n.amount ELSE 0 END) OVER wc
                               AS expected_withheld
                      FROM new_entries n
                      LEFT JOIN ledger_heads h ON h.organisation_id = n.organisation_id
                    WINDOW w AS (PARTITION BY n.organisation_id ORDER BY n.sequence),
                           wc AS (PARTITION BY n.organisation_id, n.currency
                                  ORDER BY n.sequence)) o) c
     ORDER BY (c.problem IS NULL), c.organisation_id, c.sequence
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.problem IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entry % (organisation %, sequence %) refused: %',
            r.entry_id, r.organisation_id, r.sequence, r.problem
            USING ERRCODE = 'AL002';
    END IF;

    -- A fund named by an entry belongs to the entry's organisation.
    SELECT used.entry_id, used.fund INTO bad
      FROM (SELECT DISTINCT ON (organisation_id, metadata->>'fund_id')
                   entry_id, organisation_id, metadata->>'fund_id' AS fund
              FROM new_entries WHERE metadata ? 'fund_id') used
     WHERE NOT EXISTS (SELECT 1 FROM funds f
                        WHERE f.id = used.fund AND f.organisation_id = used.organisation_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % refused: fund % does not belong to its organisation',
            bad.entry_id, bad.fund USING ERRCODE = 'AL002';
    END IF;

    -- Links to earlier entries must point inside the same ledger, at the right kind.
    IF r.has_reversals THEN
        SELECT n.entry_id, n.metadata->>'reverses' AS target INTO bad
          FROM new_entries n
          LEFT JOIN ledger_entries t
            ON t.entry_id = n.metadata->>'reverses' AND t.organisation_id = n.organisation_id
         WHERE n.metadata ? 'reverses'
           AND (t.entry_id IS NULL OR t.sequence >= n.sequence OR t.amount <> -n.amount
                OR t.currency <> n.currency)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger entry % refused: it does not exactly reverse entry %',
                bad.entry_id, bad.target USING ERRCODE = 'AL002';
        END IF;
    END IF;
    IF r.has_recategorizations THEN
        PERFORM 1
          FROM new_entries n
          LEFT JOIN ledger_entries t
            ON t.entry_id = n.metadata->>'refers_to' AND t.organisation_id = n.organisation_id
         WHERE n.type = 'expense_recategorized'
           AND (t.entry_id IS NULL OR t.type <> 'expense' OR t.sequence >= n.sequence
                OR t.currency <> n.currency);
        IF FOUND THEN
            RAISE EXCEPTION 'an expense_recategorized entry refused: it must refer to an'
                ' earlier expense of the same ledger' USING ERRCODE = 'AL002';
        END IF;
    END IF;

    -- The new balance of each currency is the balance_after of its last entry,
    -- which the check above has just proved right.
    UPDATE ledger_heads h
       SET sequence = last.sequence, entry_hash = last.entry_hash,
           timestamp = last.timestamp, balances = h.balances || moved.balances,
           withheld = h.withheld || moved.withheld,
           updated_at = now()
      FROM (SELECT DISTINCT ON (organisation_id) organisation_id, sequence, entry_hash, timestamp
              FROM new_entries ORDER BY organisation_id, sequence DESC) last
      JOIN (SELECT organisation_id, jsonb_object_agg(currency, balance_after) AS balances,
                   jsonb_object_agg(currency, withheld_after) AS withheld
              FROM (SELECT DISTINCT ON (organisation_id, currency)
                           organisation_id, currency, balance_after, withheld_after
                      FROM new_entries ORDER BY organisation_id, currency, sequence DESC) b
             GROUP BY organisation_id) moved ON moved.organisation_id = last.organisation_id
     WHERE h.organisation_id = last.organisation_id;

    INSERT INTO ledger_totals AS t
           (organisation_id, currency, entry_type, category, fund_id, visibility,
            entry_count, amount)
    SELECT organisation_id, currency, type,
           COALESCE(metadata->>'category', ''), COALESCE(metadata->>'fund_id', ''),
           COALESCE(metadata->>'visibility', 'public_full'), count(*), sum(amount)
      FROM new_entries
     GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (organisation_id, currency, entry_type, category, fund_id, visibility)
    DO UPDATE SET entry_count = t.entry_count + EXCLUDED.entry_count,
                  amount = t.amount + EXCLUDED.amount;

    -- A recategorization moves the expense (amount and count) between categories.
    IF r.has_recategorizations THEN
        INSERT INTO ledger_totals AS t
               (organisation_id, currency, entry_type, category, fund_id, visibility,
                entry_count, amount)
        SELECT e.organisation_id, e.currency, e.type, m.category,
               COALESCE(e.metadata->>'fund_id', ''),
               COALESCE(e.metadata->>'visibility', 'public_full'),
               sum(m.count_delta), sum(m.amount_delta)
          FROM new_entries x
          JOIN ledger_entries e
            ON e.entry_id = x.metadata->>'refers_to' AND e.organisation_id = x.organisation_id
         CROSS JOIN LATERAL (VALUES (x.metadata->>'old_category', -1, -e.amount),
                                    (x.metadata->>'new_category', 1, e.amount))
               AS m(category, count_delta, amount_delta)
         WHERE x.type = 'expense_recategorized'
         GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (organisation_id, currency, entry_type, category, fund_id, visibility)
        DO UPDATE SET entry_count = t.entry_count + EXCLUDED.entry_count,
                      amount = t.amount + EXCLUDED.amount;
    END IF;

    RETURN NULL;
END;
$$;
"""

TRIGGERS = """
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_accept AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_accept_entries();

CREATE TRIGGER organisations_open_ledger AFTER INSERT ON organisations
    FOR EACH ROW EXECUTE FUNCTION ledger_open_head();
CREATE TRIGGER organisations_keep_ledgers BEFORE DELETE ON organisations
    FOR EACH ROW EXECUTE FUNCTION ledger_keep_entries();

CREATE TRIGGER ledger_heads_guard BEFORE INSERT OR UPDATE OR DELETE ON ledger_heads
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_derived();
CREATE TRIGGER ledger_totals_guard BEFORE INSERT OR UPDATE OR DELETE ON ledger_totals
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_derived();
CREATE TRIGGER ledger_heads_no_truncate BEFORE TRUNCATE ON ledger_heads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_totals_no_truncate BEFORE TRUNCATE ON ledger_totals
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""


def downgrade() -> None:
    # Dropping the tables drops their triggers; the functions go after them.
    for table in ("ledger_totals", "ledger_heads", "ledger_entries",
                  "memberships", "users", "funds", "organisations"):
        op.drop_table(table)
    for function in ("ledger_accept_entries", "ledger_open_head", "ledger_keep_entries",
                     "ledger_guard_derived", "ledger_refuse_change"):
        op.execute(f"DROP FUNCTION {function}()")
