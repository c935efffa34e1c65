"""What an on-call person checks first (`notifyctl status`): the queue, recent failures,
partition coverage, and the last run of every job. Read-only, a handful of small queries."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from engine.app import App
from engine.clock import add_months, month_start
from engine.config import SECTIONS
from engine.partitions import list_partitions
from engine.queries import query


def partition_coverage(app: App, now: datetime) -> list[dict[str, Any]]:
    """Per partitioned table: the last premade month, how far ahead that is, rows in its DEFAULT."""
    current = month_start(now)
    by_parent: dict[str, list] = defaultdict(list)
    for info in list_partitions(app.databases):
        by_parent[info.parent].append(info)
    coverage = []
    for parent, infos in sorted(by_parent.items()):
        schema = parent.split(".", 1)[0].strip('"')
        # Coverage is the run of consecutive months from the current one: a stray far-future
        # month (made for rows that arrived early) says nothing about the months in between.
        present = {month_start(p.lower_bound) for p in infos if not p.is_default and p.lower_bound is not None}
        ahead, last = None, None
        while add_months(current, 0 if ahead is None else ahead + 1) in present:
            ahead = 0 if ahead is None else ahead + 1
            last = add_months(current, ahead)
        default = next((p for p in infos if p.is_default), None)
        default_rows = 0
        if default is not None:
            with app.databases.begin(schema if schema in SECTIONS else "notify") as conn:
                # The partition's name comes quoted from PostgreSQL (format('%I.%I')).
                default_rows = conn.execute(text(f"SELECT count(*) FROM {default.partition}")).scalar()
        coverage.append({
            "table": parent.replace('"', ""),
            "last_month": f"{last:%Y-%m}" if last is not None else None,
            "months_ahead": ahead,
            "default_rows": default_rows,
            "ok": ahead is not None and ahead >= app.config.partitions.months_ahead and default_rows == 0,
        })
    return coverage


def collect_status(app: App) -> dict[str, Any]:
    now = app.clock.now()
    hour_ago = now - timedelta(hours=1)
    with app.databases.begin("notify") as conn:
        queue = conn.execute(query("status", "queue")).one()
        failed = conn.execute(query("status", "failures_since"), {"since": hour_ago}).scalar()
        job_errors = conn.execute(query("status", "job_errors_since"), {"since": hour_ago}).scalar()
        runs = conn.execute(query("status", "last_job_runs")).mappings().all()
    oldest = queue.oldest_queued_at
    return {
        "now": now,
        "queue": {
            "depth": queue.depth,
            "oldest_queued_at": oldest,
            "oldest_age_seconds": (now - oldest).total_seconds() if oldest is not None else None,
        },
        "failures_last_hour": {"notifications": failed, "job_runs": job_errors},
        "partitions": partition_coverage(app, now),
        "jobs": [
            {"job": r["job_name"], "status": r["status"], "started_at": r["started_at"],
             "finished_at": r["finished_at"], "duration_seconds": r["duration_seconds"],
             "error": r["error"], "ran_by": r["ran_by"]}
            for r in runs
        ],
    }
