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

from engine.app import App
from engine.collect import run_collection
from engine.detect import run_detection
from engine.partitions import ensure_partitions, prune_partitions
from engine.retention import delete_old_job_runs, delete_resolved_alerts
from engine.scheduler import PeriodicJob, Worker

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
    """Deletes resolved alerts (with their notifications) and job_runs history past retention."""
    now = app.clock.now()
    retention = app.config.retention
    alerts = runs = 0
    if retention.resolved_alerts > 0:
        alerts = delete_resolved_alerts(app.databases, now, retention.resolved_alerts, retention.batch_size)
    if retention.job_runs > 0:
        runs = delete_old_job_runs(app.databases, now, retention.job_runs, retention.batch_size)
    if alerts or runs:
        log.info("cleanup: %d resolved alerts and %d job runs deleted", alerts, runs)


def collect_job(app: App) -> None:
    """Every configured snapshot source (engine.collect); a failing source is logged, not fatal."""
    run_collection(app)


def detect_job(app: App) -> None:
    """One detection pass (engine.detect): snapshots -> alerts."""
    run_detection(app)


def plan_job(app: App) -> int:
    """Plan notifications of transitions not yet planned, and due reminders (engine.planner)."""
    from engine.planner import plan_notifications

    with app.databases.begin("notify") as conn:
        return plan_notifications(conn, app.config, app.clock.now())


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
]

WORKERS: list[Worker] = [Worker("dispatcher", dispatcher_worker)]
