"""The project's Prometheus metrics: one registry, every name starting with `notify_`.

Built on prometheus_client rather than by hand: it is the reference implementation of the
exposition format (escaping, histogram buckets, `_total`/`_created` conventions), its counters
and histograms are thread-safe, and it is small with no dependencies. A private registry keeps
the library's process and GC collectors out, so /metrics shows only `notify_` metrics.

Two kinds of metric:

* Events counted by the process that sees them (snapshots recorded, deliveries, latencies, job
  runs). Code calls the objects below, e.g. `metrics.SNAPSHOTS_RECORDED.labels(source="sql").inc(n)`
  or `metrics.DELIVERY_LATENCY.labels(channel="webhook").observe(seconds)`. With several notifyd
  copies, Prometheus sums them across instances.
* State that lives in the database (alerts by status, notifications by channel and status, queue
  depth): read by `DatabaseStateCollector` when /metrics is scraped, so every copy reports the
  same, true figure. Those queries are cached for `cache_seconds` and time-limited.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Callable, Iterator, Optional

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.db import Databases
from engine.queries import query

log = logging.getLogger(__name__)

# `*_created` series double every counter's output and no dashboard of ours reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

# ---------------------------------------------------------------------- counted by the process

SNAPSHOTS_RECORDED = Counter(
    "notify_snapshots_recorded", "Quota snapshots written to notify.quota_snapshots, by source",
    ["source"], registry=REGISTRY)
ALERT_TRANSITIONS = Counter(
    "notify_alert_transitions", "Alert transitions written by this process (opened, resolved, ...)",
    ["kind", "transition"], registry=REGISTRY)
DELIVERY_ATTEMPTS = Counter(
    "notify_delivery_attempts", "Delivery attempts by channel and outcome (sent, transient, permanent)",
    ["channel", "outcome"], registry=REGISTRY)
NOTIFICATIONS_HELD = Counter(
    "notify_notifications_held", "Notifications held back by noise control (issue 15), by reason: "
    "group_wait, digest, quiet_hours, rate_limit (a row held again by a rate limit counts again)",
    ["reason"], registry=REGISTRY)
DELIVERY_UNDECRYPTABLE = Counter(
    "notify_delivery_undecryptable", "Claimed notifications not sent because no key of "
    "channels.webhook.secret_key decrypts their destination's secret (they stay queued), by channel",
    ["channel"], registry=REGISTRY)
DELIVERY_LATENCY = Histogram(
    "notify_delivery_latency_seconds",
    "From the alert transition to the notification being sent, by channel",
    ["channel"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600))

NOTIFICATIONS_SUPPRESSED = Counter(
    "notify_notifications_suppressed", "Notifications planned as suppressed, by reason (silence, inhibition)",
    ["reason"], registry=REGISTRY)

JOB_RUNS = Counter(
    "notify_job_runs", "Ticks of each periodic job: ok, error, or skipped (another copy ran the tick, "
    "or the database was down)", ["job", "outcome"], registry=REGISTRY)
JOB_FAILURES = Counter(
    "notify_job_failures", "Runs of each periodic job that raised", ["job"], registry=REGISTRY)
JOB_DURATION = Histogram(
    "notify_job_duration_seconds", "Duration of each periodic job's runs", ["job"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800))
JOB_LAST_SUCCESS = Gauge(
    "notify_job_last_success_timestamp_seconds", "When this process last ran the job successfully (Unix time)",
    ["job"], registry=REGISTRY)
PUSH_DETECTION_PASSES = Counter(
    "notify_push_detection_passes", "Detection passes woken by pushed snapshots (not jobs.detect ticks): ok or error",
    ["outcome"], registry=REGISTRY)
PUSH_DETECTION_DURATION = Histogram(
    "notify_push_detection_duration_seconds", "Duration of detection passes woken by pushed snapshots",
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30))
WORKER_RESTARTS = Counter(
    "notify_worker_restarts", "Long-running workers (the dispatcher) restarted after an error",
    ["worker"], registry=REGISTRY)
DATABASE_UP = Gauge(
    "notify_database_up", "1 when the database answered the last health probe, else 0",
    ["database"], registry=REGISTRY)


def reset_for_tests() -> None:
    """Counters are process-wide; in-process tests that assert on them start from zero. Only
    labelled metrics can be cleared (prometheus-client before 0.26 raises on the others)."""
    for metric in (SNAPSHOTS_RECORDED, ALERT_TRANSITIONS, DELIVERY_ATTEMPTS, DELIVERY_LATENCY, JOB_RUNS,
                   JOB_FAILURES, JOB_DURATION, JOB_LAST_SUCCESS, PUSH_DETECTION_PASSES,
                   WORKER_RESTARTS, DATABASE_UP):
        metric.clear()


# ---------------------------------------------------------------------- read from the database


class DatabaseStateCollector(Collector):
    """Alerts by status and kind, notifications by channel and status, the queue's depth and age,
    paused destinations."""

    def __init__(self, databases: Callable[[], Optional[Databases]], now: Callable[[], datetime],
                 cache_seconds: float = 10.0) -> None:
        self._databases = databases
        self._now = now
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: Optional[tuple[float, list]] = None

    def describe(self):
        return []  # state metrics come and go with the rows; no fixed description

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self._cache_seconds:
                families = self._read()
                # A failed read is not cached: the next scrape tries again.
                self._cached = (time.monotonic(), families) if families is not None else None
            families = self._cached[1] if self._cached else []
        yield from families

    def _read(self) -> Optional[list]:
        databases = self._databases()
        if databases is None:
            return None
        try:
            with databases.begin("notify") as conn:
                # A scrape must never hang on a busy database.
                conn.execute(query("metrics", "set_statement_timeout"))
                alerts = conn.execute(query("metrics", "alerts_by_status")).all()
                notes = conn.execute(query("metrics", "notifications_by_channel_status")).all()
                queue = conn.execute(query("metrics", "queue_depth"), {"now": self._now()}).one()
                paused = conn.execute(query("metrics", "destinations_paused"), {"now": self._now()}).scalar()
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can; health says why
            log.warning("metrics: database state unavailable: %s", type(exc).__name__)
            return None
        alerts_family = GaugeMetricFamily("notify_alerts", "Alerts in notify.alerts by status and kind",
                                          labels=["status", "kind"])
        for r in alerts:
            alerts_family.add_metric([r.status, r.kind], r.count)
        notes_family = GaugeMetricFamily("notify_notifications",
                                         "Rows of notify.notifications by channel and status",
                                         labels=["channel", "status"])
        for r in notes:
            notes_family.add_metric([r.channel, r.status], r.count)
        depth = GaugeMetricFamily("notify_queue_depth", "Notifications waiting to be sent (status queued)")
        depth.add_metric([], queue.depth)
        age = GaugeMetricFamily("notify_queue_oldest_age_seconds",
                                "Age of the oldest queued notification (0 when the queue is empty)")
        age.add_metric([], float(queue.oldest_age_seconds or 0))
        paused_family = GaugeMetricFamily("notify_destinations_paused",
                                          "Destinations paused after failed attempts in a row (their notifications wait)")
        paused_family.add_metric([], paused or 0)
        return [alerts_family, notes_family, depth, age, paused_family]


def render() -> bytes:
    """The exposition text of every registered metric."""
    return generate_latest(REGISTRY)
