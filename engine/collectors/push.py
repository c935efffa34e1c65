"""Push: other services (and `notifyctl snapshot record`) hand snapshots in directly."""

from __future__ import annotations

from typing import Any, Iterable

from engine import metrics
from engine.collectors import CollectorResult
from engine.queries import query
from engine.snapshots import copy_snapshots, iter_valid_snapshots


def record_snapshots(app, rows: Iterable[Any], *, source: str = "push") -> CollectorResult:
    """Validates rows ({tenant_id, base_id, metric, value[, window]} mappings), writes the valid
    ones now with one COPY, and returns the rejections (each naming the source and row)."""
    result = CollectorResult(source)
    valid = iter_valid_snapshots(source, rows, app.clock.now(), result.rejected)
    with app.databases.begin("notify") as notify:
        # Validation streams into the COPY: PostgreSQL stores rows while later ones are checked.
        result.written = copy_snapshots(notify.connection.driver_connection, valid)
        if result.written:
            # Delivered at commit: notifyd runs a detection pass soon after instead of waiting for
            # the next jobs.detect tick (engine.jobs.detect_on_push_worker).
            notify.execute(query("detect", "wake_detection"))
    if result.written:
        metrics.SNAPSHOTS_RECORDED.labels(source=source).inc(result.written)
    return result
