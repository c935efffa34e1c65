"""notifyctl notifications [--status S] [--alert ID] [--json] | notifications retry ID."""

from __future__ import annotations

from engine.cli.output import print_json, print_table
from engine.notifications import STATUSES, list_notifications, retry_notification

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


def list_command(app, args) -> int:
    rows = list_notifications(app, status=args.status, alert_id=args.alert, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LISTED)
    return 0


def retry_command(app, args) -> int:
    retry_notification(app, args.id)
    print(f"queued {args.id}")
    return 0
