"""The collect step: every configured snapshot source, one after the other. A source that fails
(unreachable, bad SQL, a crash in its code) is logged and reported; the others still run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine import metrics
from engine.collectors import CollectorResult, configured_collectors

log = logging.getLogger(__name__)


@dataclass
class CollectionSummary:
    results: list[CollectorResult] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(r.written for r in self.results)

    @property
    def failed(self) -> list[CollectorResult]:
        return [r for r in self.results if r.error]


def run_collection(app) -> CollectionSummary:
    summary = CollectionSummary()
    for collector in configured_collectors(app.config):
        try:
            result = collector.collect(app)
        except Exception as exc:  # noqa: BLE001 - one source must not stop the others
            log.exception("collector %s failed", collector.name)
            result = CollectorResult(collector.name, error=f"{collector.name}: {type(exc).__name__}")
        if result.error:
            log.warning("%s", result.error)
        for rejection in result.rejected:
            log.warning("snapshot rejected: %s", rejection)
        if result.written:  # each collector commits its own snapshots
            metrics.SNAPSHOTS_RECORDED.labels(source=collector.name).inc(result.written)
        summary.results.append(result)
    return summary
