"""Each snapshot source against real tables and real servers: the data_activity log collectors
(with their watermark across a simulated crash), a SQL source, an HTTP source, push."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from engine.collect import run_collection
from engine.collectors import data_activity
from engine.collectors.data_activity import ApiCallsCollector, RateLimitCollector, RecordCountCollector
from engine.collectors.push import record_snapshots
from engine.config import CollectConfig, HttpSourceConfig, SqlSourceConfig

TENANT = uuid.UUID("6f1c2d3e-0000-4000-8000-000000000001")
BASE = uuid.UUID("6f1c2d3e-0000-4000-8000-00000000b001")


def add_api_calls(databases, count, *, status=200, at=datetime(2026, 11, 25, 11, 0, tzinfo=timezone.utc),
                  tenant=TENANT, base=BASE):
    with databases.begin("data_activity") as conn:
        conn.exec_driver_sql(
            "INSERT INTO data_activity.api_access_logs (occurred_at, tenant_id, base_id, route, method, status) "
            "SELECT %(at)s, %(tenant)s, %(base)s, '/v1/records', 'GET', %(status)s FROM generate_series(1, %(n)s)",
            {"at": at, "tenant": tenant, "base": base, "status": status, "n": count})


def add_record_events(databases, action, count, *, error=None):
    with databases.begin("data_activity") as conn:
        conn.exec_driver_sql(
            "INSERT INTO data_activity.record_events (occurred_at, tenant_id, base_id, table_id, action, error) "
            "SELECT %(at)s, %(tenant)s, %(base)s, gen_random_uuid(), %(action)s, %(error)s "
            "FROM generate_series(1, %(n)s)",
            {"at": datetime(2026, 11, 25, 11, 0, tzinfo=timezone.utc), "tenant": TENANT, "base": BASE,
             "action": action, "error": error, "n": count})


def snapshots(databases, metric):
    with databases.begin("notify") as conn:
        return conn.exec_driver_sql(
            "SELECT tenant_id, base_id, coalesce(value_int::numeric, value_numeric) AS value, captured_at, \"window\" "
            "FROM notify.quota_snapshots WHERE metric = %(m)s ORDER BY captured_at, ingest_seq", {"m": metric}).all()


def test_api_calls_counts_the_current_month_incrementally(app, databases, clock):
    add_api_calls(databases, 30)
    add_api_calls(databases, 7, at=datetime(2026, 10, 31, 23, 59, tzinfo=timezone.utc))  # last month
    assert ApiCallsCollector().collect(app).written == 1
    clock.advance(timedelta(minutes=1))
    add_api_calls(databases, 5)
    assert ApiCallsCollector().collect(app).written == 1
    clock.advance(timedelta(minutes=1))
    assert ApiCallsCollector().collect(app).written == 0  # nothing new: nothing written
    values = [(r.tenant_id, r.base_id, r.value, r.window) for r in snapshots(databases, "api_calls")]
    assert values == [(TENANT, BASE, 30, "monthly"), (TENANT, BASE, 35, "monthly")]


def test_api_calls_restart_from_zero_in_a_new_month(app, databases, clock):
    add_api_calls(databases, 30)
    ApiCallsCollector().collect(app)
    clock.current = datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc)
    add_api_calls(databases, 4, at=datetime(2026, 12, 1, 0, 1, tzinfo=timezone.utc))
    ApiCallsCollector().collect(app)
    assert [r.value for r in snapshots(databases, "api_calls")] == [30, 4]


def test_watermark_after_a_crash_neither_double_counts_nor_skips(app, databases, clock, monkeypatch):
    add_api_calls(databases, 10)
    ApiCallsCollector().collect(app)
    add_api_calls(databases, 3)

    def crash(name):
        raise RuntimeError("simulated crash before commit")

    monkeypatch.setattr(data_activity, "_before_commit", crash)
    with pytest.raises(RuntimeError):
        ApiCallsCollector().collect(app)
    monkeypatch.setattr(data_activity, "_before_commit", None)
    add_api_calls(databases, 2)
    clock.advance(timedelta(minutes=1))
    ApiCallsCollector().collect(app)
    # The crashed run left no snapshot, no counter and no watermark behind: 10, then 10 + 3 + 2.
    assert [r.value for r in snapshots(databases, "api_calls")] == [10, 15]


def test_rows_committed_late_are_counted_once(app, databases, clock):
    """A log row whose transaction was still open during a run is counted by the next run."""
    add_api_calls(databases, 1)
    slow = databases.connect_raw("data_activity")
    slow.execute("INSERT INTO data_activity.api_access_logs (occurred_at, tenant_id, base_id, route, method, status) "
                 "VALUES ('2026-11-25 10:00Z', %s, %s, '/v1/records', 'GET', 200)", (TENANT, BASE))
    add_api_calls(databases, 1)
    ApiCallsCollector().collect(app)  # sees neither the open row nor the one after it
    slow.commit()
    slow.close()
    clock.advance(timedelta(minutes=1))
    ApiCallsCollector().collect(app)
    clock.advance(timedelta(minutes=1))
    ApiCallsCollector().collect(app)
    assert [r.value for r in snapshots(databases, "api_calls")][-1] == 3


def test_record_count_sums_inserts_minus_deletes_and_ignores_failed_writes(app, databases, clock):
    add_record_events(databases, "INSERT", 12)
    add_record_events(databases, "DELETE", 2)
    add_record_events(databases, "UPDATE", 5)
    add_record_events(databases, "INSERT", 4, error="constraint violation")
    RecordCountCollector().collect(app)
    clock.advance(timedelta(minutes=1))
    add_record_events(databases, "DELETE", 3)
    RecordCountCollector().collect(app)
    assert [r.value for r in snapshots(databases, "records_count")] == [10, 7]


def test_rate_limit_counts_429s_in_the_window_and_reports_zero_when_they_stop(app, databases, clock):
    add_api_calls(databases, 6, status=429, at=clock.now() - timedelta(minutes=2))
    add_api_calls(databases, 9, status=429, at=clock.now() - timedelta(minutes=20))  # outside 5 min
    add_api_calls(databases, 50, status=200, at=clock.now() - timedelta(minutes=1))
    collector = RateLimitCollector(300)
    collector.collect(app)
    clock.advance(timedelta(minutes=10))
    collector.collect(app)
    clock.advance(timedelta(minutes=1))
    assert collector.collect(app).written == 0  # zero already reported
    rows = snapshots(databases, "http_429_count")
    assert [(r.value, r.window) for r in rows] == [(6, "hour"), (0, "hour")]


@pytest.mark.fresh_database  # creates a table outside the four sections
def test_sql_source_keeps_good_rows_and_names_bad_ones(app, databases):
    with databases.begin("notify") as conn:
        conn.exec_driver_sql("CREATE TABLE public.usage_export (tenant_id text, base_id text, metric text, value text)")
        conn.exec_driver_sql("INSERT INTO public.usage_export VALUES "
                             f"('{TENANT}', NULL, 'runs_used', '12'), "
                             f"('{TENANT}', NULL, 'runs_usd', '5'), "
                             f"('{TENANT}', NULL, 'storage_gb', '1.25')")
    app.config.collect = CollectConfig(data_activity=False, sql=[SqlSourceConfig(
        name="billing", database="notify", query="SELECT tenant_id, base_id, metric, value FROM public.usage_export")])
    summary = run_collection(app)
    [result] = summary.results
    assert result.written == 2
    assert [str(r) for r in result.rejected] == [
        "sql:billing: row 2: unknown metric 'runs_usd' (known: runs_used, storage_gb, records_count, api_calls, "
        "wallet_balance_cents, http_429_count)"]


class _JsonHandler(http.server.BaseHTTPRequestHandler):
    body = b"[]"
    status = 200

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def json_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JsonHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_source_reads_json_and_a_failing_source_does_not_stop_the_others(app, databases, json_server):
    _JsonHandler.body = json.dumps({"snapshots": [
        {"tenant_id": str(TENANT), "base_id": str(BASE), "metric": "runs_used", "value": 42},
        {"tenant_id": "not-a-uuid", "metric": "runs_used", "value": 1},
    ]}).encode()
    port = json_server.server_address[1]
    app.config.collect = CollectConfig(data_activity=False, http=[
        HttpSourceConfig(name="down", url="http://127.0.0.1:9/", timeout=2),
        HttpSourceConfig(name="usage", url=f"http://127.0.0.1:{port}/usage", timeout=10),
    ])
    summary = run_collection(app)
    down, usage = summary.results
    assert down.error.startswith("http:down: request failed")
    assert usage.written == 1 and usage.error is None
    assert [str(r) for r in usage.rejected] == ["http:usage: row 2: tenant_id must be a UUID, got 'not-a-uuid'"]
    assert [r.value for r in snapshots(databases, "runs_used")] == [42]


def test_http_source_non_json_body_is_a_clear_error(app, json_server):
    _JsonHandler.body = b"<html>"
    port = json_server.server_address[1]
    app.config.collect = CollectConfig(data_activity=False,
                                       http=[HttpSourceConfig(name="usage", url=f"http://127.0.0.1:{port}/", timeout=10)])
    [result] = run_collection(app).results
    assert result.error == "http:usage: the body is not JSON"


@pytest.mark.parametrize("row, reason", [
    ({"metric": "cpu", "value": 1}, "unknown metric 'cpu'"),
    ({"metric": "runs_used", "value": -1}, "value of runs_used cannot be negative, got -1"),
    ({"metric": "runs_used", "value": float("nan")}, "value of runs_used must be a finite number, got nan"),
    ({"metric": "storage_gb", "value": "Infinity"}, "value of storage_gb must be a finite number, got 'Infinity'"),
    ({"metric": "runs_used", "value": "lots"}, "value of runs_used must be a number, got 'lots'"),
    ({"metric": "runs_used", "value": True}, "value of runs_used must be a number, got True"),
    ({"metric": "runs_used", "value": 1.5}, "value of runs_used must be a whole number, got 1.5"),
    ({"metric": "api_calls", "value": 2**64}, "value of api_calls is out of range"),
    ({"metric": "runs_used", "value": 1, "tenant_id": "tenant-7"}, "tenant_id must be a UUID, got 'tenant-7'"),
    ({"metric": "runs_used", "value": 1, "base_id": 17}, "base_id must be a UUID, got 17"),
])
def test_push_rejects_each_bad_value_by_row_and_keeps_the_rest(app, databases, row, reason):
    good = {"tenant_id": str(TENANT), "metric": "runs_used", "value": 5}
    bad = {"tenant_id": str(TENANT), **row}
    result = record_snapshots(app, [good, bad, good], source="billing-service")
    assert result.written == 2
    [rejection] = result.rejected
    assert rejection.source == "billing-service" and rejection.row == "row 2"
    assert reason in rejection.reason
    assert len(snapshots(databases, "runs_used")) == 2


def test_push_accepts_negative_wallet_and_fractional_storage(app, databases):
    result = record_snapshots(app, [{"tenant_id": str(TENANT), "metric": "wallet_balance_cents", "value": -250},
                                    {"tenant_id": str(TENANT), "metric": "storage_gb", "value": "3.75"}])
    assert result.written == 2 and result.rejected == []
    assert [r.value for r in snapshots(databases, "storage_gb")] == [pytest.approx(3.75)]


def test_a_push_that_writes_rows_notifies_notifyd_at_commit_and_a_rejected_one_does_not(app, database_urls):
    import psycopg

    from engine.jobs import SNAPSHOTS_CHANNEL

    with psycopg.connect(database_urls["notify"], autocommit=True) as listener:
        listener.execute(f"LISTEN {SNAPSHOTS_CHANNEL}")
        result = record_snapshots(app, [{"tenant_id": str(TENANT), "metric": "runs_used", "value": 5}])
        assert result.written == 1
        assert len(list(listener.notifies(timeout=5, stop_after=1))) == 1   # detection is woken
        result = record_snapshots(app, [{"tenant_id": "not-a-uuid", "metric": "runs_used", "value": 5}])
        assert result.written == 0 and result.rejected
        # Nothing written, nothing to detect: no wake-up (a short listen; the notify, had there been
        # one, was sent at the commit that already happened).
        assert list(listener.notifies(timeout=0.2)) == []
