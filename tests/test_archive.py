"""Retention with archive: each expired partition goes to Parquet, checked, then dropped."""

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pyarrow.parquet as pq

from engine.cli import main
from engine.logwriter import AdminEvent, ApiAccessLog, write_rows
from engine.partitions import ensure_partitions

OLD = datetime(2026, 3, 10, 8, 30, tzinfo=timezone.utc)   # keep_months=6 from 2026-11 expires March


def seed_old_rows(databases, clock):
    ensure_partitions(databases, OLD, 0)   # the March partitions exist
    tenant = str(uuid.uuid4())
    write_rows(databases, "data_activity.api_access_logs", [
        ApiAccessLog(tenant_id=tenant, base_id=tenant, route="/v1/records", method="GET", status=200 + i % 3,
                     occurred_at=OLD, ip="192.0.2.7", latency_ms=i) for i in range(250)])
    write_rows(databases, "admin_log.admin_events", [
        AdminEvent(action="ALERT_ACK", target_type="ALERT", occurred_at=OLD, severity="warn",
                   diff={"status": ["open", "ack"]})])
    with databases.begin("notify") as conn:
        conn.exec_driver_sql(
            "INSERT INTO notify.quota_snapshots (captured_at, tenant_id, metric, value_numeric, \"window\") "
            "VALUES ('2026-03-05T00:00:00Z', gen_random_uuid(), 'storage_gb', 12.345678, 'monthly')")


def exists(databases, name):
    with databases.begin("notify") as conn:
        return conn.exec_driver_sql(f"SELECT to_regclass('{name}') IS NOT NULL").scalar()


def test_prune_with_archive_writes_parquet_then_drops(tmp_path, databases, clock, config_file, capsys):
    seed_old_rows(databases, clock)
    archive = tmp_path / "archive"
    code = main(["partitions", "prune", "--keep-months", "6", "--archive", str(archive), "--config", str(config_file())])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "dropped data_activity.api_access_logs_202603" in out and "250 rows archived" in out
    access = pq.read_table(archive / "data_activity" / "api_access_logs" / "api_access_logs_202603.parquet")
    assert access.num_rows == 250
    assert sorted(access.column("latency_ms").to_pylist()) == list(range(250))
    assert set(access.column("ip").to_pylist()) == {"192.0.2.7"}
    assert access.column("occurred_at").to_pylist()[0] == OLD
    assert access.column("sample_rate").to_pylist()[0] == 1
    admin = pq.read_table(archive / "admin_log" / "admin_events" / "admin_events_202603.parquet").to_pylist()
    assert admin[0]["severity"] == "warn" and json.loads(admin[0]["diff"]) == {"status": ["open", "ack"]}
    snapshots = pq.read_table(archive / "notify" / "quota_snapshots" / "quota_snapshots_202603.parquet").to_pylist()
    assert snapshots[0]["value_numeric"] == Decimal("12.345678") and snapshots[0]["window"] == "monthly"
    assert not exists(databases, "data_activity.api_access_logs_202603")
    assert list(archive.rglob("*.tmp")) == []


def test_failed_export_drops_nothing_and_exits_1(tmp_path, databases, clock, config_file, capsys):
    seed_old_rows(databases, clock)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the archive directory should be")
    code = main(["partitions", "prune", "--keep-months", "6", "--archive", str(blocker), "--config", str(config_file())])
    _, err = capsys.readouterr()
    assert code == 1
    assert "archiving" in err and "failed" in err
    for name in ("data_activity.api_access_logs_202603", "admin_log.admin_events_202603", "notify.quota_snapshots_202603"):
        assert exists(databases, name), name
    with databases.begin("data_activity") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM data_activity.api_access_logs").scalar() == 250


def test_scheduled_maintenance_archives_when_archive_dir_is_configured(tmp_path, app, databases, clock):
    from engine.jobs import maintenance_job

    seed_old_rows(databases, clock)
    app.config.partitions.archive_dir = str(tmp_path / "arch")
    maintenance_job(app)
    assert pq.read_metadata(tmp_path / "arch" / "data_activity" / "api_access_logs" / "api_access_logs_202603.parquet").num_rows == 250
    assert not exists(databases, "data_activity.api_access_logs_202603")


def test_without_pyarrow_the_prune_fails_with_advice_and_drops_nothing(tmp_path, databases, clock, config_file,
                                                                        capsys, monkeypatch):
    import sys

    seed_old_rows(databases, clock)
    monkeypatch.setitem(sys.modules, "pyarrow", None)   # what an install without the extra looks like
    code = main(["partitions", "prune", "--keep-months", "6", "--archive", str(tmp_path / "a"),
                 "--config", str(config_file())])
    assert code == 1
    assert "pip install 'notify-engine[archive]'" in capsys.readouterr().err
    assert exists(databases, "data_activity.api_access_logs_202603")


def test_a_month_archived_twice_keeps_both_files(tmp_path, databases, clock, config_file, capsys):
    seed_old_rows(databases, clock)
    archive = tmp_path / "archive"
    config = str(config_file())
    assert main(["partitions", "prune", "--keep-months", "6", "--archive", str(archive), "--config", config]) == 0
    # A late row of that month lands in the DEFAULT partition; ensure recreates the month for it.
    write_rows(databases, "data_activity.api_access_logs", [
        ApiAccessLog(tenant_id=str(uuid.uuid4()), base_id=str(uuid.uuid4()), route="/late", method="GET",
                     status=200, occurred_at=OLD)])
    assert main(["partitions", "ensure", "--months-ahead", "0", "--config", config]) == 0
    assert main(["partitions", "prune", "--keep-months", "6", "--archive", str(archive), "--config", config]) == 0
    folder = archive / "data_activity" / "api_access_logs"
    assert pq.read_metadata(folder / "api_access_logs_202603.parquet").num_rows == 250
    assert pq.read_table(folder / "api_access_logs_202603.2.parquet").column("route").to_pylist() == ["/late"]
