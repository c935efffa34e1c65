"""notifyctl destinations add | list | remove."""

from __future__ import annotations

from engine.cli.output import print_json, print_table
from engine.config import CHANNELS, SEVERITIES
from engine.destinations import add_destination, list_destinations, remove_destination


def register(subparsers, common) -> None:
    group = subparsers.add_parser("destinations", parents=[common], help="tenants' delivery destinations")
    actions = group.add_subparsers(dest="destinations_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[common], help="add a destination for a tenant")
    add.add_argument("--tenant", required=True, metavar="T", help="tenant id (UUID)")
    add.add_argument("--channel", required=True, choices=CHANNELS)
    add.add_argument("--target", required=True, metavar="X",
                     help="email address(es), Slack channel id or incoming-webhook URL, webhook URL")
    add.add_argument("--secret", metavar="S", help="webhook signing secret (whsec_<base64> or any string)")
    add.add_argument("--kinds", metavar="K1,K2", help="only these alert kinds (default: every kind)")
    add.add_argument("--min-severity", choices=SEVERITIES, default="info", help="lowest severity sent (default: info)")
    add.set_defaults(handler=add_command)

    listing = actions.add_parser("list", parents=[common], help="list destinations (secrets masked)")
    listing.add_argument("--tenant", metavar="T")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=list_command)

    remove = actions.add_parser("remove", parents=[common], help="remove a destination; its queued notifications end skipped")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(handler=remove_command)


def add_command(app, args) -> int:
    kinds = args.kinds.split(",") if args.kinds else None
    with app.databases.begin("notify") as conn:
        destination_id = add_destination(conn, app.config, app.clock.now(), tenant_id=args.tenant,
                                         channel=args.channel, target=args.target, secret=args.secret,
                                         kinds=kinds, min_severity=args.min_severity)
    print(destination_id)
    return 0


def list_command(app, args) -> int:
    with app.databases.begin("notify") as conn:
        rows = list_destinations(conn, args.tenant)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["kinds"] = ",".join(row["kinds"]) if row["kinds"] else "*"
        print_table(rows, ["id", "tenant_id", "channel", "target", "secret", "kinds", "min_severity",
                           "enabled", "disabled_reason"])
    return 0


def remove_command(app, args) -> int:
    with app.databases.begin("notify") as conn:
        skipped = remove_destination(conn, args.id)
    print(f"removed {args.id}; {skipped} queued notifications skipped")
    return 0
