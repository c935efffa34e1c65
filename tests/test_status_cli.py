"""notifyctl status: queue, failures in the last hour, partition coverage, last job runs."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from engine.cli import main
from engine.db import Databases

TENANT = str(uuid.UUID(int=3))


def seed_rows(database_urls):
    now = datetime.now(timezone.utc)   # notifyctl runs on the system clock
    databases = Databases(database_urls)
    try:
        with databases.begin("notify") as conn:
            alert = conn.execute(text("INSERT INTO notify.alerts (tenant_id, kind, dedupe_key) "
                                      "VALUES (:t, 'WALLET_LOW', 'wallet:low') RETURNING id"), {"t": TENANT}).scalar()
            rows = [("queued", now - timedelta(minutes=30), None), ("queued", now - timedelta(minutes=5), None),
                    ("failed", now - timedelta(hours=2), now - timedelta(minutes=10)),
                    ("failed", now - timedelta(hours=3), now - timedelta(hours=2)),
                    ("sent", now - timedelta(hours=1), now - timedelta(minutes=50))]
            for status, created, attempted in rows:
                conn.execute(text("INSERT INTO notify.notifications (tenant_id, alert_id, channel, status, created_at, "
                                  "last_attempt_at) VALUES (:t, :a, 'email', :s, :c, :l)"),
                             {"t": TENANT, "a": alert, "s": status, "c": created, "l": attempted})
            conn.execute(text("INSERT INTO notify.job_runs (job_name, slot_start, started_at, finished_at, status, "
                              "duration_seconds, error, ran_by) VALUES "
                              "('cleanup', :a, :a, :a, 'ok', 0.01, NULL, 'host:1'), "
                              "('cleanup', :b, :b, :b, 'error', 0.02, 'ValueError: boom', 'host:2')"),
                         {"a": now - timedelta(hours=2), "b": now - timedelta(minutes=1)})
            # A snapshot far in the future has no month partition: it waits in the DEFAULT one.
            conn.execute(text("INSERT INTO notify.quota_snapshots (tenant_id, metric, value_int, captured_at) "
                              "VALUES (:t, 'runs_used', 1, '2031-01-15T00:00:00Z')"), {"t": TENANT})
    finally:
        databases.dispose()
    return now


def test_status_json_is_one_object_with_queue_failures_partitions_and_jobs(config_file, database_urls, capsys):
    path = config_file()
    assert main(["partitions", "ensure", "--config", str(path)]) == 0
    capsys.readouterr()
    now = seed_rows(database_urls)
    assert main(["status", "--json", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report["queue"]["depth"] == 2
    oldest = datetime.fromisoformat(report["queue"]["oldest_queued_at"])
    assert abs((oldest - (now - timedelta(minutes=30))).total_seconds()) < 1
    assert report["failures_last_hour"] == {"notifications": 1, "job_runs": 1}
    by_table = {p["table"]: p for p in report["partitions"]}
    assert set(by_table) >= {"notify.quota_snapshots", "admin_log.admin_events", "data_activity.api_access_logs"}
    assert by_table["admin_log.admin_events"]["months_ahead"] == 3
    assert by_table["admin_log.admin_events"]["ok"] is True
    assert by_table["notify.quota_snapshots"]["default_rows"] == 1
    assert by_table["notify.quota_snapshots"]["ok"] is False
    [cleanup] = report["jobs"]
    assert (cleanup["job"], cleanup["status"], cleanup["error"], cleanup["ran_by"]) == (
        "cleanup", "error", "ValueError: boom", "host:2")


def test_status_for_people_is_a_readable_summary(config_file, database_urls, capsys):
    seed_rows(database_urls)
    assert main(["status", "--config", str(config_file())]) == 0
    out = capsys.readouterr().out
    assert out.startswith("queue: 2 queued, oldest since ")
    assert "failures in the last hour: 1 notifications, 1 job runs" in out
    assert "notify.quota_snapshots" in out and "CHECK" in out
    assert "cleanup" in out and "ValueError: boom" in out
