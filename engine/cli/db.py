"""notifyctl db init."""

from __future__ import annotations

from engine.migrations import apply_migrations
from engine.roles import apply_roles


def register(subparsers, common) -> None:
    db = subparsers.add_parser("db", parents=[common], help="schema of the four databases")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", parents=[common],
                              help="apply the schema to all four databases (running it again changes nothing)")
    init.set_defaults(handler=db_init)


def db_init(app, args) -> int:
    report = apply_migrations(app.databases)
    for database, path in report.applied:
        print(f"{database}: applied {path}")
    if not report.applied:
        print(f"schema up to date ({report.unchanged} migrations already applied)")
    # Roles and grants after the migrations, so tables they created are granted too.
    for line in apply_roles(app.databases).lines():
        print(line)
    return 0
