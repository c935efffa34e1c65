"""The detector interface and the one statement each snapshot detector runs per tick."""

from __future__ import annotations

import json
from decimal import Decimal
from dataclasses import dataclass
from datetime import datetime
from typing import Optional, Protocol

from sqlalchemy import Connection, TextClause, text

from engine.config import Config
from engine.queries import load, query


@dataclass(frozen=True)
class DetectionContext:
    config: Config
    now: datetime
    period: str              # billing month 'YYYY-MM' of now (UTC)
    period_start: datetime
    full_pass: bool          # evaluate every latest value, not only those folded in this pass
    shard: int = 0           # this pass covers the tenants with notify.tenant_shard(tenant, shards) = shard
    shards: int = 1
    changed_tenants: Optional[list] = None  # a small fold's tenants (looked up by key); None: scan

    def plan_limits(self, limit_name: str) -> str:
        """[{plan, limit_value}] as JSON for the plans that set `limit_name` (a plan that leaves a
        metric out has no alerts for it)."""
        rows = [{"plan": name, "limit_value": getattr(plan, limit_name)}
                for name, plan in self.config.plans.items() if getattr(plan, limit_name) is not None]
        return json.dumps(rows)

    @property
    def hysteresis(self) -> float:
        return self.config.detect.hysteresis_percent


class SnapshotDetector(Protocol):
    kind: str
    candidates_query: str

    def params(self, ctx: DetectionContext) -> dict: ...

    # Optional: def enabled(self, ctx) -> bool; a detector without it always runs.


@dataclass(frozen=True)
class ThresholdDetector:
    """A plan limit on a quota metric, at every configured level (each level its own alert)."""

    kind: str
    metric: str
    key_prefix: str  # the condition's name in dedupe keys: runs:80pct:2026-11:base=<id>
    candidates_query: str = "threshold_candidates"

    def params(self, ctx: DetectionContext) -> dict:
        return {"kind": self.kind, "metric": self.metric, "thresholds": json.dumps(self.thresholds(ctx)),
                "period": ctx.period, "period_start": ctx.period_start}

    def thresholds(self, ctx: DetectionContext) -> list[dict]:
        """One row per (plan, level): the line that fires, the line below which it clears, and the
        dedupe key up to the base (runs:80pct:2026-11:base=), in exact decimals, so the statement
        compares each value and computes nothing. A plan that leaves the metric out has none."""
        hysteresis = Decimal(str(ctx.hysteresis))
        rows = []
        for plan_name, plan in ctx.config.plans.items():
            if getattr(plan, self.metric) is None:
                continue
            limit = Decimal(str(getattr(plan, self.metric)))
            for level in ctx.config.detect.thresholds:
                percent = Decimal(str(level.percent))
                rows.append({"plan": plan_name, "severity": level.severity, "limit_value": str(limit),
                             "level_percent": str(percent), "fire_at": str(limit * percent / 100),
                             "clear_below": str(limit * (percent - hysteresis) / 100),
                             "key_prefix": f"{self.key_prefix}:{format(percent.normalize(), 'f')}pct:{ctx.period}:base="})
        return rows


@dataclass(frozen=True)
class EventKind:
    """An alert kind raised and cleared by events (notifyctl event raise/clear, engine.alerts)."""

    kind: str
    key_prefix: str
    severity: str = "critical"

    def dedupe_key(self, base_id) -> str:
        return f"{self.key_prefix}:base={base_id or '-'}"


def detector_statement(detector: SnapshotDetector, *, upsert: bool = True) -> TextClause:
    """The detector's one statement, from named blocks of engine/sql/detect.sql: its candidates
    CTE and the lifecycle every detector shares (with its ON CONFLICT half unless `upsert` is
    false). No value is ever put into the SQL text."""
    queries = load("detect")
    parts = [detector.candidates_query, "alert_insert"] + (["alert_on_conflict"] if upsert else []) + ["alert_returning"]
    return text("\n".join(queries[name].text for name in parts))


def run_snapshot_detector(conn: Connection, detector: SnapshotDetector, ctx: DetectionContext) -> dict[str, int]:
    """Runs the detector's one statement; returns {transition: alerts} for alerts that changed
    state ('opened', 'reopened', 'escalated', 'resolved') and 'refreshed' for last_seen moves."""
    check = conn.execute(query("detect", "may_clear"),
                         {"kind": detector.kind, "changed_tenants": ctx.changed_tenants}).one()
    params = {**detector.params(ctx), "now": ctx.now, "full_pass": ctx.full_pass,
              "shard": ctx.shard, "shards": ctx.shards, "may_clear": check.may_clear,
              "changed_tenants": ctx.changed_tenants}
    counts: dict[str, int] = {}
    for row in conn.execute(detector_statement(detector, upsert=check.kind_seen), params):
        key = row.transition if row.transitioned else "refreshed"
        counts[key] = counts.get(key, 0) + row.alerts
    return counts
