"""notifyctl status [--json]: the queue, failures in the last hour, partitions, last job runs."""

from __future__ import annotations

from engine.cli.output import print_json, print_table
from engine.status import collect_status


def register(subparsers, common) -> None:
    status = subparsers.add_parser("status", parents=[common],
                                   help="queue depth, oldest queued, recent failures, partitions, last job runs")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=status_command)


def status_command(app, args) -> int:
    report = collect_status(app)
    if args.json:
        print_json(report)
        return 0
    queue = report["queue"]
    oldest = queue["oldest_queued_at"]
    print(f"queue: {queue['depth']} queued" +
          (f", oldest since {oldest:%Y-%m-%d %H:%M:%S} UTC ({queue['oldest_age_seconds']:.0f} s)" if oldest else ""))
    failures = report["failures_last_hour"]
    print(f"failures in the last hour: {failures['notifications']} notifications, {failures['job_runs']} job runs")
    print()
    print_table([{**p, "ok": "ok" if p["ok"] else "CHECK"} for p in report["partitions"]],
                ["table", "last_month", "months_ahead", "default_rows", "ok"])
    print()
    if report["jobs"]:
        jobs = [{**j, "duration_seconds": f"{j['duration_seconds']:.3f}"} for j in report["jobs"]]
        print_table(jobs, ["job", "status", "started_at", "duration_seconds", "ran_by", "error"])
    else:
        print("no job has run yet")
    return 0
