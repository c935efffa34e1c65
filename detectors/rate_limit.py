"""RATE_LIMIT: HTTP 429 answers per tenant and base within detect.rate_limit_window reach
detect.rate_limit_threshold (the count comes from the data_activity collector)."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.base import DetectionContext


@dataclass(frozen=True)
class RateLimitDetector:
    kind: str = "RATE_LIMIT"
    candidates_query: str = "rate_limit_candidates"

    def params(self, ctx: DetectionContext) -> dict:
        settings = ctx.config.detect
        return {"threshold": settings.rate_limit_threshold, "hysteresis": ctx.hysteresis,
                "window_seconds": float(settings.rate_limit_window)}


RATE_LIMIT = RateLimitDetector()
