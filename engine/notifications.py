"""Listing delivery records (`notifyctl notifications`, GET /v1/notifications) and re-queueing
them: `notifyctl notifications retry ID` (and POST /v1/notifications/{id}/retry), and the bulk re-drive
`notifications retry --status failed --since 2h --tenant T --destination D --channel C [--dry-run]`.

A re-queued notification is due now with a fresh attempt budget and keeps its idempotency key, so
a receiver that got an earlier attempt can drop the repeat (same webhook-id, same Message-ID).
A bulk re-drive is one UPDATE; rows of a destination that was removed or disabled since are left
as they are and counted; test sends (`destinations test`) are never re-queued.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy import Connection

from engine.accounting import describe
from engine.alerts import default_actor
from engine.app import App
from engine.destinations import masked_target
from engine.errors import BadInput, NotFound
from engine.queries import query

RETRYABLE = ("failed", "skipped")
STATUSES = ("queued", "sent", "failed", "skipped", "held", "grouped", "suppressed")


@dataclass(frozen=True)
class RetryFilter:
    status: str = "failed"
    since_seconds: Optional[float] = None      # last attempt (or creation, if never attempted) this recent
    tenant_id: Optional[uuid.UUID] = None
    destination_id: Optional[uuid.UUID] = None
    channel: Optional[str] = None

    def as_dict(self) -> dict:
        return {"status": self.status, "since_seconds": self.since_seconds,
                "tenant_id": str(self.tenant_id) if self.tenant_id else None,
                "destination_id": str(self.destination_id) if self.destination_id else None,
                "channel": self.channel}


@dataclass(frozen=True)
class RetryCount:
    requeued: int      # re-queued, or that a dry run would re-queue
    skipped: int       # matched the filters, but their destination is removed or disabled: left as they are
    dry_run: bool


def list_notifications(app, *, status: Optional[str] = None, alert_id: Optional[str] = None, limit: int,
                       after: Optional[tuple[datetime, uuid.UUID]] = None) -> list[dict]:
    """Newest first; `after` (the last row's created_at and id) continues a walk. Recipients masked."""
    if status is not None and status not in STATUSES:
        raise BadInput(f"--status: expected one of {', '.join(STATUSES)}, got {status!r}")
    alert = None
    if alert_id:
        try:
            alert = uuid.UUID(str(alert_id))
        except ValueError:
            raise BadInput(f"--alert: expected a UUID, got {alert_id!r}") from None
    if limit < 1:
        raise BadInput("--limit: must be at least 1")
    with app.databases.begin("notify") as conn:
        rows = [dict(r) for r in conn.execute(query("notifications", "notifications_page"), dict(
            status=status, alert_id=alert, limit=limit, after_created_at=after[0] if after else None,
            after_id=after[1] if after else None)).mappings()]
        describe(conn, rows)
    for row in rows:
        row["recipient"] = masked_target(row["recipient"])
    return rows


def retry_notification(conn: Connection, notification_id: uuid.UUID, now: datetime) -> None:
    """One failed or skipped notification back in the queue, due now. BadInput naming why not."""
    state = conn.execute(query("notifications", "notification_state"), dict(id=notification_id)).first()
    if state is not None and state.transition == "test":
        raise BadInput(f"ID: notification {notification_id} is a test send; run `notifyctl destinations test` "
                       "again instead")
    requeued = conn.execute(query("notifications", "retry_notification"), dict(id=notification_id, now=now)).first()
    if requeued is None:
        if state is None:
            raise NotFound(f"ID: no notification {notification_id}")
        raise BadInput(f"ID: notification {notification_id} is {state.status}; only failed or skipped ones are retried")


def retry_matching(app: App, filters: RetryFilter, *, dry_run: bool = False, actor: Optional[str] = None) -> RetryCount:
    """Re-queues every notification the filters match (or counts them: dry_run), in one UPDATE.
    A re-drive that re-queued something is audited in admin_log.admin_events (NOTIFICATIONS_RETRY,
    the filters and counts in `diff`)."""
    if filters.status not in RETRYABLE:
        raise BadInput(f"--status: only {' or '.join(RETRYABLE)} notifications are retried, not {filters.status!r}")
    now = app.clock.now()
    since = now - timedelta(seconds=filters.since_seconds) if filters.since_seconds is not None else None
    with app.databases.begin("notify") as conn:
        counts = conn.execute(query("notifications", "retry_matching"), dict(
            status=filters.status, since=since, tenant_id=filters.tenant_id, destination_id=filters.destination_id,
            channel=filters.channel, now=now, dry_run=dry_run)).one()
        if counts.requeued:
            actor = actor or default_actor()
            audit = dict(now=now, actor_admin_id=_uuid_or_none(actor), tenant_id=filters.tenant_id,
                         diff=json.dumps({"filters": filters.as_dict(), "requeued": counts.requeued,
                                          "skipped": counts.skipped, "actor": actor}))
            # As for ack: the audit row commits first when admin_log is its own database.
            if app.databases.urls["admin_log"] == app.databases.urls["notify"]:
                conn.execute(query("notifications", "insert_retry_audit"), audit)
            else:
                with app.databases.begin("admin_log") as admin:
                    admin.execute(query("notifications", "insert_retry_audit"), audit)
            conn.execute(query("planner", "wake_dispatchers"))
    return RetryCount(requeued=counts.matched if dry_run else counts.requeued, skipped=counts.skipped,
                      dry_run=dry_run)


def _uuid_or_none(value: str) -> Optional[uuid.UUID]:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def show_notification(app: App, notification_id: uuid.UUID) -> dict:
    """One notification with its attempts from the ledger (notify.delivery_attempts), oldest first.
    BadInput when no notification has that id. The recipient is masked as in every listing."""
    from engine.destinations import masked_target

    with app.databases.begin("notify") as conn:
        found = conn.execute(query("dispatcher", "show_notification"), dict(id=notification_id)).mappings().first()
        if found is None:
            raise BadInput(f"ID: no notification {notification_id}")
        note = dict(found)
        attempts = [dict(r) for r in conn.execute(query("dispatcher", "notification_attempts"),
                                                  dict(tenant_id=note["tenant_id"], id=note["id"])).mappings()]
        describe(conn, [note])
    note["recipient"] = masked_target(note["recipient"])
    note["attempts"] = attempts
    return note
