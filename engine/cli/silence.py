"""notifyctl silence add --match K=V[,K=V...] (--for DURATION | --until TIME) [--starts-at TIME]
[--comment TEXT] [--actor NAME] | silence list [--all] [--json] | silence expire ID [--actor NAME]."""

from __future__ import annotations

from engine.cli.output import print_json, print_table
from engine.errors import BadInput
from engine.silences import STATES, add_silence, expire_silence, list_silences, parse_for, parse_match, parse_time

LIST_COLUMNS = ["id", "state", "match", "starts_at", "ends_at", "created_by", "suppressed", "comment"]


def register(subparsers, common) -> None:
    group = subparsers.add_parser("silence", parents=[common], help="silences: mute notifications of matching alerts")
    actions = group.add_subparsers(dest="silence_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[common], help="add a silence (audited); prints its id")
    add.add_argument("--match", action="append", required=True, metavar="K=V[,K=V...]",
                     help="keys tenant, kind, severity, base; = (also !=, =~ and !~ for regular expressions)")
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--for", dest="duration", metavar="DURATION", help="how long, from its start (2h, 30m, 1d)")
    span.add_argument("--until", metavar="TIME", help="when it ends (ISO 8601; UTC without a zone)")
    add.add_argument("--starts-at", metavar="TIME",
                     help="a later start makes a maintenance window (ISO 8601; UTC without a zone; default now)")
    add.add_argument("--comment", metavar="TEXT", help="why (kept with the silence and audited)")
    add.add_argument("--actor", metavar="NAME", help="who silences (default: the OS user)")
    add.set_defaults(handler=add_command)

    listing = actions.add_parser("list", parents=[common], help="active and pending silences (--all: expired too)")
    listing.add_argument("--all", action="store_true", help="expired silences too")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=list_command)

    expire = actions.add_parser("expire", parents=[common], help="end a silence now (audited)")
    expire.add_argument("id", metavar="ID")
    expire.add_argument("--actor", metavar="NAME", help="who expires it (default: the OS user)")
    expire.set_defaults(handler=expire_command)


def add_command(app, args) -> int:
    matchers = parse_match(args.match)
    duration = parse_for(args.duration) if args.duration is not None else None
    until = parse_time(args.until, where="--until") if args.until is not None else None
    starts = parse_time(args.starts_at, where="--starts-at") if args.starts_at is not None else None
    ident = add_silence(app, matchers, starts_at=starts, ends_at=until, duration=duration, comment=args.comment,
                        actor=args.actor)
    print(ident)
    return 0


def list_command(app, args) -> int:
    rows = list_silences(app, states=STATES if args.all else ("active", "pending"))
    if args.json:
        print_json(rows)
    elif rows:
        print_table(rows, LIST_COLUMNS)
    else:
        print("no silences" if args.all else "no active or pending silences")
    return 0


def expire_command(app, args) -> int:
    if expire_silence(app, args.id, actor=args.actor):
        print(f"silence {args.id} expired")
    else:
        print(f"silence {args.id} had already ended; nothing to expire")
    return 0
