"""Delivery records for people and services: listing and re-queueing by hand (notifyctl
notifications, GET /v1/notifications, POST /v1/notifications/{id}/retry)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Optional

from engine.destinations import masked_target
from engine.errors import BadInput, NotFound
from engine.queries import query

STATUSES = ("queued", "sent", "failed", "skipped")


def _uuid(value: str, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadInput(f"{where}: expected a UUID, got {value!r}") from None


def list_notifications(app, *, status: Optional[str] = None, alert_id: Optional[str] = None, limit: int,
                       after: Optional[tuple[datetime, uuid.UUID]] = None) -> list[dict]:
    """Newest first; `after` (the last row's created_at and id) continues a walk. Recipients masked."""
    if status is not None and status not in STATUSES:
        raise BadInput(f"--status: expected one of {', '.join(STATUSES)}, got {status!r}")
    alert = _uuid(alert_id, "--alert") if alert_id else None
    if limit < 1:
        raise BadInput("--limit: must be at least 1")
    with app.databases.begin("notify") as conn:
        rows = [dict(r) for r in conn.execute(query("notifications", "notifications_page"), dict(
            status=status, alert_id=alert, limit=limit, after_created_at=after[0] if after else None,
            after_id=after[1] if after else None)).mappings()]
    for row in rows:
        row["recipient"] = masked_target(row["recipient"])
    return rows


def retry_notification(app, notification_id: str) -> uuid.UUID:
    """Puts a failed or skipped notification back in the queue, due now, with a fresh attempt budget."""
    ident = _uuid(notification_id, "ID")
    with app.databases.begin("notify") as conn:
        requeued = conn.execute(query("dispatcher", "retry_notification"), dict(id=ident, now=app.clock.now())).first()
        if requeued is None:
            status = conn.execute(query("dispatcher", "notification_status"), dict(id=ident)).scalar()
            if status is None:
                raise NotFound(f"ID: no notification {notification_id}")
            raise BadInput(f"ID: notification {notification_id} is {status}; only failed or skipped ones are retried")
    return ident
