"""Retention of the notify DB's state tables (the log tables' retention is partition pruning).

notify.alerts is not partitioned (it is state, see docs/SCHEMA.md), so old resolved alerts are
deleted row by row, in batches: each batch is its own short transaction, so the cleanup never
holds many locks or one long transaction however much has piled up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.db import Databases
from engine.queries import query


def _delete_in_batches(databases: Databases, name: str, cutoff: datetime, batch_size: int) -> int:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    deleted = 0
    while True:
        with databases.begin("notify") as conn:
            count = conn.execute(query("retention", name), {"cutoff": cutoff, "batch_size": batch_size}).rowcount
        deleted += count
        if count < batch_size:
            return deleted


def delete_resolved_alerts(databases: Databases, now: datetime, older_than: float, batch_size: int) -> int:
    """Deletes alerts resolved more than `older_than` seconds before `now` (with their notifications)."""
    return _delete_in_batches(databases, "delete_resolved_alerts", now - timedelta(seconds=older_than), batch_size)


def delete_alertless_notifications(databases: Databases, now: datetime, older_than: float, batch_size: int) -> int:
    """Deletes finished notification rows of no alert (test sends, group messages) created more than
    `older_than` seconds before `now`; a group message outlives its last member still kept."""
    return _delete_in_batches(databases, "delete_alertless_notifications", now - timedelta(seconds=older_than),
                              batch_size)


def delete_stale_state(databases: Databases, config, now: datetime) -> int:
    """Deletes bookkeeping rows that can no longer matter: groups' last-message times older than
    the longest group_interval configured (and a day), console sessions past their end, idle past
    api.console_idle_timeout or of a
    revoked token. Returns how many rows went."""
    grouping = config.grouping
    longest = max([float(grouping.group_interval), float(grouping.destinations.group_interval), 86400.0]
                  + [float(r.group_interval) for r in config.routes if r.group_interval is not None])
    with databases.begin("notify") as conn:
        groups = conn.execute(query("retention", "delete_stale_group_state"),
                              {"cutoff": now - timedelta(seconds=longest)}).rowcount
        sessions = conn.execute(query("console", "delete_expired_sessions"),
                                {"now": now, "idle_seconds": float(config.api.console_idle_timeout)}).rowcount
    return groups + sessions


def delete_old_job_runs(databases: Databases, now: datetime, older_than: float, batch_size: int) -> int:
    """Deletes notify.job_runs rows that started more than `older_than` seconds before `now`."""
    return _delete_in_batches(databases, "delete_old_job_runs", now - timedelta(seconds=older_than), batch_size)
