"""Snapshot ingest and detection at 100,000 tenants x 5 metrics (issue 3).

    .venv/bin/python bench/detect_bench.py [--tenants N]

Starts a private PostgreSQL cluster in a temporary directory (durable settings: fsync on), applies
the schema, then measures, in one run:
  1. ingest: the same 500,000 snapshot rows through engine.collectors.push.record_snapshots
     (validation + COPY) and through a plain psycopg COPY; the better of two rounds of each;
  2. the first detection pass: opens alerts for 30 % of the values (each over-limit quota value
     crosses the 80 % and 100 % levels, each over-floor wallet one WALLET_LOW);
  3. a steady-state pass: nothing changed since (the incremental path);
  4. a forced full pass over every latest value where nothing changed (the upsert's WHERE must
     skip all of them): the anchor's 4.9 s case;
  5. with --repeat-first-pass N, the first pass N more times on emptied alerts (for tuning).
Loopback only (a Unix socket); about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from engine.app import App  # noqa: E402
from engine.clock import ManualClock  # noqa: E402
from engine.collectors.push import record_snapshots  # noqa: E402
from engine.config import Config, DatabasesConfig, PlanConfig  # noqa: E402
from engine.db import Databases  # noqa: E402
from engine.detect import run_detection  # noqa: E402
from engine.embedded import EmbeddedCluster, find_bin_dir  # noqa: E402
from engine.migrations import apply_migrations  # noqa: E402

LIMITS = {"runs_used": 1000, "storage_gb": 10, "records_count": 100000, "api_calls": 1000000}
FLOOR = 500
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def make_rows(tenants: int) -> list[dict]:
    rows = []
    for i in range(tenants):
        tenant = str(uuid.UUID(int=(0x6F1C2D3E << 96) | i))
        firing = i % 10 < 3  # 30 % of the tenants are over every limit
        for metric, limit in LIMITS.items():
            value = limit * 6 // 5 if firing else limit // 2
            rows.append({"tenant_id": tenant, "base_id": None, "metric": metric,
                         "value": value if metric != "storage_gb" else f"{value}.5"})
        rows.append({"tenant_id": tenant, "base_id": None, "metric": "wallet_balance_cents",
                     "value": FLOOR // 2 if firing else FLOOR * 10})
    return rows


def plain_copy(url: str, rows: list[dict]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy('COPY notify.quota_snapshots (captured_at, tenant_id, base_id, metric, value_int, '
                      'value_numeric, "window") FROM STDIN') as copy:
            for r in rows:
                if r["metric"] == "storage_gb":
                    copy.write_row((NOW, r["tenant_id"], r["base_id"], r["metric"], None, r["value"], "monthly"))
                else:
                    copy.write_row((NOW, r["tenant_id"], r["base_id"], r["metric"], r["value"], None, "monthly"))


# The anchor's method (ANCHORS.md), on the same snapshots in the same run: one statement from the
# snapshot log straight into an alerts table of the same shape, with an unconditional DO UPDATE.
REFERENCE_UPSERT = """
INSERT INTO bench.alerts_reference AS a (tenant_id, base_id, kind, severity, dedupe_key, status,
                                         first_seen_at, last_seen_at, context)
SELECT s.tenant_id, s.base_id, s.kind, CAST(s.severity AS public.sev_level),
       s.key || ':' || coalesce(s.base_id::text, '-'), 'open', s.captured_at, s.captured_at,
       jsonb_build_object('metric', s.metric, 'value', s.value, 'limit', s.limit_value)
