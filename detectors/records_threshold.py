"""RECORDS_THRESHOLD: records_count against the plan's limit, at each configured level."""

from detectors.base import ThresholdDetector

RECORDS_THRESHOLD = ThresholdDetector(kind="RECORDS_THRESHOLD", metric="records_count", key_prefix="records")
