"""STORAGE_THRESHOLD: storage_gb against the plan's limit, at each configured level."""

from detectors.base import ThresholdDetector

STORAGE_THRESHOLD = ThresholdDetector(kind="STORAGE_THRESHOLD", metric="storage_gb", key_prefix="storage")
