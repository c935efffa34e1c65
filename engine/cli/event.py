"""notifyctl event raise | clear: event-driven conditions such as PAYMENT_FAILED."""

from __future__ import annotations

import json

from engine.alerts import clear_event, raise_event
from engine.errors import BadInput


def register(subparsers, common) -> None:
    group = subparsers.add_parser("event", parents=[common], help="event-driven alerts (PAYMENT_FAILED, ...)")
    actions = group.add_subparsers(dest="event_command", metavar="ACTION", required=True)
    for verb, handler, text in (("raise", raise_command, "record the condition as an open alert"),
                                ("clear", clear_command, "the condition is over: its alert resolves")):
        parser = actions.add_parser(verb, parents=[common], help=text)
        parser.add_argument("--tenant", required=True, metavar="T", help="tenant id (UUID)")
        parser.add_argument("--kind", required=True, metavar="KIND", help="event kind, e.g. PAYMENT_FAILED")
        parser.add_argument("--base", metavar="B", help="base id (UUID)")
        if verb == "raise":
            parser.add_argument("--context", metavar="JSON", help="a JSON object kept with the alert")
        parser.set_defaults(handler=handler)


def raise_command(app, args) -> int:
    context = None
    if args.context is not None:
        try:
            context = json.loads(args.context)
        except ValueError as exc:
            raise BadInput(f"--context: not valid JSON ({exc.msg} at position {exc.pos})") from None
        if not isinstance(context, dict):
            raise BadInput("--context: expected a JSON object")
    print(raise_event(app, args.tenant, args.kind, base_id=args.base, context=context).message)
    return 0


def clear_command(app, args) -> int:
    result = clear_event(app, args.tenant, args.kind, base_id=args.base)
    if not result.changed and result.before is None:
        # Clearing twice is a no-op (exit 0); an id no such alert ever had is most likely a typo.
        where = f"tenant {args.tenant}" + (f" base {args.base}" if args.base else "")
        raise BadInput(f"--tenant/--base: no {args.kind} alert was ever raised for {where}; nothing to clear")
    print(result.message)
    return 0
