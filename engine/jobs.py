"""The periodic jobs and long-running workers notifyd runs; each job is also callable on its own
(notifyctl, tests).

Adding a job is one line in PERIODIC_JOBS: `PeriodicJob("<name>", <fn(app)>)`, its interval being
the `jobs.<name>` config key (0 turns it off). A long-running loop is one line in WORKERS:
`Worker("<name>", <fn(app, stop_event)>)`; it must stop claiming and return once stop_event is
set, within daemon.shutdown_grace. It runs in its own thread: an asyncio worker calls
asyncio.run(...) inside and watches the threading.Event (e.g. `await asyncio.to_thread(stop.wait)`).
One that raises is restarted with backoff.
"""

from __future__ import annotations

import logging
import time

from engine import metrics
from engine.app import App
from engine.collect import run_collection
from engine.detect import run_detection
from engine.noise import release_job
from engine.partitions import ensure_partitions, prune_partitions
from engine.retention import (delete_alertless_notifications, delete_old_job_runs, delete_resolved_alerts,
                              delete_stale_state)
from engine.scheduler import PeriodicJob, Worker, is_connection_error, job_lock, one_line

log = logging.getLogger(__name__)


def maintenance_job(app: App) -> None:
    """Partitions: premake the coming months, then drop (or archive and drop) expired ones."""
    now = app.clock.now()
    settings = app.config.partitions
    created = ensure_partitions(app.databases, now, settings.months_ahead)
    archiver = None
    archive_dir = None
    if settings.archive_dir:
        from pathlib import Path

        from engine.archive import archive_partition as archiver

        archive_dir = Path(settings.archive_dir)
    pruned = prune_partitions(app.databases, now, settings.keep_months, archive_dir=archive_dir, archiver=archiver)
    log.info("maintenance: %d partitions created, %d dropped", len(created), len(pruned))


def cleanup_job(app: App) -> None:
    """Deletes resolved alerts (with their notifications), notifications of no alert (test sends,
    group messages: kept as long as resolved alerts) and job_runs history past retention, and
    bookkeeping that no longer matters (old group times, ended console sessions)."""
    now = app.clock.now()
    retention = app.config.retention
    alerts = alertless = runs = 0
    if retention.resolved_alerts > 0:
        alerts = delete_resolved_alerts(app.databases, now, retention.resolved_alerts, retention.batch_size)
        alertless = delete_alertless_notifications(app.databases, now, retention.resolved_alerts,
                                                   retention.batch_size)
    if retention.job_runs > 0:
        runs = delete_old_job_runs(app.databases, now, retention.job_runs, retention.batch_size)
    stale = delete_stale_state(app.databases, app.config, now)
    if alerts or alertless or runs or stale:
        log.info("cleanup: %d resolved alerts, %d notifications of no alert, %d job runs and %d stale group "
                 "times or console sessions deleted", alerts, alertless, runs, stale)


def collect_job(app: App) -> None:
    """Every configured snapshot source (engine.collect); a failing source is logged, not fatal."""
    run_collection(app)


def detect_job(app: App) -> None:
    """One detection pass (engine.detect): snapshots -> alerts."""
    run_detection(app)


def plan_job(app: App) -> int:
    """Re-open alerts whose ack ran out (engine.alerts.expire_acks, planned in its own
    transaction), then plan notifications of transitions not yet planned, due reminders and due
    escalation steps (engine.planner)."""
    from engine.alerts import expire_acks
    from engine.planner import plan_notifications

    now = app.clock.now()
    expired = expire_acks(app, now)
    if expired:
        log.info("plan: %d acks ran out; their alerts are open again", expired)
    with app.databases.begin("notify") as conn:
        return plan_notifications(conn, app.config, now)


SNAPSHOTS_CHANNEL = "notify_engine_snapshots"   # NOTIFYed by record_snapshots at commit
PUSH_DEBOUNCE = 0.05    # seconds: a burst of pushes within it becomes one detection pass


def detect_on_push_worker(app: App, stop_event) -> None:
    """A detection pass soon after snapshots are pushed (record_snapshots, `notifyctl snapshot
    record`), so a pushed value that crosses a threshold does not wait for the next jobs.detect
    tick. LISTENs on SNAPSHOTS_CHANNEL; a wake-up waits PUSH_DEBOUNCE for more pushes, then runs
    one pass under the detect job's advisory lock, so passes never overlap across copies (a copy
    that finds the lock taken waits for it: the pass in progress may predate its snapshot; its own
    pass then finds little or nothing to fold). Off when jobs.detect is 0. A missed NOTIFY (the
    listener reconnecting) costs nothing but latency: the periodic tick still folds everything.
    """
    listener = app.databases.connect_raw("notify", autocommit=True)
    try:
        listener.execute(f"LISTEN {SNAPSHOTS_CHANNEL}")
        while not stop_event.is_set():
            if not any(True for _ in listener.notifies(timeout=0.5, stop_after=1)):
                continue
            stop_event.wait(PUSH_DEBOUNCE)
            for _ in listener.notifies(timeout=0.001):
                pass   # the burst's other wake-ups: this pass covers them
            if stop_event.is_set() or float(app.config.jobs.detect) <= 0:
                continue
            # Waiting is bounded, so a stop is never stuck behind a very long pass.
            with job_lock(app, "detect", wait_seconds=10):
                started = time.monotonic()
                try:
                    run_detection(app)
                except Exception as exc:  # noqa: BLE001 - logged; the next push or tick tries again
                    metrics.PUSH_DETECTION_PASSES.labels(outcome="error").inc()
                    if is_connection_error(exc):
                        raise   # the supervisor probes the database and restarts this worker
                    log.error("detection after a push failed: %s", one_line(exc))
                else:
                    metrics.PUSH_DETECTION_PASSES.labels(outcome="ok").inc()
                    metrics.PUSH_DETECTION_DURATION.observe(time.monotonic() - started)
    finally:
        listener.close()


def dispatcher_worker(app: App, stop_event) -> None:
    """The delivery dispatcher (engine.dispatcher.run_dispatcher) until stop_event is set."""
    from engine.dispatcher import run_dispatcher

    run_dispatcher(app, stop_event)


# What notifyd runs; each periodic job ticks at its `jobs.<name>` interval, once across copies.
PERIODIC_JOBS: list[PeriodicJob] = [
    PeriodicJob("collect", collect_job),
    PeriodicJob("detect", detect_job),
    PeriodicJob("maintenance", maintenance_job),
    PeriodicJob("cleanup", cleanup_job),
    PeriodicJob("plan", plan_job),
    PeriodicJob("release", release_job),
]

WORKERS: list[Worker] = [Worker("dispatcher", dispatcher_worker), Worker("detect-on-push", detect_on_push_worker)]
