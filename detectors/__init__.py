"""Detectors, one module per alert kind, each behind the same small interface.

A snapshot detector names its `kind`, the named query of its `candidates` CTE in
engine/sql/detect.sql, and the parameters that query takes (`params(ctx)`). engine.detect runs
each as one statement per tick (candidates + the shared lifecycle upsert). An event detector
(PAYMENT_FAILED) has no statement: its alerts are raised and cleared by events.
Adding a kind is one module plus one line in SNAPSHOT_DETECTORS or EVENT_KINDS.
"""

from __future__ import annotations

from detectors.api_calls_threshold import API_CALLS_THRESHOLD
from detectors.base import DetectionContext, EventKind, SnapshotDetector, ThresholdDetector
from detectors.payment_failed import PAYMENT_FAILED
from detectors.rate_limit import RATE_LIMIT
from detectors.records_threshold import RECORDS_THRESHOLD
from detectors.runs_threshold import RUNS_THRESHOLD
from detectors.storage_threshold import STORAGE_THRESHOLD
from detectors.wallet_low import WALLET_LOW
from detectors.wallet_runway import WALLET_RUNWAY

SNAPSHOT_DETECTORS: list[SnapshotDetector] = [
    RUNS_THRESHOLD, STORAGE_THRESHOLD, RECORDS_THRESHOLD, API_CALLS_THRESHOLD, WALLET_LOW, WALLET_RUNWAY, RATE_LIMIT,
]
EVENT_KINDS: dict[str, EventKind] = {PAYMENT_FAILED.kind: PAYMENT_FAILED}
# Kinds whose dedupe key carries the billing month: they resolve when the month ends.
QUOTA_KINDS = [d.kind for d in SNAPSHOT_DETECTORS if isinstance(d, ThresholdDetector)]
ALL_KINDS = list(dict.fromkeys([d.kind for d in SNAPSHOT_DETECTORS] + list(EVENT_KINDS)))

__all__ = ["SNAPSHOT_DETECTORS", "EVENT_KINDS", "QUOTA_KINDS", "ALL_KINDS", "DetectionContext"]
