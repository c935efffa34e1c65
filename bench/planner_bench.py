"""Planner benchmark: what each statement of a transition's planning costs (issue 16, item 3).

Run:  .venv/bin/python bench/planner_bench.py            (a few minutes; loopback only)
      --plan-alerts N (the unplanned set, default 50000), --batches 1,16,1000, --events N (raise_event
      calls, default 1000), --rounds N, --silence (one silence in force, matching no bench alert),
      --explain (EXPLAIN (ANALYZE, BUFFERS) of each planner statement of one batch of each size)

Data: delivery_bench's set (1,000 tenants, one webhook destination each; 50,000 unplanned warn
RUNS_THRESHOLD alerts spread over them, planned by `plan_notifications`), default config
(the default inhibition rule on, grouping as shipped), on a private PostgreSQL cluster in a
temporary directory. Timing: around each statement's execute (SQLAlchemy cursor events), named by
its engine/sql block; wall time of the call and the process's CPU time beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import delivery_bench  # noqa: E402
from bench.delivery_bench import INSERT_ALERTS, cluster_cpu_seconds, prepare_database  # noqa: E402


@contextlib.contextmanager
def bench_cluster(data_dir: Path):
    """delivery_bench's cluster, with pg_stat_statements (planning counted apart)."""
    import psycopg

    with delivery_bench.bench_cluster(data_dir, settings={
            "shared_buffers": "256MB", "max_connections": "100",
            "shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_planning": "on"}) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        yield url


def server_statements(url: str, timer: "StatementTimer", reset: bool = True) -> dict:
    """pg_stat_statements since the last reset: per engine statement, calls, plans, mean plan and
    execution time (ms), read on the server (no client or commit time in it)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT query, calls, plans, total_plan_time, total_exec_time FROM pg_stat_statements"
                            " WHERE calls > 0 ORDER BY total_exec_time + total_plan_time DESC").fetchall()
        if reset:
            conn.execute("SELECT pg_stat_statements_reset()")
    found = {}
    for text, calls, plans, plan_ms, exec_ms in rows:
        name = timer.name_of(text)
        if name.startswith("other:"):
            continue
        found[name] = dict(calls=calls, plans=plans, plan_ms=round(plan_ms / calls, 3),
                           exec_ms=round(exec_ms / calls, 3))
    return found


class StatementTimer:
    """Wall time per named statement, from SQLAlchemy's cursor events."""

    def __init__(self, engine, explain: bool = False):
        from sqlalchemy import event

        from engine.queries import load

        self.names = {}
        for module in ("planner", "noise", "alerts", "silences"):
            for name, clause in load(module).items():
                self.names[clause.text.strip()] = f"{module}.{name}"
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.explain = explain
        self.plans: dict[str, str] = {}
        self.label = ""   # the scenario, for the plans' keys
        self._started = {}
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    @staticmethod
    def _head(statement: str) -> str:
        # Binds are :name in the file, %(name)s for the driver, $n on the server (comments too).
        return re.sub(r"%\(\w+\)s|:\w+|\$\d+", "?", statement.strip().splitlines()[0])[:120]

    def name_of(self, statement: str) -> str:
        head = self._head(statement)
        for text, name in self.names.items():
            if self._head(text) == head:
                return name
        return "other:" + head[:40]

    def before(self, conn, cursor, statement, parameters, context, executemany):
        name = self.name_of(statement)
        if self.explain and name.startswith(("planner.plan_", "noise.", "alerts.raise_events")) \
                and f"{self.label} {name}" not in self.plans:
            cursor.execute("SAVEPOINT bench_explain")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            self.plans[f"{self.label} {name}"] = "\n".join(r[0] for r in cursor.fetchall())
            cursor.execute("ROLLBACK TO SAVEPOINT bench_explain")
        self._started[id(cursor)] = (name, time.perf_counter())

    def after(self, conn, cursor, statement, parameters, context, executemany):
        name, start = self._started.pop(id(cursor))
        self.totals[name] += time.perf_counter() - start
        self.counts[name] += 1

    def reset(self):
        self.totals.clear()
        self.counts.clear()

    def report(self, per: int) -> dict:
        return {name: dict(ms=round(self.totals[name] * 1000, 3), calls=self.counts[name],
                           us_per_row=round(self.totals[name] / per * 1e6, 2))
                for name in sorted(self.totals, key=lambda n: -self.totals[n])}


