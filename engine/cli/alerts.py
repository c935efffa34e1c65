"""notifyctl alerts | show | ack | resolve."""

from __future__ import annotations

from engine.alerts import ack_alert, get_alert, list_alerts, parse_ack_for, resolve_alert
import sys
from datetime import datetime

from engine.cli.output import format_json, format_time, positive_int, print_json, print_table

LIST_COLUMNS = ["id", "tenant_id", "base_id", "kind", "severity", "status", "dedupe_key", "first_seen_at",
                "last_seen_at"]


def register(subparsers, common) -> None:
    listing = subparsers.add_parser("alerts", parents=[common], help="list alerts")
    listing.add_argument("--status", metavar="S", help="open, ack or resolved")
    listing.add_argument("--tenant", metavar="T", help="tenant id (UUID)")
    listing.add_argument("--kind", metavar="K", help="alert kind, e.g. RUNS_THRESHOLD")
    listing.add_argument("--severity", metavar="S", help="info, warn or critical")
    listing.add_argument("--limit", type=positive_int, default=1000, metavar="N",
                         help="at most this many alerts, newest activity first (default 1000)")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=alerts_command)

    show = subparsers.add_parser("show", parents=[common], help="one alert with its notifications")
    show.add_argument("alert_id", metavar="ALERT_ID")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=show_command)

    for verb, handler, text in (("ack", ack_command, "acknowledge an alert (audited)"),
                                ("resolve", resolve_command, "resolve an alert by hand (audited)")):
        parser = subparsers.add_parser(verb, parents=[common], help=text)
        parser.add_argument("alert_id", metavar="ALERT_ID")
        parser.add_argument("--actor", metavar="NAME", help="who acts (default: the OS user)")
        parser.add_argument("--comment", metavar="TEXT", help="why, kept in the audit row")
        if verb == "ack":
            parser.add_argument("--for", dest="ack_for", metavar="DURATION",
                                help="the ack lapses after this long (4h, 30m) and the alert is open again "
                                     "if still firing (default: escalation.ack_timeout of its severity, else never)")
        parser.set_defaults(handler=handler)


def alerts_command(app, args) -> int:
    rows = list_alerts(app, status=args.status, tenant_id=args.tenant, kind=args.kind, severity=args.severity,
                       limit=args.limit + 1)
    if len(rows) > args.limit:
        rows = rows[:args.limit]
        print(f"notifyctl: showing the first {args.limit} alerts; more match (--limit N for more)", file=sys.stderr)
    if args.json:
        print_json(rows)
    elif rows:
        print_table(rows, ["id", "tenant_id", "base_id", "kind", "severity", "status", "last_seen_at", "dedupe_key"])
    else:
        print("no alerts")
    return 0


def show_command(app, args) -> int:
    alert = get_alert(app, args.alert_id)
    if args.json:
        print_json(alert)
        return 0
    notes = alert.pop("notifications")
    context = alert.pop("context")
    escalation = alert.pop("escalation")
    width = max(len(k) for k in [*alert, *("context." + k for k in context)])
    for key, value in alert.items():
        shown = "-" if value is None else format_time(value) if isinstance(value, datetime) else value
        print(f"{key.ljust(width)}  {shown}")
    for key, value in context.items():
        print(f"{('context.' + key).ljust(width)}  {format_json(value)}")
    if notes:
        print()
        print_table(notes, [c for c in ("id", "transition", "channel", "recipient", "status", "send_attempts",
                                        "what_happened") if c in notes[0]])
    else:
        print("no notifications")
    _print_escalation(escalation)
    return 0


def _print_escalation(escalation: dict) -> None:
    print()
    for step in escalation["steps_taken"]:
        print(f"escalation step {step['step_no']} taken {format_time(step['taken_at'])}: {step['target']} "
              f"({step['notifications']} notifications)")
    step = escalation["next_step"]
    print(f"next escalation step: {step['step']} due {format_time(step['due_at'])}: {step['target']}" if step
          else "next escalation step: -")
    reminder = escalation["next_reminder"]
    print(f"next reminder: {reminder['reminder_no']} due {format_time(reminder['due_at'])}" if reminder
          else "next reminder: -")


def ack_command(app, args) -> int:
    ack_for = parse_ack_for(args.ack_for)
    print(ack_alert(app, args.alert_id, actor=args.actor, comment=args.comment, ack_for=ack_for).message)
    return 0


def resolve_command(app, args) -> int:
    print(resolve_alert(app, args.alert_id, actor=args.actor, comment=args.comment).message)
    return 0
