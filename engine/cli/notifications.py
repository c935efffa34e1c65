"""notifyctl notifications [--status S] [--alert ID] [--json] | notifications retry [ID] [--status S]
[--since DURATION] [--tenant T] [--destination D] [--channel C] [--dry-run]."""

from __future__ import annotations

import uuid
from datetime import datetime

from engine.cli.output import format_time, print_json, print_table
from engine.config import CHANNELS, Duration
from engine.errors import BadInput
from engine.notifications import (RETRYABLE, STATUSES, RetryFilter, list_notifications, retry_matching,
                                  retry_notification, show_notification)

ATTEMPT_COLUMNS = ["attempt", "started_at", "duration_ms", "outcome", "code", "address", "error", "excerpt"]
LISTED = ["id", "alert_id", "channel", "recipient", "status", "send_attempts", "last_attempt_at", "error"]
# What happened to the row's transition, in words (engine/accounting.py); last, it is the longest.
LISTED_TABLE = [c for c in LISTED if c != "error"] + ["what_happened"]


def register(subparsers, common) -> None:
    group = subparsers.add_parser("notifications", parents=[common], help="delivery records; retry a failed one")
    group.add_argument("--status", choices=STATUSES)
    group.add_argument("--alert", metavar="ID", help="only this alert's notifications")
    group.add_argument("--limit", type=int, default=1000, help="at most this many rows (default 1000)")
    group.add_argument("--json", action="store_true", help="print one JSON array")
    group.set_defaults(handler=list_command)
    actions = group.add_subparsers(dest="notifications_command", metavar="ACTION")
    retry = actions.add_parser("retry", parents=[common],
                               help="put a failed notification (ID), or all that match the filters, back in the "
                                    "queue, due now")
    retry.add_argument("id", metavar="ID", nargs="?")
    # Own dests: the listing's --status above shares the namespace.
    retry.add_argument("--status", dest="retry_status", choices=RETRYABLE,
                       help="notifications in this status (default with filters: failed)")
    retry.add_argument("--since", dest="retry_since", metavar="DURATION",
                       help="last attempted (or created, if never attempted) within this long, e.g. 2h")
    retry.add_argument("--tenant", dest="retry_tenant", metavar="T", help="only this tenant's")
    retry.add_argument("--destination", dest="retry_destination", metavar="D", help="only this destination's")
    retry.add_argument("--channel", dest="retry_channel", choices=CHANNELS, help="only this channel's")
    retry.add_argument("--dry-run", action="store_true", help="print how many would be re-queued; change nothing")
    retry.add_argument("--actor", metavar="NAME", help="who re-drives, for the audit row (default: the OS user)")
    retry.set_defaults(handler=retry_command)
    show = actions.add_parser("show", parents=[common], help="one notification and its attempts")
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", dest="show_json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=show_command)


def _uuid(value: str, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadInput(f"{where}: expected a UUID, got {value!r}") from None


def list_command(app, args) -> int:
    rows = list_notifications(app, status=args.status, alert_id=args.alert, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LISTED_TABLE)
    return 0


def retry_command(app, args) -> int:
    filtered = [args.retry_status, args.retry_since, args.retry_tenant, args.retry_destination, args.retry_channel]
    if args.id is not None:
        if any(value is not None for value in filtered) or args.dry_run:
            raise BadInput("ID: retry ID takes no filters and no --dry-run; leave ID out to retry all that match")
        notification_id = _uuid(args.id, "ID")
        with app.databases.begin("notify") as conn:
            retry_notification(conn, notification_id, app.clock.now())
        print(f"queued {args.id}")
        return 0
    if all(value is None for value in filtered):
        raise BadInput("retry: give an ID, or at least one of --status, --since, --tenant, --destination, --channel")
    since = None
    if args.retry_since is not None:
        try:
            since = float(Duration.parse(args.retry_since))
        except ValueError as exc:
            raise BadInput(f"--since: {exc}") from None
    filters = RetryFilter(status=args.retry_status or "failed", since_seconds=since,
                          tenant_id=_uuid(args.retry_tenant, "--tenant") if args.retry_tenant else None,
                          destination_id=(_uuid(args.retry_destination, "--destination")
                                          if args.retry_destination else None),
                          channel=args.retry_channel)
    counts = retry_matching(app, filters, dry_run=args.dry_run, actor=args.actor)
    verb = "would re-queue" if counts.dry_run else "re-queued"
    line = f"{verb} {counts.requeued} {filters.status} notifications"
    if counts.skipped:
        line += f"; skipped {counts.skipped} whose destination is removed or disabled"
    print(line)
    return 0


def show_command(app, args) -> int:
    note = show_notification(app, _uuid(args.id, "ID"))
    if args.show_json or args.json:
        print_json(note)
        return 0
    attempts = note.pop("attempts")
    width = max(len(k) for k in note)
    for key, value in note.items():
        shown = "-" if value is None else format_time(value) if isinstance(value, datetime) else value
        print(f"{key.ljust(width)}  {shown}")
    print()
    if attempts:
        print_table(attempts, ATTEMPT_COLUMNS)
    else:
        print("no attempts")
    return 0