def tenant(i: int) -> str:
    return f"00000000-0000-4000-8000-{1 + i % 1000:012d}"


def add_silence(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # In force, matching no bench alert (a tenant the bench never uses): every statement takes
        # the silence path, no outcome changes.
        conn.execute("INSERT INTO notify.silences (matchers, starts_at, ends_at, created_at, created_by, comment)"
                     " VALUES (%s, now() - interval '1 hour', now() + interval '1 day', now(), 'bench', '')",
                     (json.dumps([{"name": "tenant", "value": str(uuid.UUID(int=7)), "isRegex": False,
                                   "isEqual": True}]),))


def run(args) -> dict:
    import psycopg

    from engine.alerts import apply_events, event_change, raise_event
    from engine.app import App
    from engine.config import Config, DatabasesConfig
    from engine.planner import plan_notifications, plan_transitions_of_this_transaction

    if os.environ.get("BENCH_PG_OPTIONS"):   # experiments: extra session settings (-c name=value)
        import engine.db

        engine.db.SESSION_OPTIONS += " " + os.environ["BENCH_PG_OPTIONS"]
    workdir = Path(tempfile.mkdtemp(prefix="ne-planner-bench-"))
    workdir.chmod(0o755)
    results: dict = {}
    try:
        with bench_cluster(workdir / "pg") as url:
            prepare_database(url, 0, "http://127.0.0.1:9/hook", with_alerts=False)
            if args.background:
                # A table that has lived: alerts planned a day ago, their notifications sent.
                with psycopg.connect(url, autocommit=True) as raw:
                    raw.execute(INSERT_ALERTS.replace("'runs:80pct", "'bg:runs:80pct"),
                                dict(tenants=1000, now=datetime.now(timezone.utc) - timedelta(days=1), planned_seq=0,
                                     first=1, last=args.background))
                config = Config(databases=DatabasesConfig(url, url, url, url), source="<bench>")
                with App(config) as app, app.databases.begin("notify") as conn:
                    plan_notifications(conn, app.config, app.clock.now())
                with psycopg.connect(url, autocommit=True) as raw:
                    raw.execute("UPDATE notify.notifications SET status = 'sent', sent_at = now(), send_attempts = 1"
                                " WHERE status = 'queued'")
                    # Resolved since (most of a table's alerts are): no reminders due, no inhibitors.
                    raw.execute("UPDATE notify.alerts SET status = 'resolved', resolved_at = now(),"
                                " transition = 'resolved', transition_seq = 2, planned_seq = 2")
                    raw.execute("VACUUM ANALYZE")
            if args.silence:
                add_silence(url)
            config = Config(databases=DatabasesConfig(url, url, url, url), source="<bench>")
            with App(config) as app:
                engine = app.databases.engine("notify")
                timer = StatementTimer(engine, explain=args.explain)
                # Warm: connections, prepared plans, caches.
                for i in range(30):
                    raise_event(app, tenant(i), "PAYMENT_FAILED", context={"warm": i})
                serial = 0

                def batch(size: int) -> list:
                    nonlocal serial
                    serial += 1
                    return [event_change(tenant(serial * 7 + j), "PAYMENT_FAILED", dedup_key=f"b{serial}-{j}",
                                         context={"invoice": f"inv-{serial}-{j}"}) for j in range(size)]

                for size in args.batch_sizes:
                    repeats = max(3, min(200, 2000 // size))
                    timer.reset()
                    server_statements(url, timer)
                    timer.label = f"batch {size}"
                    walls, cpus = [], []
                    server_cpu = cluster_cpu_seconds(workdir / "pg")
                    for _ in range(repeats):
                        changes = batch(size)
                        cpu, wall = time.process_time(), time.perf_counter()
                        apply_events(app, changes)
                        walls.append(time.perf_counter() - wall)
                        cpus.append(time.process_time() - cpu)
                    server_cpu = cluster_cpu_seconds(workdir / "pg") - server_cpu
                    results[f"apply_events x{size}"] = dict(
                        repeats=repeats, server_cpu_ms_mean=round(server_cpu / repeats * 1000, 3),
                        client_cpu_ms_mean=round(sum(cpus) / repeats * 1000, 3), wall_ms_median=round(statistics.median(walls) * 1000, 3),
                        cpu_ms_median=round(statistics.median(cpus) * 1000, 3),
                        statements_per_batch={k: round(v["ms"] / repeats, 3)
                                              for k, v in timer.report(repeats).items()},
                        server=server_statements(url, timer))

                latencies = []
                timer.reset()
                server_statements(url, timer)
                timer.label = "raise_event"
                server_cpu, client_cpu = cluster_cpu_seconds(workdir / "pg"), time.process_time()
                for i in range(args.events):
                    start = time.perf_counter()
                    raise_event(app, tenant(i), "PAYMENT_FAILED", dedup_key=f"e{i}", context={"invoice": f"e{i}"})
                    latencies.append(time.perf_counter() - start)
                latencies.sort()
                server_cpu = cluster_cpu_seconds(workdir / "pg") - server_cpu
                client_cpu = time.process_time() - client_cpu
                if latencies:
                    results["raise_event"] = dict(
                        n=len(latencies), server_cpu_ms_mean=round(server_cpu / len(latencies) * 1000, 3),
                        client_cpu_ms_mean=round(client_cpu / len(latencies) * 1000, 3), p50_ms=round(latencies[len(latencies) // 2] * 1000, 3),
                        p99_ms=round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 3),
                        statements_per_call={k: round(v["ms"] / args.events, 3)
                                             for k, v in timer.report(args.events).items()},
                        server=server_statements(url, timer))

                # delivery_bench's same-work ingest: 1,000 quota warn alerts a transaction, planned in it.
                timer.reset()
                server_statements(url, timer)
                timer.label = "ingest quota x1000"
                walls, cpus = [], []
                server_cpu = cluster_cpu_seconds(workdir / "pg")
                for first in range(1, 5001, 1000):
                    cpu, wall = time.process_time(), time.perf_counter()
                    with app.databases.begin("notify") as conn:
                        now = app.clock.now()
                        conn.exec_driver_sql(INSERT_ALERTS.replace("'runs:80pct", "'ingest:runs:80pct"),
                                             dict(tenants=1000, now=now, planned_seq=1, first=first, last=first + 999))
                        plan_transitions_of_this_transaction(conn, app.config, now)
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                server_cpu = cluster_cpu_seconds(workdir / "pg") - server_cpu
                results["ingest quota x1000"] = dict(
                    repeats=5, server_cpu_ms_mean=round(server_cpu / 5 * 1000, 3),
                    client_cpu_ms_mean=round(sum(cpus) / 5 * 1000, 3),
                    wall_ms_median=round(statistics.median(walls) * 1000, 3), server=server_statements(url, timer))

                if args.plan_alerts:
                    with psycopg.connect(url, autocommit=True) as raw:
                        raw.execute(INSERT_ALERTS, dict(tenants=1000, now=app.clock.now(), planned_seq=0, first=1,
                                                        last=args.plan_alerts))
                        raw.execute("VACUUM ANALYZE notify.alerts")
                        raw.execute("VACUUM ANALYZE notify.notifications")
                    timer.reset()
                    server_statements(url, timer)
                    timer.label = "plan 50k"
                    server_cpu = cluster_cpu_seconds(workdir / "pg")
                    cpu, wall = time.process_time(), time.perf_counter()
                    with app.databases.begin("notify") as conn:
                        planned = plan_notifications(conn, app.config, app.clock.now())
                    results["plan 50k"] = dict(planned=planned, wall_s=round(time.perf_counter() - wall, 3),
                                               server_cpu_s=round(cluster_cpu_seconds(workdir / "pg") - server_cpu, 3),
                                               statements=timer.report(max(1, planned)),
                                               server=server_statements(url, timer))
                if args.explain:
                    results["plans"] = timer.plans
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan-alerts", type=int, default=50_000)
    parser.add_argument("--batches", default="1,16,1000")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--silence", action="store_true")
    parser.add_argument("--background", type=int, default=50_000,
                        help="alerts planned a day ago, present throughout (default 50000)")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batches.split(",") if b]
    load = os.getloadavg()[0]
    started = time.strftime("%H:%M:%S", time.gmtime())
    results = run(args)
    results["meta"] = dict(started_utc=started, load=round(load, 2), silence=args.silence, tree=str(ROOT))
    if args.json:
        print(json.dumps(results))
        return 0
    plans = results.pop("plans", {})
    for key, value in results.items():
        print(key, json.dumps(value, indent=1))
    for name, plan in plans.items():
        print(f"\n==== {name}\n{plan}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
