"""The job runner: one run per tick across copies, failures recorded not fatal, faults survived."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from sqlalchemy import make_url, text

from engine import metrics
from engine.app import App
from engine.db import Databases
from engine.scheduler import PeriodicJob, Supervisor, Worker, slot_start
from tests.daemon_harness import wait_for


class CountingJob:
    def __init__(self, fail_with: Exception | None = None):
        self.calls = 0
        self.fail_with = fail_with

    def __call__(self, app):
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with


def job_runs(databases, job_name):
    with databases.begin("notify") as conn:
        return conn.execute(text(
            "SELECT slot_start, status, error, ran_by FROM notify.job_runs WHERE job_name = :j ORDER BY started_at"),
            {"j": job_name}).mappings().all()


@pytest.fixture(autouse=True)
def fresh_metrics():
    metrics.reset_for_tests()


def every_minute(name, fn):
    return PeriodicJob(name, fn, interval=lambda config: 60)


def test_slot_start_is_aligned_to_the_epoch_so_every_copy_agrees():
    moment = datetime(2026, 11, 25, 12, 0, 42, 500000, tzinfo=timezone.utc)
    assert slot_start(moment, 60) == datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert slot_start(moment, 86400) == datetime(2026, 11, 25, tzinfo=timezone.utc)
    assert slot_start(moment, 0.5) == datetime(2026, 11, 25, 12, 0, 42, 500000, tzinfo=timezone.utc)


def test_a_tick_runs_the_job_once_per_slot_and_records_it(app, clock):
    job_fn = CountingJob()
    job = every_minute("sample", job_fn)
    supervisor = Supervisor(app, [job])
    assert supervisor.run_tick(job) == "ok"
    assert supervisor.run_tick(job) == "skipped"       # same slot: already ran
    clock.advance(timedelta(seconds=60))
    assert supervisor.run_tick(job) == "ok"
    assert job_fn.calls == 2
    runs = job_runs(app.databases, "sample")
    assert [r["slot_start"] for r in runs] == [datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc),
                                               datetime(2026, 11, 25, 12, 1, tzinfo=timezone.utc)]
    assert all(r["status"] == "ok" and r["error"] is None for r in runs)


def test_two_copies_ticking_in_the_same_slot_run_the_job_once(config, clock):
    job_fn = CountingJob()
    job = every_minute("sample", job_fn)
    with App(config, clock) as first, App(config, clock) as second:
        outcomes = [Supervisor(first, [job]).run_tick(job), Supervisor(second, [job]).run_tick(job)]
    assert sorted(outcomes) == ["ok", "skipped"]
    assert job_fn.calls == 1


def test_a_tick_skips_while_another_copy_holds_the_jobs_lock(app, database_urls):
    job_fn = CountingJob()
    job = every_minute("sample", job_fn)
    with psycopg.connect(database_urls["notify"]) as other_copy:
        other_copy.execute("SELECT pg_advisory_xact_lock(hashtextextended('notifyd.job:' || 'sample', 0))")
        assert Supervisor(app, [job]).run_tick(job) == "skipped"
    assert job_fn.calls == 0
    assert job_runs(app.databases, "sample") == []


def test_a_failing_job_is_recorded_redacted_and_the_runner_goes_on(app, clock, caplog):
    job = every_minute("broken", CountingJob(ValueError("cannot reach https://user:hunter2@example.org/x")))
    supervisor = Supervisor(app, [job])
    with caplog.at_level(logging.ERROR):
        assert supervisor.run_tick(job) == "error"
    clock.advance(timedelta(seconds=60))
    assert supervisor.run_tick(job) == "error"
    runs = job_runs(app.databases, "broken")
    assert [r["status"] for r in runs] == ["error", "error"]
    assert runs[0]["error"].startswith("ValueError: cannot reach https://[REDACTED]@")
    assert "hunter2" not in runs[0]["error"]
    assert metrics.JOB_FAILURES.labels(job="broken")._value.get() == 2
    assert any("job broken failed" in r.getMessage() for r in caplog.records)


def test_a_tick_after_the_servers_backends_were_terminated_succeeds(app, clock, database_urls):
    job = every_minute("sample", CountingJob())
    supervisor = Supervisor(app, [job])
    assert supervisor.run_tick(job) == "ok"
    with psycopg.connect(database_urls["notify"], autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'notify-engine'"
        ).fetchone()[0]
    assert killed >= 1
    clock.advance(timedelta(seconds=60))
    assert supervisor.run_tick(job) == "ok"
    assert len(job_runs(app.databases, "sample")) == 2


@pytest.mark.fresh_database   # its own database: the server setting below is per database
def test_a_job_outlasting_idle_in_transaction_session_timeout_is_still_recorded(config, clock, database_urls):
    # Issue 12: nothing of the tick sits idle in a transaction while the job runs (the lock is a
    # session's), so the server's idle_in_transaction_session_timeout cannot end it mid-job.
    url = database_urls["notify"]
    name = make_url(url).database
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET idle_in_transaction_session_timeout = '200ms'")
    try:
        def outlasting_job(app):
            # Ends once the server has ended a session left idle in a transaction after the job
            # began: whatever of the tick had been idle in a transaction since before, it ended too.
            canary = psycopg.connect(url)
            canary.execute("SELECT 1")
            pid = canary.info.backend_pid
            with psycopg.connect(url, autocommit=True) as watcher:
                wait_for(lambda: not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                         "the server to end an idle transaction", timeout=10)
            canary.close()

        job = every_minute("outlasting", outlasting_job)
        with App(config, clock) as app:    # opened after the setting, so every session has it
            assert Supervisor(app, [job]).run_tick(job) == "ok"
            assert [r["status"] for r in job_runs(app.databases, "outlasting")] == ["ok"]
            # The lock went back with its connection: the next tick takes it (and finds the slot run).
            assert Supervisor(app, [job]).run_tick(job) == "skipped"
            with psycopg.connect(url, autocommit=True) as other_copy:
                assert other_copy.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended('notifyd.job:' || 'outlasting', 0))").fetchone()[0]
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" RESET idle_in_transaction_session_timeout')


def test_a_job_whose_lock_session_died_is_still_recorded_and_leaves_the_lock_free(app, clock, database_urls):
    # The lock's own connection dies mid-job: the lock goes with the session, the run is recorded
    # through another connection, and the dead one is not handed out again by the pool.
    url = database_urls["notify"]

    def job_losing_its_lock(app):
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchall()
        assert killed == [(True,)]

    job = every_minute("orphaned", job_losing_its_lock)
    supervisor = Supervisor(app, [job])
    assert supervisor.run_tick(job) == "ok"
    assert [r["status"] for r in job_runs(app.databases, "orphaned")] == ["ok"]
    with psycopg.connect(url, autocommit=True) as other_copy:
        assert other_copy.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()").fetchone()[0] == 0
    clock.advance(timedelta(seconds=60))
    assert supervisor.run_tick(every_minute("sample", CountingJob())) == "ok"


def test_an_unreachable_database_is_logged_once_and_recovery_wakes_the_jobs(config, clock, database_urls, caplog):
    # The same database on a port nothing listens on stands for a server that went away.
    name = make_url(database_urls["notify"]).database
    down_urls = {s: f"postgresql://nobody@127.0.0.1:9/{name}" for s in database_urls}
    app = App(config, clock).open()
    try:
        good = app._databases
        app._databases = Databases(down_urls)
        woken = []
        job = every_minute("sample", CountingJob())
        supervisor = Supervisor(app, [job])
        supervisor.health.on_recovered = lambda: woken.append(True)
        with caplog.at_level(logging.INFO, logger="notifyd.scheduler"):
            assert supervisor.health.probe() is False
            assert supervisor.health.probe() is False
            assert supervisor.run_tick(job) == "skipped"     # quiet while down
            app._databases.dispose()
            app._databases = good
            assert supervisor.health.probe() is True
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if "unreachable" in m]) == 1
        assert len([m for m in messages if "reachable again" in m]) == 1
        assert woken == [True]
        assert supervisor.run_tick(job) == "ok"
        _, body = supervisor.health_report()
        assert body["databases"] == {name: "ok"}   # (not started: the scheduler part says stopped)
    finally:
        app.close()


def test_stop_lets_an_inflight_tick_finish_within_the_grace_period(app):
    entered = threading.Event()
    supervisor = None

    def finishing_job(app):
        entered.set()
        supervisor.stop_event.wait(10)   # in-flight work sees the stop and wraps up

    job = every_minute("slow", finishing_job)
    supervisor = Supervisor(app, [job])
    outcome = []
    ticking = threading.Thread(target=lambda: outcome.append(supervisor.run_tick(job)))
    ticking.start()
    assert entered.wait(10)
    assert supervisor.stop(grace=10) is True
    ticking.join(10)
    assert outcome == ["ok"]
    assert [r["status"] for r in job_runs(app.databases, "slow")] == ["ok"]
    assert supervisor.run_tick(job) == "skipped"           # nothing new starts after stop


def test_stop_reports_work_that_outlives_the_grace_period(app):
    entered, release = threading.Event(), threading.Event()

    def stuck_job(app):
        entered.set()
        release.wait(10)

    job = every_minute("stuck", stuck_job)
    supervisor = Supervisor(app, [job])
    ticking = threading.Thread(target=supervisor.run_tick, args=[job])
    ticking.start()
    assert entered.wait(10)
    try:
        assert supervisor.stop(grace=0) is False
    finally:
        release.set()
        ticking.join(10)


def test_a_worker_that_raises_is_restarted_and_stops_on_the_stop_event(app):
    starts = []
    running_again = threading.Event()

    def dispatcher(app, stop):
        starts.append(True)
        if len(starts) == 1:
            raise RuntimeError("lost the connection")
        running_again.set()
        stop.wait()

    supervisor = Supervisor(app, [], [Worker("dispatcher", dispatcher)])
    supervisor.start()
    try:
        assert running_again.wait(15)
        healthy, body = supervisor.health_report()
        assert body["jobs"]["dispatcher"] == "ok"
    finally:
        assert supervisor.stop(grace=10) is True
    assert len(starts) == 2
    assert metrics.WORKER_RESTARTS.labels(worker="dispatcher")._value.get() == 1


def test_healthz_calls_a_job_stale_after_two_intervals_without_a_tick(app):
    job = PeriodicJob("sample", CountingJob(), interval=lambda config: 86400)
    supervisor = Supervisor(app, [job])
    supervisor.start()     # ticks every job once at start
    try:
        deadline = threading.Event()
        for _ in range(200):
            if supervisor.job_states["sample"].last_tick is not None:
                break
            deadline.wait(0.05)
        # The daily trigger follows the wall clock: run across 00:00 UTC, a real tick would land
        # between the two reports below. Paused, the scheduler still counts as running.
        supervisor._scheduler.pause()
        healthy, body = supervisor.health_report()
        assert healthy and body["jobs"]["sample"] == "ok"
        supervisor.job_states["sample"].last_tick -= 2 * 86400 + 61    # as if no tick finished since
        healthy, body = supervisor.health_report()
        assert not healthy and body["jobs"]["sample"] == "stale" and body["status"] == "unavailable"
        supervisor.apply_config(app.config)      # a reload keeps an unchanged job's trigger and history
        assert supervisor.health_report()[1]["jobs"]["sample"] == "stale"
    finally:
        supervisor.stop(grace=10)


def test_a_repeated_job_error_logs_its_traceback_once(app, clock, caplog):
    job = every_minute("broken", CountingJob(ValueError("same every time")))
    supervisor = Supervisor(app, [job])
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert supervisor.run_tick(job) == "error"
            clock.advance(timedelta(seconds=60))
    failures = [r for r in caplog.records if "job broken failed" in r.getMessage()]
    assert len(failures) == 3
    assert [bool(r.exc_info) for r in failures] == [True, False, False]
