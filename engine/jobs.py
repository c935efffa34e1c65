"""The periodic jobs notifyd schedules; each is also callable on its own (notifyctl, tests)."""

from __future__ import annotations

import logging

from engine.app import App
from engine.partitions import ensure_partitions, prune_partitions

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


def _once_across_processes(app: App, job: str, step) -> None:
    """Runs step(app) unless another notifyd holds this job's advisory lock (DESIGN.md: each tick
    runs once across hosts). A session lock on a connection of its own, closed afterwards, so
    the lock can never leak into a pooled connection."""
    conn = app.databases.connect_raw("notify", autocommit=True)
    try:
        locked = conn.execute("SELECT pg_try_advisory_lock(hashtext('notify-engine.job'), hashtext(%s))",
                              (job,)).fetchone()[0]
        if not locked:
            log.info("%s: another process is running this tick; skipped", job)
            return
        step(app)
    finally:
        conn.close()  # releases the lock


def collect_job(app: App) -> None:
    """Every configured snapshot source (engine.collect); a failing source is logged, not fatal."""
    from engine.collect import run_collection

    _once_across_processes(app, "collect", run_collection)


def detect_job(app: App) -> None:
    """One detection pass (engine.detect): snapshots -> alerts."""
    from engine.detect import run_detection

    _once_across_processes(app, "detect", run_detection)
