"""Built-in collectors over data_activity: api_calls, records_count and http_429_count.

api_calls and records_count are incremental: each run reads only log rows committed since its
watermark (ingest_seq, see ddl/data_activity/0002) and adds them to running totals in
notify.usage_counters. Counters, snapshots and the new watermark commit in one notify
transaction, so a crash before that commit leaves the old watermark and the old counters: the
next run reads the same rows again and counts them once. The watermark row is locked for the
whole run, so two collectors at once take turns.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Optional


from engine.clock import add_months, billing_period, month_start
from engine.collectors import CollectorResult
from engine.queries import query
from engine.snapshots import NIL_UUID, RATE_LIMIT_METRIC, Snapshot, copy_snapshots

# Test hook: called after the snapshots are written and before the commit, to simulate a crash.
_before_commit: Optional[Callable[[str], None]] = None


def _utc_midnight(day) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _read_log_deltas(app, sql_name: str, from_position: int, params: dict) -> tuple[int, list]:
    """(horizon, rows) read from data_activity in one REPEATABLE READ snapshot, so the horizon
    and the rows agree."""
    engine = app.databases.engine("data_activity")
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            horizon = conn.execute(query("collect", "read_horizon")).scalar_one()
            rows = conn.execute(query("collect", sql_name),
                                {"from_position": from_position, "to_position": horizon, **params}).all()
    return horizon, rows


class _IncrementalLogCollector:
    """Reads a delta per (tenant, base) from a log table and adds it to a running counter."""

    name: str
    metric: str
    sql_name: str

    def period(self, now: datetime) -> str:
        return ""

    def read_params(self, now: datetime) -> dict:
        return {}

    def collect(self, app) -> CollectorResult:
        result = CollectorResult(self.name)
        now = app.clock.now()
        period = self.period(now)
        with app.databases.begin("notify") as notify:
            notify.execute(query("collect", "ensure_watermark"), {"collector": self.name, "now": now})
        with app.databases.begin("notify") as notify:
            position = notify.execute(query("collect", "lock_watermark"), {"collector": self.name}).scalar_one()
            horizon, deltas = _read_log_deltas(app, self.sql_name, position, self.read_params(now))
            if horizon <= position:
                return result
            if deltas:
                totals = notify.execute(query("collect", "add_to_counters"), {
                    "collector": self.name, "metric": self.metric, "period": period, "now": now,
                    "tenant_ids": [r.tenant_id for r in deltas],
                    "base_ids": [r.base_id or NIL_UUID for r in deltas],
                    "deltas": [int(r.delta) for r in deltas],
                }).all()
                snapshots = [Snapshot(t.tenant_id, None if t.base_id == NIL_UUID else t.base_id,
                                      self.metric, int(t.value), now) for t in totals]
                result.written = copy_snapshots(notify.connection.driver_connection, snapshots)
            notify.execute(query("collect", "store_watermark"),
                           {"collector": self.name, "position": horizon, "now": now})
            if _before_commit is not None:
                _before_commit(self.name)
        return result


class ApiCallsCollector(_IncrementalLogCollector):
    """api_calls per tenant and base for the current billing month, from api_access_logs. A row
    that arrives after its month ended is not added to the new month."""

    name = "data_activity.api_calls"
    metric = "api_calls"
    sql_name = "api_calls_delta"

    def period(self, now: datetime) -> str:
        return billing_period(now)

    def read_params(self, now: datetime) -> dict:
        start = month_start(now)
        return {"period_start": _utc_midnight(start), "period_end": _utc_midnight(add_months(start, 1))}


class RecordCountCollector(_IncrementalLogCollector):
    """records_count per tenant and base: the running sum of INSERT (+1) and DELETE (-1) events
    since the first collection. Where the platform knows absolute counts, a SQL source that
    reports records_count is more exact (the newest snapshot wins in detection)."""

    name = "data_activity.records_count"
    metric = "records_count"
    sql_name = "record_count_delta"


class RateLimitCollector:
    """http_429_count per tenant and base over the sliding window detect.rate_limit_window. Not
    incremental by nature (a window slides); its cost follows the window's rows."""

    name = "data_activity.http_429_count"

    def __init__(self, window_seconds: float):
        self.window = timedelta(seconds=window_seconds)
        self.window_label = "minute" if window_seconds <= 60 else "hour" if window_seconds <= 3600 else "day"

    def collect(self, app) -> CollectorResult:
        result = CollectorResult(self.name)
        now = app.clock.now()
        with app.databases.begin("data_activity") as logs:
            counts = logs.execute(query("collect", "rate_limited_counts"),
                                  {"window_start": now - self.window, "now": now}).all()
        with app.databases.begin("notify") as notify:
            notify.execute(query("collect", "ensure_watermark"), {"collector": self.name, "now": now})
            notify.execute(query("collect", "lock_watermark"), {"collector": self.name}).scalar_one()
            rows = notify.execute(query("collect", "replace_rate_limit_counts"), {
                "collector": self.name, "now": now,
                "tenant_ids": [r.tenant_id for r in counts],
                "base_ids": [r.base_id or NIL_UUID for r in counts],
                "counts": [int(r.value) for r in counts],
            }).all()
            snapshots = [Snapshot(r.tenant_id, None if r.base_id == NIL_UUID else r.base_id,
                                  RATE_LIMIT_METRIC, int(r.value), now, self.window_label) for r in rows]
            result.written = copy_snapshots(notify.connection.driver_connection, snapshots)
        return result


def builtin_collectors(config) -> list:
    return [ApiCallsCollector(), RecordCountCollector(), RateLimitCollector(config.detect.rate_limit_window)]