FROM (
  SELECT DISTINCT ON (q.tenant_id, q.metric, q.base_id, lv.pct)
         q.tenant_id, q.base_id, q.metric, coalesce(q.value_int::numeric, q.value_numeric) AS value,
         q.captured_at, l.kind, l.limit_value, lv.severity,
         l.prefix || ':' || lv.pct || 'pct:2026-11:base' AS key,
         CASE WHEN l.kind = 'WALLET_LOW' THEN coalesce(q.value_int::numeric, q.value_numeric) < l.limit_value
              ELSE coalesce(q.value_int::numeric, q.value_numeric) >= l.limit_value * lv.pct / 100 END AS fires
  FROM notify.quota_snapshots q
  JOIN (VALUES ('runs_used', 'RUNS_THRESHOLD', 'runs', 1000), ('storage_gb', 'STORAGE_THRESHOLD', 'storage', 10),
               ('records_count', 'RECORDS_THRESHOLD', 'records', 100000),
               ('api_calls', 'API_CALLS_THRESHOLD', 'api_calls', 1000000),
               ('wallet_balance_cents', 'WALLET_LOW', 'wallet', 500)) AS l (metric, kind, prefix, limit_value)
    ON l.metric = q.metric
  JOIN (VALUES (80, 'warn'), (100, 'critical')) AS lv (pct, severity)
    ON l.kind <> 'WALLET_LOW' OR lv.pct = 80
  ORDER BY q.tenant_id, q.metric, q.base_id, lv.pct, q.captured_at DESC
) s
WHERE s.fires
ON CONFLICT (tenant_id, dedupe_key) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at, context = EXCLUDED.context
"""


def checkpoint(url: str) -> None:
    """Before each timed step: the previous step's dirty pages are written now, not billed to the
    next step by a checkpoint that happens to fall in it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def reference_upsert(url: str) -> float:
    checkpoint(url)
    with psycopg.connect(url) as conn:
        conn.execute("SET jit = off")
        conn.execute("SET work_mem = '64MB'")
        started = time.perf_counter()
        conn.execute(REFERENCE_UPSERT)
        conn.commit()
        return time.perf_counter() - started


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE notify.quota_snapshots")
        conn.execute("VACUUM ANALYZE notify.quota_snapshots")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--repeat-first-pass", type=int, default=0, metavar="N",
                        help="afterwards, empty the alerts and run the first pass N more times (for tuning)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ne-bench-"))
    root.chmod(0o755)
    run_as = "postgres" if os.geteuid() == 0 else None
    cluster = EmbeddedCluster(root / "pg", find_bin_dir(os.environ.get("NOTIFY_PG_BIN")), run_as,
                              settings={"shared_buffers": "512MB", "max_wal_size": "4GB"})
    cluster.acquire()
    try:
        url = cluster.url("notify")
        urls = {s: url for s in ("admin_log", "portal_log", "data_activity", "notify")}
        databases = Databases(urls)
        apply_migrations(databases)
        databases.dispose()
        config = Config(databases=DatabasesConfig(**urls),
                        plans={"default": PlanConfig(**LIMITS, wallet_floor_cents=FLOOR)})
        rows = make_rows(args.tenants)
        print(f"{len(rows):,} snapshot rows ({args.tenants:,} tenants x 5 metrics); load average "
              f"{os.getloadavg()[0]:.2f} (the pass needs both cores: other work on the machine slows it "
              f"more than the one-statement reference)")

        with App(config, ManualClock(NOW)) as app:
            plain, engine_path = [], []
            for _ in range(3):
                truncate(url)
                started = time.perf_counter()
                plain_copy(url, rows)
                plain.append(len(rows) / (time.perf_counter() - started))
                truncate(url)
                started = time.perf_counter()
                result = record_snapshots(app, rows, source="bench")
                engine_path.append(len(rows) / (time.perf_counter() - started))
                assert result.written == len(rows) and not result.rejected, result.rejected[:3]
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE notify.quota_snapshots")
                conn.execute("CREATE SCHEMA bench")
                conn.execute("CREATE TABLE bench.alerts_reference (LIKE notify.alerts INCLUDING ALL)")
            ingest, reference = max(engine_path), max(plain)
            print(f"ingest (validate + COPY): {ingest:,.0f} rows/s; plain COPY of the same rows: "
                  f"{reference:,.0f} rows/s; ratio {ingest / reference:.2f} (goal >= 0.8)")

            reference_first = reference_upsert(url)
            reference_again = reference_upsert(url)
            with psycopg.connect(url) as conn:
                reference_alerts = conn.execute("SELECT count(*) FROM bench.alerts_reference").fetchone()[0]
            print(f"reference (the anchor's one-statement upsert, same data, same table shape): first "
                  f"{reference_first:.2f} s, again {reference_again:.2f} s, {reference_alerts:,} alerts")

            checkpoint(url)
            started = time.perf_counter()
            first = run_detection(app)
            first_s = time.perf_counter() - started
            with psycopg.connect(url) as conn:
                alerts = conn.execute("SELECT count(*) FROM notify.alerts WHERE status = 'open'").fetchone()[0]
                values = conn.execute("SELECT count(DISTINCT (tenant_id, kind)) FROM notify.alerts").fetchone()[0]
            print(f"first detection pass: {first_s:.2f} s (goal < 5 s); {alerts:,} alerts opened for "
                  f"{values:,} of {len(rows):,} values ({values / len(rows):.0%}); {first.folded:,} values folded; "
                  f"ratio to the reference's first run {first_s / reference_first:.2f}")
            print("  steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in first.seconds.items()))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE notify.alerts")
                conn.execute("VACUUM ANALYZE notify.latest_snapshots")

            app.clock.current = NOW.replace(minute=1)
            checkpoint(url)
            started = time.perf_counter()
            steady = run_detection(app)
            steady_s = time.perf_counter() - started
            print(f"steady-state pass (nothing new): {steady_s:.3f} s (goal < 1 s); "
                  f"{steady.folded} values folded, {sum(sum(c.values()) for c in steady.by_kind.values())} alerts written; "
                  f"ratio to the reference run again {steady_s / reference_again:.3f}")

            checkpoint(url)
            started = time.perf_counter()
            full = run_detection(app, full_pass=True)
            full_s = time.perf_counter() - started
            print(f"full re-evaluation, nothing changed: {full_s:.2f} s; "
                  f"{sum(sum(c.values()) for c in full.by_kind.values())} alerts written "
                  f"(the reference's unconditional upsert, run again: {reference_again:.2f} s)")
            print("  steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in full.seconds.items()))
            print(f"load average at the end: {os.getloadavg()[0]:.2f}")
            for _ in range(args.repeat_first_pass):
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("TRUNCATE notify.alerts, notify.latest_snapshots, notify.detection_state CASCADE")
                app.clock.current = NOW
                checkpoint(url)
                started = time.perf_counter()
                again = run_detection(app)
                print(f"first pass again: {time.perf_counter() - started:.2f} s; steps: "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in again.seconds.items()))
    finally:
        cluster.release()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
