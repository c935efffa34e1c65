"""API_CALLS_THRESHOLD: api_calls against the plan's limit, at each configured level."""

from detectors.base import ThresholdDetector

API_CALLS_THRESHOLD = ThresholdDetector(kind="API_CALLS_THRESHOLD", metric="api_calls", key_prefix="api_calls")
