"""The dispatcher: leases, racing dispatchers, template isolation, skips, the long-running loop."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from tests.daemon_harness import wait_for
from tests.delivery_support import OTHER_TENANT, add_dest, insert_alert, notifications
from engine.dispatcher import Dispatcher, deliver_due, run_dispatcher
from engine.planner import plan_notifications


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True
    return app


def queue(app, url: str, alerts: int = 1, *, kind: str = "RUNS_THRESHOLD") -> str:
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        destination = add_dest(conn, now, "webhook", url)
        for _ in range(alerts):
            insert_alert(conn, now, kind=kind)
        plan_notifications(conn, app.config, now)
    return destination


def hold_slow_path(receiver) -> tuple[threading.Event, threading.Event]:
    """Makes the receiver hold every request to /slow until `release` is set (`arrived` says one
    came); other paths answer as before."""
    arrived, release = threading.Event(), threading.Event()
    answer = receiver.responder

    async def slow_or_ok(request, body):
        if request.path == "/slow":
            arrived.set()
            while not release.is_set():
                await asyncio.sleep(0.02)
        return await answer(request, body)

    receiver.responder = slow_or_ok
    return arrived, release


def rows(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn)


def test_a_claim_abandoned_by_a_crash_is_retried_once_its_lease_runs_out(hook_app, receiver):
    queue(hook_app, receiver.url("/ok"))
    # The "crashed" process: it claimed and never sent nor recorded anything.
    crashed = Dispatcher(hook_app)
    claimed = crashed.claim(hook_app.clock.now(), uuid.uuid4())
    assert len(claimed) == 1
    assert deliver_due(hook_app).claimed == 0            # held by the lease
    hook_app.clock.advance(timedelta(seconds=hook_app.config.delivery.lease))
    assert deliver_due(hook_app).sent == 1
    (row,) = rows(hook_app)
    assert (row["status"], row["send_attempts"], row["claim_token"]) == ("sent", 2, None)
    assert len(receiver.received) == 1


def test_a_lease_that_runs_out_on_the_last_attempt_ends_failed(hook_app, receiver):
    hook_app.config.delivery.max_attempts = 1
    queue(hook_app, receiver.url("/ok"))
    Dispatcher(hook_app).claim(hook_app.clock.now(), uuid.uuid4())
    hook_app.clock.advance(timedelta(seconds=hook_app.config.delivery.lease))
    deliver_due(hook_app)
    (row,) = rows(hook_app)
    assert (row["status"], row["error"]) == ("failed", "lease expired during the last attempt")
    assert row["send_attempts"] == 1  # the attempt that ran out, not one more
    assert receiver.received == []


def test_a_late_result_from_an_expired_claim_does_not_overwrite_the_new_one(hook_app, receiver):
    queue(hook_app, receiver.url("/ok"))
    slow = Dispatcher(hook_app)
    token = uuid.uuid4()
    claimed = slow.claim(hook_app.clock.now(), token)
    hook_app.clock.advance(timedelta(seconds=hook_app.config.delivery.lease))
    deliver_due(hook_app)
    from engine.dispatcher import Outcome

    slow.record(claimed, [Outcome("failed", error="late")], token)
    (row,) = rows(hook_app)
    assert row["status"] == "sent" and row["error"] is None


def test_a_slow_receiver_holds_up_only_its_own_notification_and_keeps_its_lease(hook_app, receiver):
    # Issue 12: the batch's other outcomes are recorded while the slow send still runs, and the
    # slow row's lease is renewed, so a dispatcher claiming after the original lease takes nothing.
    app = hook_app
    app.config.delivery.lease = 0.6      # renewed every 0.2 s (real time) while the send runs
    arrived, release = hold_slow_path(receiver)
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url("/slow"), tenant_id=OTHER_TENANT)
        add_dest(conn, now, "webhook", receiver.url("/ok"))
        slow_alert = insert_alert(conn, now, tenant_id=OTHER_TENANT)
        for _ in range(5):
            insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    first = threading.Thread(target=deliver_due, args=(app,))    # one batch claims all six
    first.start()
    try:
        assert arrived.wait(10)

        def slow_row() -> dict:
            return next(r for r in rows(app) if str(r["alert_id"]) == slow_alert)

        wait_for(lambda: all(r["status"] == "sent" for r in rows(app) if str(r["alert_id"]) != slow_alert),
                 "the healthy notifications recorded while the slow one is still in flight", timeout=10)
        assert slow_row()["status"] == "queued" and slow_row()["claim_token"] is not None
        lease_end = slow_row()["lease_until"]
        for _ in range(3):   # time passes in steps shorter than the lease, each seen by a renewal
            app.clock.advance(timedelta(seconds=0.3))
            wait_for(lambda: slow_row()["lease_until"] >= app.clock.now() + timedelta(seconds=0.6),
                     "the slow row's lease renewed", timeout=10)
        assert app.clock.now() > lease_end
        assert deliver_due(app).claimed == 0       # past the claim's own lease, nothing is taken over
    finally:
        release.set()
        first.join(15)
    assert {(r["status"], r["send_attempts"]) for r in rows(app)} == {("sent", 1)}
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 6 and len(set(ids)) == 6


def test_a_notification_queued_while_a_slow_send_runs_does_not_wait_for_it(hook_app, receiver):
    # Issue 12: once every row of a batch has started, its stragglers finish on their own and
    # the long-running dispatcher goes on claiming; it waits for them only when it stops.
    app = hook_app
    app.config.delivery.poll_interval = 60    # only NOTIFY wakes it: no poll helps the test pass
    app.config.channels.webhook.read_timeout = 60   # the slow send outlasts the wait below
    arrived, release = hold_slow_path(receiver)
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url("/slow"), tenant_id=OTHER_TENANT)
        add_dest(conn, now, "webhook", receiver.url("/ok"))
        slow_alert = insert_alert(conn, now, tenant_id=OTHER_TENANT)
        plan_notifications(conn, app.config, now)
    stop = threading.Event()
    dispatcher = threading.Thread(target=run_dispatcher, args=(app, stop))
    dispatcher.start()
    try:
        assert arrived.wait(10)
        with app.databases.begin("notify") as conn:
            later_alert = insert_alert(conn, now)
            plan_notifications(conn, app.config, now)   # NOTIFYs the dispatcher at commit
        wait_for(lambda: [r["status"] for r in rows(app) if str(r["alert_id"]) == later_alert] == ["sent"],
                 "the later notification sent while the slow one is still in flight", timeout=15)
        assert [r["status"] for r in rows(app) if str(r["alert_id"]) == slow_alert] == ["queued"]
    finally:
        release.set()
        stop.set()
        dispatcher.join(15)
    assert not dispatcher.is_alive()
    assert {(r["status"], r["send_attempts"]) for r in rows(app)} == {("sent", 1)}   # the straggler too, at stop
    assert len(receiver.received) == 2


def test_two_dispatchers_on_one_queue_send_each_notification_once(hook_app, receiver):
    hook_app.config.delivery.batch_size = 25
    queue(hook_app, receiver.url("/ok"), alerts=300)
    results = []
    threads = [threading.Thread(target=lambda: results.append(deliver_due(hook_app))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.sent for r in results) == 300
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 300 and len(set(ids)) == 300
    assert {(r["status"], r["send_attempts"]) for r in rows(hook_app)} == {("sent", 1)}


def test_a_template_error_fails_that_notification_only(hook_app, tmp_path, receiver):
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "BROKEN.subject.j2").write_text("{{ alert.no_such_field }}")
    hook_app.config.delivery.templates_dir = str(tmp_path)
    hook_app.config.channels.email.port = 9       # never reached: rendering fails first
    now = hook_app.clock.now()
    with hook_app.databases.begin("notify") as conn:
        add_dest(conn, now, "email", "owner@tenant.example", kinds=["BROKEN"])
        add_dest(conn, now, "webhook", receiver.url("/ok"))
        insert_alert(conn, now, kind="BROKEN")
        insert_alert(conn, now, kind="RUNS_THRESHOLD")
        plan_notifications(conn, hook_app.config, now)
    summary = deliver_due(hook_app)
    assert (summary.sent, summary.failed) == (2, 1)
    (broken,) = [r for r in rows(hook_app) if r["channel"] == "email"]
    assert broken["status"] == "failed" and broken["send_attempts"] == 1
    assert broken["error"].startswith("template error in email/BROKEN.subject.j2") and "no_such_field" in broken["error"]


def test_the_sandbox_refuses_unsafe_template_code(hook_app, tmp_path):
    from engine.templating import TemplateFailure, render

    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "EVIL.subject.j2").write_text("{{ alert.__class__.__mro__ }}")
    with pytest.raises(TemplateFailure, match="template error"):
        render("email", "EVIL", "subject", {"alert": {}}, root=tmp_path)


def test_queued_notifications_of_a_removed_destination_end_skipped(hook_app, receiver, config_file, capsys):
    from engine.cli import main

    destination = queue(hook_app, receiver.url("/ok"), alerts=2)
    path = config_file()
    assert main(["destinations", "remove", destination, "--config", str(path)]) == 0
    assert "2 queued notifications skipped" in capsys.readouterr().out
    assert deliver_due(hook_app).claimed == 0
    assert {(r["status"], r["error"]) for r in rows(hook_app)} == {("skipped", "destination removed")}
    assert receiver.received == []


def test_the_long_running_dispatcher_wakes_on_new_notifications(hook_app, receiver):
    hook_app.config.delivery.poll_interval = 60    # far longer than the test: only NOTIFY can wake it
    stop = threading.Event()
    worker = threading.Thread(target=run_dispatcher, args=(hook_app, stop))
    worker.start()
    try:
        arrived = threading.Event()
        original = receiver.responder

        async def signalling(request, body):
            arrived.set()
            return await original(request, body)

        receiver.responder = signalling
        queue(hook_app, receiver.url("/ok"))
        assert arrived.wait(15), "the dispatcher was not woken by NOTIFY"
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive()    # a stop lets the pass in flight record its results first
    assert rows(hook_app)[0]["status"] == "sent"


def test_an_ops_route_delivers_with_its_configured_secret_and_a_removed_route_is_skipped(hook_app, receiver):
    from engine.config import RouteConfig

    hook_app.config.routes = [RouteConfig(name="ops", channel="webhook", target=receiver.url("/ok"),
                                          secret="whsec_c2VjcmV0LXZhbHVlLW9mLTI0LWJ5dGVz")]
    now = hook_app.clock.now()
    with hook_app.databases.begin("notify") as conn:
        insert_alert(conn, now)
        plan_notifications(conn, hook_app.config, now)
        insert_alert(conn, now)
        plan_notifications(conn, hook_app.config, now)
    first, second = rows(hook_app)
    # Deliver only the first: the second waits until the route is gone from config.
    with hook_app.databases.begin("notify") as conn:
        conn.execute(text("UPDATE notify.notifications SET next_attempt_at = :later WHERE id = :id"),
                     dict(later=now + timedelta(hours=1), id=second["id"]))
    deliver_due(hook_app)
    assert receiver.received[0].headers["webhook-signature"].startswith("v1,")
    hook_app.config.routes = []
    hook_app.clock.advance(timedelta(hours=1))
    deliver_due(hook_app)
    by_id = {r["id"]: r for r in rows(hook_app)}
    assert by_id[first["id"]]["status"] == "sent"
    assert (by_id[second["id"]]["status"], by_id[second["id"]]["error"]) == ("skipped", "route no longer configured")
    assert len(receiver.received) == 1


def test_queue_stats_count_what_is_waiting_and_what_failed_recently(hook_app, receiver):
    from engine.dispatcher import queue_stats

    queue(hook_app, receiver.url("/ok"), alerts=2)
    queue(hook_app, receiver.url("/status/400"))
    with hook_app.databases.begin("notify") as conn:
        before = queue_stats(conn, hook_app.clock.now())
    # Planned once per transition: the second destination only gets the alert planned after it.
    assert (before["queued"], before["in_flight"], before["failed_last_hour"]) == (4, 0, 0)
    assert before["oldest_due"] == hook_app.clock.now()
    deliver_due(hook_app)
    with hook_app.databases.begin("notify") as conn:
        after = queue_stats(conn, hook_app.clock.now())
        later = queue_stats(conn, hook_app.clock.now() + timedelta(hours=2))
    assert (after["queued"], after["failed_last_hour"], after["oldest_due"]) == (0, 1, None)
    assert later["failed_last_hour"] == 0


def test_a_reminder_queued_before_an_ack_is_skipped_not_sent_after_it(hook_app, receiver):
    from tests.delivery_support import transition_alert

    app = hook_app
    app.config.delivery.reminder_interval = 3600
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url("/ok"))
        acked, still_open = insert_alert(conn, now), insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    assert deliver_due(app).sent == 2                        # the two "opened" notices
    app.clock.advance(timedelta(hours=1))
    with app.databases.begin("notify") as conn:
        assert plan_notifications(conn, app.config, app.clock.now()) == 2   # both reminders queued
        transition_alert(conn, acked, "acked", app.clock.now(), status="ack")  # then the ack
    summary = deliver_due(app)
    assert (summary.sent, summary.skipped) == (1, 1)
    with app.databases.begin("notify") as conn:
        reminders = {str(r["alert_id"]): r for r in notifications(conn, transition="reminder")}
    assert reminders[acked]["status"] == "skipped" and reminders[acked]["error"] == "alert is ack; reminder dropped"
    assert reminders[still_open]["status"] == "sent"
    assert [r.json()["data"]["alert"]["id"] for r in receiver.received[2:]] == [still_open]


# ------------------------------------------------------------------ claims that rewrite no index
# (ddl/notify/0006): the lease lives in lease_until, next_attempt_at keeps the due time.

CLAIM_WRITES = ("send_attempts", "last_attempt_at", "lease_until", "claim_token")


def test_a_claim_holds_the_row_by_its_lease_and_keeps_its_due_time(hook_app, receiver):
    from engine.dispatcher import queue_stats
    from engine.queries import query

    queue(hook_app, receiver.url("/ok"))
    due = hook_app.clock.now()
    Dispatcher(hook_app).claim(due, uuid.uuid4())
    (row,) = rows(hook_app)
    lease_end = due + timedelta(seconds=hook_app.config.delivery.lease)
    assert (row["next_attempt_at"], row["lease_until"], row["send_attempts"]) == (due, lease_end, 1)
    assert row["claim_token"] is not None
    hook_app.clock.advance(timedelta(seconds=hook_app.config.delivery.lease - 1))
    assert deliver_due(hook_app).claimed == 0            # due, but held until the lease's end
    with hook_app.databases.begin("notify") as conn:
        # The long-running dispatcher sleeps until the lease's end, not "due already".
        assert conn.execute(query("dispatcher", "next_due")).scalar() == lease_end
        assert queue_stats(conn, hook_app.clock.now())["in_flight"] == 1
    hook_app.clock.advance(timedelta(seconds=1))
    assert deliver_due(hook_app).sent == 1
    (row,) = rows(hook_app)
    assert (row["status"], row["send_attempts"], row["lease_until"], row["claim_token"]) == ("sent", 2, None, None)


def test_a_retry_clears_the_lease_and_moves_the_due_time(hook_app, receiver):
    queue(hook_app, receiver.url("/status/503"))
    assert deliver_due(hook_app).retrying == 1
    (row,) = rows(hook_app)
    assert row["status"] == "queued" and row["lease_until"] is None and row["claim_token"] is None
    assert row["next_attempt_at"] > hook_app.clock.now()


def test_no_index_of_notifications_reads_a_column_the_claim_writes(hook_app):
    # A claim can be a HOT update (no index entry written) only while no index key or predicate
    # uses a column it changes; an index added on one of them would silently undo that.
    with hook_app.databases.begin("notify") as conn:
        definitions = conn.execute(text(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = 'notify.notifications'::regclass")).scalars().all()
        options = conn.execute(text(
            "SELECT reloptions FROM pg_class WHERE oid = 'notify.notifications'::regclass")).scalar()
    assert len(definitions) >= 5
    for definition in definitions:
        assert not [column for column in CLAIM_WRITES if column in definition], definition
    assert "fillfactor=45" in options


def test_a_claim_is_a_hot_update(hook_app, receiver):
    from engine.dispatcher import DISPATCHER_SESSION
    from engine.queries import raw_query

    queue(hook_app, receiver.url("/ok"), alerts=20)
    now = hook_app.clock.now()
    with hook_app.databases.connect_raw("notify", settings=DISPATCHER_SESSION) as conn:
        claimed = conn.execute(raw_query("dispatcher", "claim_due"), Dispatcher(hook_app)._claim_params(now, uuid.uuid4())).fetchall()
        # This transaction's own counters: every claimed row was updated without a new index entry.
        updated, hot = conn.execute("SELECT pg_stat_get_xact_tuples_updated(c.oid), pg_stat_get_xact_tuples_hot_updated(c.oid)"
                                    " FROM pg_class c WHERE c.oid = 'notify.notifications'::regclass").fetchone()
        conn.rollback()
    assert len(claimed) == 20 and (updated, hot) == (20, 20)


@pytest.mark.parametrize("name", ["claim_due", "record_results"])
def test_claims_and_results_find_their_rows_by_index_never_by_scanning_the_table(hook_app, receiver, name):
    from engine.dispatcher import DISPATCHER_SESSION, Outcome
    from engine.queries import raw_query

    queue(hook_app, receiver.url("/ok"), alerts=50)
    with hook_app.databases.connect_raw("notify", settings=DISPATCHER_SESSION) as conn:
        conn.execute("ANALYZE notify.notifications")   # statistics that say no row holds a claim
        dispatcher = Dispatcher(hook_app)
        params = dispatcher._claim_params(hook_app.clock.now(), uuid.uuid4())
        if name == "record_results":
            from psycopg.rows import dict_row

            claimed = conn.cursor(row_factory=dict_row).execute(raw_query("dispatcher", "claim_due"), params).fetchall()
            params = dispatcher._record_params(claimed, [Outcome("sent", sent_at=hook_app.clock.now())] * len(claimed),
                                               params["token"])
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + raw_query("dispatcher", name), params))
        conn.rollback()
    assert "Seq Scan on notifications" not in plan and "Hash Join" not in plan, plan


def test_a_kept_connection_that_died_between_passes_is_replaced_in_the_same_pass(hook_app, receiver):
    import asyncio

    queue(hook_app, receiver.url("/ok"))

    async def two_passes():
        async with Dispatcher(hook_app) as dispatcher:
            first = await dispatcher.deliver_until_idle()
            pids = [conn.info.backend_pid for conn in dispatcher._connections]
            with hook_app.databases.begin("notify") as conn:   # as a server restart would
                for pid in pids:
                    assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), dict(pid=pid)).scalar()
                insert_alert(conn, hook_app.clock.now())
                plan_notifications(conn, hook_app.config, hook_app.clock.now())
            second = await dispatcher.deliver_until_idle()
            return first, second, pids

    first, second, pids = asyncio.run(two_passes())
    assert len(pids) == hook_app.config.delivery.workers
    assert (first.sent, second.sent) == (1, 1)
    assert len(receiver.received) == 2


def test_attempts_and_latency_are_counted_by_channel_and_outcome(hook_app, receiver):
    from engine import metrics
    from tests.delivery_support import OTHER_TENANT

    metrics.reset_for_tests()
    queue(hook_app, receiver.url("/ok"), alerts=2)
    now = hook_app.clock.now()
    with hook_app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url("/status/503"), tenant_id=OTHER_TENANT)
        insert_alert(conn, now, tenant_id=OTHER_TENANT)
        plan_notifications(conn, hook_app.config, now)
    hook_app.clock.advance(timedelta(seconds=3))  # planned at the transition, sent 3 s later
    deliver_due(hook_app)

    def value(name, **labels):
        return metrics.REGISTRY.get_sample_value(name, labels) or 0

    assert value("notify_delivery_attempts_total", channel="webhook", outcome="sent") == 2
    assert value("notify_delivery_attempts_total", channel="webhook", outcome="retry") == 1
    assert value("notify_delivery_latency_seconds_count", channel="webhook") == 2
    assert value("notify_delivery_latency_seconds_sum", channel="webhook") == 6.0


def test_a_copy_with_no_delivery_workers_claims_nothing_until_a_reload_gives_it_some(hook_app, receiver):
    """delivery.workers 0: a notifyd that serves the API (or runs jobs) and leaves delivery to others."""
    import dataclasses

    from engine.config import Duration

    class CountingStop(threading.Event):
        waits = 0

        def wait(self, timeout=None):
            CountingStop.waits += 1
            return super().wait(timeout)

    hook_app.config.delivery.workers = 0
    hook_app.config.delivery.poll_interval = Duration(0.05)
    queue(hook_app, receiver.url("/ok"))
    stop = CountingStop()
    worker = threading.Thread(target=run_dispatcher, args=(hook_app, stop))
    worker.start()
    try:
        wait_for(lambda: CountingStop.waits >= 2, "the idle copy polled its config twice", timeout=15)
        assert [r["status"] for r in rows(hook_app)] == ["queued"] and receiver.received == []
        # A reload (SIGHUP replaces app.config) that gives it workers: it delivers.
        hook_app.config = dataclasses.replace(
            hook_app.config, delivery=dataclasses.replace(hook_app.config.delivery, workers=2))
        wait_for(lambda: [r["status"] for r in rows(hook_app)] == ["sent"], "sent after the reload", timeout=15)
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive() and len(receiver.received) == 1


def test_delivery_workers_may_be_zero_but_not_negative(config_file):
    from engine.config import load_config
    from engine.errors import ConfigError

    assert load_config(config_file("delivery:\n  workers: 0\n")).delivery.workers == 0
    with pytest.raises(ConfigError, match="delivery.workers: must be 0"):
        load_config(config_file("delivery:\n  workers: -1\n"))
