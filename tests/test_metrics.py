"""The metrics registry: notify_ names only, database state read at scrape time."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from engine import metrics

TENANT = str(uuid.UUID(int=1))


def insert_alert(conn, status, kind="RUNS_THRESHOLD", key=None):
    return conn.execute(text(
        "INSERT INTO notify.alerts (tenant_id, kind, dedupe_key, status) VALUES (:t, :k, :d, :s) RETURNING id"),
        {"t": TENANT, "k": kind, "d": key or uuid.uuid4().hex, "s": status}).scalar()


def test_database_state_metrics_count_alerts_notifications_and_the_queue(app, clock):
    with app.databases.begin("notify") as conn:
        first = insert_alert(conn, "open")
        insert_alert(conn, "open")
        insert_alert(conn, "resolved", kind="WALLET_LOW")
        for channel, status, age in [("webhook", "queued", 120), ("webhook", "queued", 5),
                                     ("email", "sent", 1), ("email", "failed", 1)]:
            conn.execute(text("INSERT INTO notify.notifications (tenant_id, alert_id, channel, status, created_at) "
                              "VALUES (:t, :a, :c, :s, :created)"),
                         {"t": TENANT, "a": first, "c": channel, "s": status,
                          "created": clock.now() - timedelta(seconds=age)})
    collector = metrics.DatabaseStateCollector(lambda: app.databases, clock.now, cache_seconds=0)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in collector.collect() for s in f.samples}
    assert samples[("notify_alerts", (("kind", "RUNS_THRESHOLD"), ("status", "open")))] == 2
    assert samples[("notify_alerts", (("kind", "WALLET_LOW"), ("status", "resolved")))] == 1
    assert samples[("notify_notifications", (("channel", "webhook"), ("status", "queued")))] == 2
    assert samples[("notify_notifications", (("channel", "email"), ("status", "failed")))] == 1
    assert samples[("notify_queue_depth", ())] == 2
    assert samples[("notify_queue_oldest_age_seconds", ())] == 120


def test_every_exposed_metric_is_named_notify_(app, clock):
    metrics.reset_for_tests()
    metrics.SNAPSHOTS_RECORDED.labels(source="push").inc(3)
    metrics.DELIVERY_LATENCY.labels(channel="webhook").observe(0.2)
    metrics.JOB_RUNS.labels(job="cleanup", outcome="ok").inc()
    collector = metrics.DatabaseStateCollector(lambda: app.databases, clock.now, cache_seconds=0)
    metrics.REGISTRY.register(collector)
    try:
        exposition = metrics.render().decode()
    finally:
        metrics.REGISTRY.unregister(collector)
    names = [line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if not line.startswith("#")]
    assert names and all(n.startswith("notify_") for n in names)
    assert 'notify_snapshots_recorded_total{source="push"} 3.0' in exposition
    assert 'notify_delivery_latency_seconds_bucket{channel="webhook",le="0.25"} 1.0' in exposition
    assert "notify_queue_depth 0.0" in exposition


def test_an_unreachable_database_leaves_the_state_metrics_out_instead_of_failing_the_scrape(clock):
    from engine.db import Databases

    down = Databases({s: "postgresql://nobody@127.0.0.1:9/none" for s in
                      ("admin_log", "portal_log", "data_activity", "notify")})
    collector = metrics.DatabaseStateCollector(lambda: down, clock.now, cache_seconds=0)
    try:
        assert list(collector.collect()) == []
    finally:
        down.dispose()


def test_snapshots_and_alert_transitions_are_counted_once_committed(app, clock):
    from engine.alerts import ack_alert, clear_event, list_alerts, raise_event
    from engine.collectors.push import record_snapshots
    from engine.config import PlanConfig
    from engine.detect import run_detection

    metrics.reset_for_tests()
    app.config.plans = {"default": PlanConfig(runs_used=1000)}
    tenants = [str(uuid.uuid4()) for _ in range(3)]
    record_snapshots(app, [{"tenant_id": t, "metric": "runs_used", "value": 1200} for t in tenants])
    run_detection(app)
    ack_alert(app, str(list_alerts(app, kind="RUNS_THRESHOLD")[0]["id"]), actor="ops")
    raise_event(app, TENANT, "PAYMENT_FAILED")
    clock.advance(timedelta(seconds=1))  # a transition is recognised by its instant, as in production
    raise_event(app, TENANT, "PAYMENT_FAILED")  # a refresh of the open alert: no transition
    clear_event(app, TENANT, "PAYMENT_FAILED")
    clock.advance(timedelta(minutes=1))
    run_detection(app)  # nothing new: nothing counted

    def value(name, **labels):
        return metrics.REGISTRY.get_sample_value(name, labels) or 0

    assert value("notify_snapshots_recorded_total", source="push") == 3
    assert value("notify_alert_transitions_total", kind="RUNS_THRESHOLD", transition="opened") == 6  # 80 % and 100 %
    assert value("notify_alert_transitions_total", kind="RUNS_THRESHOLD", transition="acked") == 1
    assert value("notify_alert_transitions_total", kind="PAYMENT_FAILED", transition="opened") == 1
    assert value("notify_alert_transitions_total", kind="PAYMENT_FAILED", transition="resolved") == 1
