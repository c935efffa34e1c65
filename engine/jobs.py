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


def plan_job(app: App) -> int:
    """Plan notifications of transitions not yet planned, and due reminders (issue 4)."""
    from engine.planner import plan_notifications

    with app.databases.begin("notify") as conn:
        return plan_notifications(conn, app.config, app.clock.now())


def deliver_job(app: App):
    """One delivery pass over everything due now (notifyctl run-once); returns a DeliverySummary."""
    from engine.dispatcher import deliver_due

    return deliver_due(app)
