"""notifyctl snapshot record."""

from __future__ import annotations

from engine.collectors.push import record_snapshots
from engine.errors import BadInput
from engine.snapshots import InvalidSnapshot, validate_snapshot


def register(subparsers, common) -> None:
    group = subparsers.add_parser("snapshot", parents=[common], help="quota snapshots")
    actions = group.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    record = actions.add_parser("record", parents=[common], help="record one quota snapshot now")
    record.add_argument("--tenant", required=True, metavar="T", help="tenant id (UUID)")
    record.add_argument("--base", metavar="B", help="base id (UUID); leave out for a tenant-wide value")
    record.add_argument("--metric", required=True, metavar="M",
                        help="runs_used, storage_gb, records_count, api_calls, wallet_balance_cents, http_429_count")
    record.add_argument("--value", required=True, metavar="V", help="the metric's value")
    record.set_defaults(handler=record_command)


def record_command(app, args) -> int:
    row = {"tenant_id": args.tenant, "base_id": args.base, "metric": args.metric, "value": args.value}
    try:
        validate_snapshot(row, app.clock.now())
    except InvalidSnapshot as exc:
        # Name the argument: tenant_id -> --tenant, value of X -> --value.
        text = str(exc)
        argument = ("--tenant" if text.startswith("tenant_id") else "--base" if text.startswith("base_id")
                    else "--metric" if text.startswith("unknown metric") else "--value")
        raise BadInput(f"{argument}: {text}") from None
    result = record_snapshots(app, [row], source="notifyctl")
    print(f"recorded {args.metric}={args.value} for tenant {args.tenant}"
          + (f" base {args.base}" if args.base else ""))
    return 0 if result.written == 1 else 1
