"""notifyctl partitions ensure | prune."""

from __future__ import annotations

from pathlib import Path

from engine.cli.output import non_negative_int
from engine.partitions import PruneStopped, ensure_partitions, prune_partitions


def register(subparsers, common) -> None:
    group = subparsers.add_parser("partitions", parents=[common], help="monthly partitions of every log table")
    actions = group.add_subparsers(dest="partitions_command", metavar="ACTION", required=True)

    ensure = actions.add_parser("ensure", parents=[common],
                                help="create this month's and the next N months' partitions")
    ensure.add_argument("--months-ahead", type=non_negative_int, metavar="N",
                        help="months to premake after the current one (default: partitions.months_ahead)")
    ensure.set_defaults(handler=ensure_command)

    prune = actions.add_parser("prune", parents=[common],
                               help="drop partitions that ended more than N months before the current month")
    prune.add_argument("--keep-months", type=non_negative_int, metavar="N",
                       help="months kept before the current one (default: partitions.keep_months)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be dropped, drop nothing")
    prune.add_argument("--archive", metavar="DIR",
                       help="write each partition to Parquet under DIR first (default: partitions.archive_dir)")
    prune.set_defaults(handler=prune_command)


def ensure_command(app, args) -> int:
    months_ahead = args.months_ahead if args.months_ahead is not None else app.config.partitions.months_ahead
    created = ensure_partitions(app.databases, app.clock.now(), months_ahead)
    for c in created:
        moved = f" ({c.moved_rows} rows moved from the default partition)" if c.moved_rows else ""
        print(f"created {c.parent} {c.month:%Y-%m}{moved}")
    if not created:
        print("all partitions present")
    return 0


def prune_command(app, args) -> int:
    keep = args.keep_months if args.keep_months is not None else app.config.partitions.keep_months
    archive = args.archive or app.config.partitions.archive_dir
    archiver = None
    if archive and not args.dry_run:
        from engine.archive import archive_partition as archiver  # optional extra: pyarrow
    try:
        pruned = prune_partitions(app.databases, app.clock.now(), keep, dry_run=args.dry_run,
                                  archive_dir=Path(archive) if archive and not args.dry_run else None,
                                  archiver=archiver)
    except PruneStopped as stopped:
        _print_pruned(stopped.done)  # what is gone already, as a successful run would list it
        raise
    _print_pruned(pruned)
    if not pruned:
        print("nothing to prune")
    return 0


def _print_pruned(pruned) -> None:
    for p in pruned:
        verb = "would drop" if not p.dropped else "dropped"
        archived = f", {p.archived_rows} rows archived" if p.archived_rows is not None else ""
        print(f"{verb} {p.partition.partition} [{p.partition.lower_bound:%Y-%m-%d}, "
              f"{p.partition.upper_bound:%Y-%m-%d}){archived}")
