"""notifyctl notifications [--status S] [--alert ID] [--json] | notifications retry ID."""

from __future__ import annotations

import uuid

from engine.cli.output import print_json, print_table
from engine.destinations import masked_target
from engine.errors import BadInput
from engine.queries import query

STATUSES = ("queued", "sent", "failed", "skipped")
LISTED = ["id", "alert_id", "channel", "recipient", "status", "send_attempts", "last_attempt_at", "error"]


def register(subparsers, common) -> None:
    group = subparsers.add_parser("notifications", parents=[common], help="delivery records; retry a failed one")
    group.add_argument("--status", choices=STATUSES)
    group.add_argument("--alert", metavar="ID", help="only this alert's notifications")
    group.add_argument("--limit", type=int, default=1000, help="at most this many rows (default 1000)")
    group.add_argument("--json", action="store_true", help="print one JSON array")
    group.set_defaults(handler=list_command)
    actions = group.add_subparsers(dest="notifications_command", metavar="ACTION")
    retry = actions.add_parser("retry", parents=[common], help="put a failed notification back in the queue, due now")
    retry.add_argument("id", metavar="ID")
    retry.set_defaults(handler=retry_command)


def _uuid(value: str, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadInput(f"{where}: expected a UUID, got {value!r}") from None


def list_command(app, args) -> int:
    alert_id = _uuid(args.alert, "--alert") if args.alert else None
    if args.limit < 1:
        raise BadInput("--limit: must be at least 1")
    with app.databases.begin("notify") as conn:
        rows = [dict(r) for r in conn.execute(query("dispatcher", "list_notifications"),
                                              dict(status=args.status, alert_id=alert_id, limit=args.limit)).mappings()]
    for row in rows:
        row["recipient"] = masked_target(row["recipient"])
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LISTED)
    return 0


def retry_command(app, args) -> int:
    notification_id = _uuid(args.id, "ID")
    with app.databases.begin("notify") as conn:
        requeued = conn.execute(query("dispatcher", "retry_notification"),
                                dict(id=notification_id, now=app.clock.now())).first()
        if requeued is None:
            status = conn.execute(query("dispatcher", "notification_status"), dict(id=notification_id)).scalar()
            if status is None:
                raise BadInput(f"ID: no notification {args.id}")
            raise BadInput(f"ID: notification {args.id} is {status}; only failed or skipped ones are retried")
    print(f"queued {args.id}")
    return 0
