"""The detect step: one transaction that folds new snapshots into notify.latest_snapshots, ends
the previous billing month's quota alerts, and runs every snapshot detector as one statement.

Incremental: a pass evaluates only the (tenant, base, metric) values that changed since the last
pass, so a steady state reads and writes almost nothing. When the plans, the tenant -> plan
mapping, the levels or the hysteresis change (a fingerprint of them is kept in
notify.detection_state), the pass evaluates every latest value once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from detectors import QUOTA_KINDS, SNAPSHOT_DETECTORS
from detectors.base import DetectionContext, run_snapshot_detector
from engine.clock import billing_period, month_start
from engine.errors import NotifyError
from engine.planner import plan_transitions_of_this_transaction
from engine.plans import tenant_plan_pairs
from engine.queries import query

log = logging.getLogger(__name__)
STATE_NAME = "snapshots"


@dataclass
class DetectionSummary:
    full_pass: bool = False
    folded: int = 0
    period_resolved: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per step, for logs and benchmarks

    def count(self, transition: str) -> int:
        return sum(c.get(transition, 0) for c in self.by_kind.values())


def _fingerprint(app, pairs: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"plans": {n: asdict(p) for n, p in sorted(app.config.plans.items())},
                              "detect": asdict(app.config.detect)}, sort_keys=True, default=str).encode())
    for tenant_id, plan in sorted(pairs.items()):
        digest.update(f"{tenant_id}={plan};".encode())
    return digest.hexdigest()


def run_detection(app, *, full_pass: bool = False) -> DetectionSummary:
    now = app.clock.now()
    try:
        pairs = tenant_plan_pairs(app)
    except NotifyError as exc:
        # Detection goes on with the mapping synced last time rather than not at all.
        log.error("%s; keeping the tenant plans synced before", exc)
        pairs = None
    start = month_start(now)
    summary = DetectionSummary()
    with app.databases.begin("notify") as conn:
        # JIT compiling these statements costs about 0.5 s each (the planner over-estimates the
        # jsonb_to_recordset joins) and saves nothing at this size: off for this transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")
        # The fold sorts every new snapshot (DISTINCT ON): in memory, not in temporary files.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        state = conn.execute(query("detect", "load_state"), {"name": STATE_NAME}).first()
        position = state.position if state else 0
        if position and conn.execute(query("detect", "latest_is_empty")).scalar_one():
            position, full_pass = 0, True  # lost in a crash (UNLOGGED): rebuild it from the snapshots
        fingerprint = _fingerprint(app, pairs) if pairs is not None else (state.fingerprint if state else "")
        if state is None or state.fingerprint != fingerprint:
            if pairs is not None:
                conn.execute(query("detect", "sync_tenant_plans"), {
                    "tenant_ids": list(pairs), "plans": list(pairs.values()), "now": now})
            full_pass = True
        summary.full_pass = full_pass
        started = time.perf_counter()
        folded = conn.execute(query("detect", "fold_snapshots"), {"from_position": position}).one()
        summary.seconds["fold"] = time.perf_counter() - started
        summary.folded = folded.folded
        # Quota alerts of an earlier month end once, on the first pass of a new month (or of a
        # process that never ran before); other passes need not look.
        if state is None or billing_period(state.updated_at) != billing_period(now):
            summary.period_resolved = conn.execute(query("detect", "resolve_past_periods"), {
                "kinds": QUOTA_KINDS, "period": billing_period(now), "now": now}).scalar_one()
        ctx = DetectionContext(app.config, now, billing_period(now),
                               datetime(start.year, start.month, 1, tzinfo=timezone.utc), full_pass)
        # Nothing new and nothing reconfigured: every alert is already what the snapshots say.
        detectors = SNAPSHOT_DETECTORS if (full_pass or summary.folded) else []
        for detector in detectors:
            if not getattr(detector, "enabled", lambda _ctx: True)(ctx):
                continue
            started = time.perf_counter()
            counts = summary.by_kind.setdefault(detector.kind, {})
            for transition, alerts in run_snapshot_detector(conn, detector, ctx).items():
                counts[transition] = counts.get(transition, 0) + alerts
            summary.seconds[detector.kind] = summary.seconds.get(detector.kind, 0) + time.perf_counter() - started
        conn.execute(query("detect", "store_state"), {"name": STATE_NAME, "position": folded.position,
                                                       "fingerprint": fingerprint, "now": now})
        plan_transitions_of_this_transaction(conn, app.config, now)  # the new transitions' notifications, same transaction
    # INFO when the pass did something; an idle pass (every tick, every push-woken pass of the
    # copies that found nothing left) at DEBUG.
    busy = summary.folded or summary.full_pass or summary.period_resolved
    log.log(logging.INFO if busy else logging.DEBUG, "detection: %d values folded, %d opened, %d resolved",
            summary.folded, summary.count("opened"), summary.count("resolved") + summary.period_resolved)
    return summary
