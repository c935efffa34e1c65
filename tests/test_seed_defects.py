"""The seven defects DESIGN.md found in the seed's DDL: each one reproduced on the seed's own text
(so the test would fail if our schema were the seed's), then shown fixed in ours."""

from datetime import datetime, timezone
import uuid

import psycopg
import pytest

from tests.seed import seed_section

SEED_ADMIN = seed_section("admin_log")
SEED_NOTIFY = seed_section("notify")


def _seed_statement(section_sql: str, starts_with: str) -> str:
    """One statement of the seed, verbatim (statements end with ';' at the end of a line)."""
    start = section_sql.index(starts_with)
    end = section_sql.index(");\n", start) + 2
    return section_sql[start:end]


def _fails_with(conn, sql: str) -> str:
    with pytest.raises(psycopg.Error) as info:
        with conn.transaction():
            conn.execute(sql)
    return str(info.value)


@pytest.fixture
def conn(databases):
    with databases.connect_raw("admin_log", autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS seed_scratch")
        yield c
        # The seed's own helper may have put a partition in public: it goes with its parent.
        c.execute("DROP SCHEMA seed_scratch CASCADE")


def test_defect1_seed_generated_date_is_not_immutable(conn):
    sql = ("CREATE TABLE seed_scratch.t (occurred_at timestamptz NOT NULL DEFAULT now(), "
           "occurred_on date GENERATED ALWAYS AS (occurred_at::date) STORED)")
    assert "generation expression is not immutable" in _fails_with(conn, sql)


def test_defect1_fixed_occurred_on_is_the_utc_date_whatever_the_session_time_zone(conn):
    conn.execute("SET TimeZone = 'Asia/Tokyo'")  # 23:30 UTC is already the next day in Tokyo
    row = conn.execute(
        "INSERT INTO admin_log.admin_events (occurred_at, action, target_type) "
        "VALUES ('2026-11-30 23:30:00+00', 'X', 'T') RETURNING occurred_on").fetchone()
    assert row[0].isoformat() == "2026-11-30"


def test_defect2_seed_partitions_by_a_generated_column(conn):
    sql = ("CREATE TABLE seed_scratch.t (occurred_at timestamptz NOT NULL, "
           "occurred_on date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED) "
           "PARTITION BY RANGE (occurred_on)")
    assert "cannot use generated column in partition key" in _fails_with(conn, sql)


def test_defect2_fixed_every_partitioned_table_is_keyed_by_its_timestamptz(conn):
    keys = dict(conn.execute(
        "SELECT p.partrelid::regclass::text, a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "JOIN pg_class c ON c.oid = p.partrelid WHERE NOT c.relispartition").fetchall())
    assert len(keys) == 9   # the seed's eight log tables and the attempt ledger (notify 0009)
    assert set(keys.values()) == {"occurred_at", "captured_at", "started_at"}
    assert keys.get("notify.quota_snapshots", keys.get("quota_snapshots")) == "captured_at"


def test_defect3_seed_primary_key_lacks_the_partition_column(conn):
    sql = ("CREATE TABLE seed_scratch.t (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
           "occurred_at timestamptz NOT NULL) PARTITION BY RANGE (occurred_at)")
    assert "must include all partitioning columns" in _fails_with(conn, sql)


def test_defect3_fixed_primary_keys_carry_the_time_column(conn):
    keys = conn.execute(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'p' AND conrelid IN (SELECT partrelid FROM pg_partitioned_table)").fetchall()
    assert len(keys) == 8   # the seed's eight log tables; the attempt ledger has a plain index (notify 0021)
    for table, definition in keys:
        assert any(column in definition for column in ("occurred_at", "captured_at", "started_at")), table


def test_defect4_seed_window_column_is_a_syntax_error(conn):
    sql = _seed_statement(SEED_NOTIFY, "CREATE TABLE IF NOT EXISTS notify.quota_snapshots")
    sql = sql.replace("notify.quota_snapshots", "seed_scratch.quota_snapshots")
    assert 'syntax error at or near "window"' in _fails_with(conn, sql)


def test_defect4_fixed_window_column_keeps_its_name_quoted(conn):
    row = conn.execute(
        "INSERT INTO notify.quota_snapshots (tenant_id, metric, value_int) "
        "VALUES (gen_random_uuid(), 'runs_used', 5) RETURNING \"window\"").fetchone()
    assert row[0] == "monthly"


def test_defect5_seed_unique_dedupe_key_on_a_partitioned_alerts_table(conn):
    sql = ("CREATE TABLE seed_scratch.alerts (id uuid NOT NULL, created_at timestamptz NOT NULL, "
           "tenant_id uuid NOT NULL, dedupe_key text NOT NULL, UNIQUE (tenant_id, dedupe_key)) "
           "PARTITION BY RANGE (created_at)")
    assert "must include all partitioning columns" in _fails_with(conn, sql)


def test_defect5_fixed_upsert_on_tenant_and_dedupe_key_updates_one_alert(conn):
    tenant = uuid.uuid4()
    upsert = ("INSERT INTO notify.alerts (tenant_id, kind, dedupe_key, last_seen_at) VALUES (%s, 'RUNS_THRESHOLD', "
              "'runs:80pct:2026-11', %s) ON CONFLICT (tenant_id, dedupe_key) DO UPDATE SET "
              "last_seen_at = EXCLUDED.last_seen_at RETURNING id")
    first = conn.execute(upsert, (tenant, datetime(2026, 11, 1, tzinfo=timezone.utc))).fetchone()[0]
    second = conn.execute(upsert, (tenant, datetime(2026, 11, 2, tzinfo=timezone.utc))).fetchone()[0]
    assert first == second
    assert conn.execute("SELECT count(*), max(last_seen_at) FROM notify.alerts WHERE tenant_id = %s",
                        (tenant,)).fetchone() == (1, datetime(2026, 11, 2, tzinfo=timezone.utc))


def test_defect6_seed_foreign_key_to_a_composite_key_fails(conn):
    conn.execute("CREATE TABLE seed_scratch.alerts (id uuid NOT NULL, created_at timestamptz NOT NULL, "
                 "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)")
    sql = "CREATE TABLE seed_scratch.notifications (alert_id uuid NOT NULL REFERENCES seed_scratch.alerts(id))"
    assert "no unique constraint matching given keys" in _fails_with(conn, sql)


def test_defect6_fixed_notifications_reference_alerts_and_cascade(conn):
    tenant = uuid.uuid4()
    alert_id = conn.execute("INSERT INTO notify.alerts (tenant_id, kind, dedupe_key) VALUES "
                            "(%s, 'WALLET_LOW', 'wallet:low') RETURNING id", (tenant,)).fetchone()[0]
    conn.execute("INSERT INTO notify.notifications (tenant_id, alert_id, channel) VALUES (%s, %s, 'email')",
                 (tenant, alert_id))
    orphan = _fails_with(conn, "INSERT INTO notify.notifications (tenant_id, alert_id, channel) "
                               f"VALUES ('{tenant}', gen_random_uuid(), 'email')")
    assert "violates foreign key constraint" in orphan
    conn.execute("DELETE FROM notify.alerts WHERE tenant_id = %s", (tenant,))
    assert conn.execute("SELECT count(*) FROM notify.notifications WHERE tenant_id = %s",
                        (tenant,)).fetchone()[0] == 0


def test_defect7_seed_helper_puts_the_partition_in_public_under_a_dotted_name(conn):
    start = SEED_ADMIN.index("CREATE OR REPLACE FUNCTION admin_log.create_month_partition")
    helper = SEED_ADMIN[start: SEED_ADMIN.index("END$$;", start) + len("END$$;")]
    conn.execute(helper.replace("admin_log.create_month_partition", "seed_scratch.create_month_partition"))
    conn.execute("CREATE TABLE seed_scratch.events (occurred_on date NOT NULL) PARTITION BY RANGE (occurred_on)")
    conn.execute("SELECT seed_scratch.create_month_partition('seed_scratch.events', '202511')")
    where = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE c.relname LIKE '%%events_202511'").fetchall()
    assert where == [("public", "seed_scratch.events_202511")]


def test_defect7_fixed_helper_creates_the_month_in_the_tables_schema_with_utc_bounds(conn):
    conn.execute("SET TimeZone = 'America/New_York'")
    conn.execute("SELECT admin_log.create_month_partition('admin_log.admin_events', '202511')")
    lower, upper = conn.execute(
        "SELECT lower_bound, upper_bound FROM partitions.list(ARRAY['admin_log']) "
        "WHERE partition = 'admin_log.admin_events_202511'").fetchone()
    assert lower == datetime(2025, 11, 1, tzinfo=timezone.utc)
    assert upper == datetime(2025, 12, 1, tzinfo=timezone.utc)
