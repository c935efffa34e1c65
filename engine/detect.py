"""The detect step: fold new snapshots into notify.latest_snapshots, end the previous billing
month's quota alerts, and run every snapshot detector as one statement.

Incremental: a pass evaluates only the (tenant, base, metric) values that changed since the last
pass, so a steady state reads and writes almost nothing. When the plans, the tenant -> plan
mapping, the levels or the hysteresis change (a fingerprint of them is kept in
notify.detection_state), the pass evaluates every latest value once.

Parallel: the tenants are split into `detect.parallelism` shards (notify.tenant_shard) and each
shard's pass is one transaction on its own connection, all at once: fold, detectors and the
notifications of its transitions commit together, so each tenant's alerts still change in one
transaction. Each shard keeps its own watermark (a detection_state row); when the number of
shards changes, every new shard starts from the oldest old watermark, and folding a snapshot
again changes nothing (the fold keeps the newest value), so nothing is skipped or doubled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from sqlalchemy import text

from detectors import QUOTA_KINDS, SNAPSHOT_DETECTORS
from detectors.base import DetectionContext, run_snapshot_detector
from engine import metrics
from engine.clock import billing_period, month_start
from engine.errors import NotifyError
from engine.planner import plan_transitions_of_this_transaction
from engine.plans import tenant_plan_pairs
from engine.queries import load, query

log = logging.getLogger(__name__)
STATE_NAME = "snapshots"
# A shard that folded at most this many values hands their tenants to the detectors and the
# planner, which then look them up by key: a pass after one pushed snapshot reads a few rows
# instead of scanning every latest value (about 60 ms per detector at 500,000 values).
CHANGED_TENANTS_LIMIT = 5000


@dataclass
class DetectionSummary:
    full_pass: bool = False
    folded: int = 0
    period_resolved: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    # Seconds per step, for logs and benchmarks: for a parallel pass, the slowest shard's.
    seconds: dict[str, float] = field(default_factory=dict)

    def count(self, transition: str) -> int:
        return sum(c.get(transition, 0) for c in self.by_kind.values())

    def transitioned(self) -> bool:
        return self.period_resolved > 0 or any(
            n for c in self.by_kind.values() for t, n in c.items() if t != "refreshed")

    def merge(self, other: "DetectionSummary") -> None:
        self.full_pass = self.full_pass or other.full_pass
        self.folded += other.folded
        self.period_resolved += other.period_resolved
        for kind, counts in other.by_kind.items():
            mine = self.by_kind.setdefault(kind, {})
            for transition, alerts in counts.items():
                mine[transition] = mine.get(transition, 0) + alerts
        for step, seconds in other.seconds.items():
            self.seconds[step] = max(self.seconds.get(step, 0.0), seconds)


@dataclass(frozen=True)
class ShardState:
    name: str
    position: int
    fingerprint: str
    updated_at: datetime | None  # None: this shard never ran


@dataclass(frozen=True)
class PassSettings:
    """What every shard of one pass shares."""
    app: object
    now: datetime
    fingerprint: str | None  # of plans, levels and tenant plans; None: the mapping could not be read
    full_pass: bool          # asked for by the caller
    rebuild: bool            # latest_snapshots was empty as the pass began: the fold is a plain INSERT
    shards: int


def state_names(shards: int) -> list[str]:
    """detection_state rows of a pass split in `shards` (one shard keeps the historical name)."""
    return [STATE_NAME] if shards == 1 else [f"{STATE_NAME}:{i}/{shards}" for i in range(shards)]


def _fingerprint(app, pairs: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"plans": {n: asdict(p) for n, p in sorted(app.config.plans.items())},
                              "detect": asdict(app.config.detect) | {"parallelism": None}},
                             sort_keys=True, default=str).encode())
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
    shards = app.config.detect.parallelism
    fingerprint = _fingerprint(app, pairs) if pairs is not None else None
    summary = DetectionSummary()
    with _detection_lock(app):
        with app.databases.begin("notify") as conn:
            states, obsolete, rebuild = _prepare_states(conn, shards, fingerprint, pairs, now)
        settings = PassSettings(app, now, fingerprint, full_pass, rebuild, shards)
        with ThreadPoolExecutor(shards, thread_name_prefix="detect") as pool:
            futures = [pool.submit(_detect_shard, settings, i, state) for i, state in enumerate(states)]
        for future in futures:  # every shard has finished (committed or rolled back) here
            summary.merge(future.result())
        if obsolete:  # rows of an earlier number of shards: every current shard has stored its own
            with app.databases.begin("notify") as conn:
                conn.execute(query("detect", "delete_other_states"), {"names": state_names(shards)})
    # INFO when the pass did something; an idle pass (every tick, every push-woken pass of the
    # copies that found nothing left) at DEBUG.
    busy = summary.folded or summary.full_pass or summary.period_resolved
    log.log(logging.INFO if busy else logging.DEBUG, "detection: %d values folded, %d opened, %d resolved",
            summary.folded, summary.count("opened"), summary.count("resolved") + summary.period_resolved)
    return summary


@contextlib.contextmanager
def _detection_lock(app):
    """Holds lock_detection (a session advisory lock) on a pooled connection of its own."""
    conn = app.databases.engine("notify").connect()
    try:
        conn.execute(query("detect", "lock_detection"))
        conn.commit()
        yield
    finally:
        try:
            conn.execute(query("detect", "unlock_detection"))
            conn.commit()
        except Exception:  # noqa: BLE001 - a dead session holds no lock; never pool one that might
            conn.invalidate()
        conn.close()


def _prepare_states(conn, shards: int, fingerprint: str | None, pairs: dict | None,
                    now: datetime) -> tuple[list[ShardState], bool, bool]:
    """Before the shards start, in one short transaction: each shard's watermark, the tenant ->
    plan mapping synced when it changed, and every watermark reset when latest_snapshots was lost
    in a crash. A shard without a row yet (first pass, or the number of shards changed) starts at
    the oldest watermark of the previous number of shards. Also says whether latest_snapshots is
    empty (the shards then fold with a plain INSERT)."""
    rows = {r.name: r for r in conn.execute(query("detect", "load_states"))}
    empty = conn.execute(query("detect", "latest_is_empty")).scalar_one()
    if any(r.position for r in rows.values()) and empty:
        # latest_snapshots is UNLOGGED: a crash empties it. Every shard rebuilds it from the
        # snapshots and evaluates everything once.
        conn.execute(query("detect", "reset_states"))
        rows = {r.name: r for r in conn.execute(query("detect", "load_states"))}
    if pairs is not None and (not rows or any(r.fingerprint != fingerprint for r in rows.values())):
        conn.execute(query("detect", "sync_tenant_plans"), {
            "tenant_ids": list(pairs), "plans": list(pairs.values()), "now": now})
    # A shard without a row takes over from the rows of the previous number of shards (kept until
    # every current shard has stored its own), from the oldest of them; with none, from the start.
    names = state_names(shards)
    previous = [r for name, r in rows.items() if name not in names]
    fingerprints = {r.fingerprint for r in previous}
    inherited = ShardState("", min((r.position for r in previous), default=0),
                           fingerprints.pop() if len(fingerprints) == 1 else "",
                           min((r.updated_at for r in previous), default=None))
    states = [ShardState(n, rows[n].position, rows[n].fingerprint, rows[n].updated_at) if n in rows
              else ShardState(n, inherited.position, inherited.fingerprint, inherited.updated_at)
              for n in names]
    return states, bool(previous), empty


def _detect_shard(settings: "PassSettings", shard: int, state: ShardState) -> DetectionSummary:
    """One shard's pass: one transaction over the tenants of `shard`."""
    app, now, shards, rebuild = settings.app, settings.now, settings.shards, settings.rebuild
    summary = DetectionSummary()
    fingerprint = settings.fingerprint if settings.fingerprint is not None else state.fingerprint
    # A shard that never ran, or whose plans and levels changed, evaluates every latest value.
    full_pass = settings.full_pass or state.updated_at is None or state.fingerprint != fingerprint
    summary.full_pass = full_pass
    period_ended: dict[str, int] = {}  # kind -> alerts resolved by the month rollover
    start = month_start(now)
    with app.databases.begin("notify") as conn:
        # JIT compiling these statements costs about 0.5 s each (the planner over-estimates the
        # jsonb_to_recordset joins) and saves nothing at this size: off for this transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")
        # The fold sorts every new snapshot (DISTINCT ON): in memory, not in temporary files.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        started = time.perf_counter()
        queries = load("detect")
        fold = text(queries["fold_newest"].text + "\n" + queries["fold_insert" if rebuild else "fold_upsert"].text)
        folded = conn.execute(fold, {"from_position": state.position, "shard": shard, "shards": shards,
                                     "tenants_limit": CHANGED_TENANTS_LIMIT}).one()
        # None: evaluate by scan (a full pass, or a fold too large to name its tenants).
        changed_tenants = (folded.tenants or []) if not full_pass and folded.folded <= CHANGED_TENANTS_LIMIT else None
        summary.seconds["fold"] = time.perf_counter() - started
        summary.folded = folded.folded
        # Quota alerts of an earlier month end once, on the first pass of a new month (or of a
        # shard that never ran before); other passes need not look.
        if state.updated_at is None or billing_period(state.updated_at) != billing_period(now):
            for row in conn.execute(query("detect", "resolve_past_periods"), {
                    "kinds": QUOTA_KINDS, "period": billing_period(now), "now": now,
                    "shard": shard, "shards": shards}):
                summary.period_resolved += row.resolved
                period_ended[row.kind] = row.resolved
        ctx = DetectionContext(app.config, now, billing_period(now),
                               datetime(start.year, start.month, 1, tzinfo=timezone.utc), full_pass,
                               shard, shards, changed_tenants)
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
        conn.execute(query("detect", "store_state"), {"name": state.name, "position": folded.position,
                                                       "fingerprint": fingerprint, "now": now})
        if not summary.transitioned():
            # Nothing here can notify anyone: what this commit makes durable (the watermark,
            # refreshed evidence) is rebuilt by the next pass if a crash loses it, because the
            # crash also empties latest_snapshots. No WAL flush to wait for, then (most passes).
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        else:  # the new transitions' notifications, same transaction
            started = time.perf_counter()
            # The month rollover changes tenants the fold did not name.
            tenants = changed_tenants if not summary.period_resolved else None
            plan_transitions_of_this_transaction(conn, app.config, now, shard=(shard, shards), tenants=tenants)
            summary.seconds["plan"] = time.perf_counter() - started
    # Committed: count what it changed.
    for kind, counts in summary.by_kind.items():
        for transition, alerts in counts.items():
            if transition != "refreshed" and alerts:
                metrics.ALERT_TRANSITIONS.labels(kind=kind, transition=transition).inc(alerts)
    for kind, alerts in period_ended.items():
        metrics.ALERT_TRANSITIONS.labels(kind=kind, transition="resolved").inc(alerts)
    return summary
