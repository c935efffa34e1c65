"""notifyctl run-once: one pass of the engine's steps, then exit."""

from __future__ import annotations

from engine.collect import run_collection
from engine.detect import run_detection


def register(subparsers, common) -> None:
    parser = subparsers.add_parser("run-once", parents=[common], help="one pass: collect, detect, plan, deliver")
    parser.set_defaults(handler=run_once_command)


def run_once_command(app, args) -> int:
    collection = run_collection(app)
    print(f"collect: {collection.written} snapshots written"
          + (f", {len(collection.failed)} sources failed" if collection.failed else ""))
    for failed in collection.failed:
        print(f"  {failed.error}")
    rejected = sum(len(r.rejected) for r in collection.results)
    if rejected:
        print(f"  {rejected} snapshot rows rejected (see the log)")
    detection = run_detection(app)
    print(f"detect: {detection.count('opened')} opened, {detection.count('reopened')} reopened, "
          f"{detection.count('escalated')} escalated, "
          f"{detection.count('resolved') + detection.period_resolved} resolved")
    from engine.dispatcher import deliver_due
    from engine.jobs import plan_job

    planned = plan_job(app)
    print(f"plan: {planned} notifications planned")
    delivery = deliver_due(app)
    print(f"deliver: {delivery.sent} sent, {delivery.retrying} to retry, {delivery.failed} failed, "
          f"{delivery.skipped} skipped")
    return 1 if collection.failed else 0
