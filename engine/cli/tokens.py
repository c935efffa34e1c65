"""notifyctl tokens add | list | revoke: bearer tokens of the HTTP API (docs/API.md)."""

from __future__ import annotations

import sys

from engine.alerts import default_actor
from engine.cli.output import print_json, print_table
from engine.tokens import SCOPES, add_token, list_tokens, revoke_token


def register(subparsers, common) -> None:
    group = subparsers.add_parser("tokens", parents=[common], help="bearer tokens of the HTTP API")
    actions = group.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[common], help="make a token; it is printed once, never again")
    add.add_argument("--name", required=True, metavar="N", help="the token's name: the actor of its writes")
    add.add_argument("--scope", required=True, action="append", metavar="S",
                     help=f"repeat for several: {', '.join(SCOPES)}")
    add.set_defaults(handler=add_command)

    listing = actions.add_parser("list", parents=[common], help="list tokens (never the token itself)")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=list_command)

    revoke = actions.add_parser("revoke", parents=[common], help="refuse the token from now on")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(handler=revoke_command)


def add_command(app, args) -> int:
    token = add_token(app, args.name, args.scope, created_by=default_actor())
    print(token)
    if sys.stderr.isatty():
        print("notifyctl: store this token now: it is not shown again", file=sys.stderr)
    return 0


def list_command(app, args) -> int:
    rows = list_tokens(app)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["scopes"] = ",".join(row["scopes"])
        print_table(rows, ["name", "scopes", "active", "created_at", "created_by", "last_used_at", "revoked_at"])
    return 0


def revoke_command(app, args) -> int:
    revoke_token(app, args.name)
    print(f"revoked {args.name}")
    return 0
