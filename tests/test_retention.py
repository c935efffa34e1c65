"""The cleanup job: resolved alerts past retention go (with their notifications), nothing else."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from engine.config import Duration
from engine.jobs import cleanup_job
from engine.retention import delete_resolved_alerts

TENANT = str(uuid.UUID(int=7))


def add_alert(conn, status, resolved_days_ago, now):
    resolved_at = now - timedelta(days=resolved_days_ago) if resolved_days_ago is not None else None
    alert_id = conn.execute(text(
        "INSERT INTO notify.alerts (tenant_id, kind, dedupe_key, status, resolved_at) "
        "VALUES (:t, 'RUNS_THRESHOLD', :d, :s, :r) RETURNING id"),
        {"t": TENANT, "d": uuid.uuid4().hex, "s": status, "r": resolved_at}).scalar()
    conn.execute(text("INSERT INTO notify.notifications (tenant_id, alert_id, channel, status) "
                      "VALUES (:t, :a, 'email', 'sent')"), {"t": TENANT, "a": alert_id})
    return alert_id


def remaining(databases):
    with databases.begin("notify") as conn:
        alerts = {r[0] for r in conn.execute(text("SELECT id FROM notify.alerts"))}
        notes = conn.execute(text("SELECT count(*) FROM notify.notifications")).scalar()
    return alerts, notes


def test_resolved_alerts_past_retention_are_deleted_in_batches_with_their_notifications(app, clock):
    now = clock.now()
    with app.databases.begin("notify") as conn:
        old = [add_alert(conn, "resolved", 91 + i, now) for i in range(5)]
        recent = add_alert(conn, "resolved", 89, now)
        still_open = add_alert(conn, "open", None, now)
        acked = add_alert(conn, "ack", None, now)
    deleted = delete_resolved_alerts(app.databases, now, Duration.parse("90d"), batch_size=2)
    assert deleted == len(old)
    alerts, notes = remaining(app.databases)
    assert alerts == {recent, still_open, acked}
    assert notes == 3


def test_the_cleanup_job_follows_the_retention_config_and_zero_keeps_everything(app, clock):
    now = clock.now()
    with app.databases.begin("notify") as conn:
        add_alert(conn, "resolved", 10, now)
    app.config.retention.resolved_alerts = Duration(0)
    cleanup_job(app)
    assert len(remaining(app.databases)[0]) == 1
    app.config.retention.resolved_alerts = Duration.parse("7d")
    cleanup_job(app)
    assert remaining(app.databases)[0] == set()


def test_the_cleanup_job_trims_old_job_runs(app, clock):
    now = clock.now()
    with app.databases.begin("notify") as conn:
        for days in (40, 31, 29):
            started = now - timedelta(days=days)
            conn.execute(text(
                "INSERT INTO notify.job_runs (job_name, slot_start, started_at, finished_at, status, "
                "duration_seconds, ran_by) VALUES ('maintenance', :s, :s, :s, 'ok', 0.1, 'test')"), {"s": started})
    cleanup_job(app)
    with app.databases.begin("notify") as conn:
        left = conn.execute(text("SELECT count(*) FROM notify.job_runs")).scalar()
    assert left == 1


def add_alertless(conn, transition, status, days_ago, now, message_of=None):
    """A notification of no alert (a test send, a group message), or a member naming `message_of`."""
    return conn.execute(text(
        "INSERT INTO notify.notifications (tenant_id, alert_id, channel, status, transition, created_at) "
        "VALUES (:t, NULL, 'webhook', :s, :tr, :c) RETURNING id"),
        {"t": TENANT, "s": status, "tr": transition, "c": now - timedelta(days=days_ago)}).scalar()


def test_notifications_of_no_alert_go_after_retention_unless_queued_or_a_kept_member_names_them(app, clock):
    now = clock.now()
    with app.databases.begin("notify") as conn:
        old_test = add_alertless(conn, "test", "sent", 91, now)
        recent_test = add_alertless(conn, "test", "failed", 89, now)
        old_queued = add_alertless(conn, "test", "queued", 91, now)
        old_message = add_alertless(conn, "group", "sent", 95, now)
        kept_alert = add_alert(conn, "open", None, now)
        conn.execute(text("UPDATE notify.notifications SET status = 'grouped', message_id = :m WHERE alert_id = :a"),
                     {"m": old_message, "a": kept_alert})
        orphan_message = add_alertless(conn, "group", "sent", 95, now)
    cleanup_job(app)
    with app.databases.begin("notify") as conn:
        left = {r[0] for r in conn.execute(text("SELECT id FROM notify.notifications WHERE alert_id IS NULL"))}
    assert left == {recent_test, old_queued, old_message}
    assert old_test not in left and orphan_message not in left


def test_cleanup_drops_group_times_past_every_group_interval_and_ended_console_sessions(app, clock):
    import hashlib

    from engine.tokens import add_token, revoke_token

    now = clock.now()
    add_token(app, "console-op", ["operate"])
    add_token(app, "revoked-op", ["operate"])
    revoke_token(app, "revoked-op")
    with app.databases.begin("notify") as conn:
        for key, age in (("old", timedelta(days=2)), ("recent", timedelta(hours=2))):
            conn.execute(text("INSERT INTO notify.group_state (route_key, group_key, last_message_at) "
                              "VALUES ('route:ops', :k, :t)"), {"k": key, "t": now - age})
        for name, token, expires, seen in (("live", "console-op", now + timedelta(hours=1), now - timedelta(minutes=29)),
                                           ("ended", "console-op", now - timedelta(seconds=1), now),
                                           ("idle", "console-op", now + timedelta(hours=1), now - timedelta(minutes=30)),
                                           ("revoked", "revoked-op", now + timedelta(hours=1), now)):
            conn.execute(text("INSERT INTO notify.console_sessions (session_sha256, token_name, created_at, expires_at,"
                              " last_seen_at) VALUES (:h, :t, :c, :e, :s)"),
                         {"h": hashlib.sha256(name.encode()).digest(), "t": token, "c": now - timedelta(hours=2),
                          "e": expires, "s": seen})
    cleanup_job(app)
    with app.databases.begin("notify") as conn:
        groups = {r[0] for r in conn.execute(text("SELECT group_key FROM notify.group_state"))}
        sessions = [r[0] for r in conn.execute(text("SELECT session_sha256 FROM notify.console_sessions"))]
    assert groups == {"recent"}
    assert sessions == [hashlib.sha256(b"live").digest()]
