"""RUNS_THRESHOLD: runs_used against the plan's limit, at each configured level."""

from detectors.base import ThresholdDetector

RUNS_THRESHOLD = ThresholdDetector(kind="RUNS_THRESHOLD", metric="runs_used", key_prefix="runs")
