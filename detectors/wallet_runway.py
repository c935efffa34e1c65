"""WALLET_LOW by forecast: the recent burn rate says the wallet runs dry within
detect.wallet_runway_days (off unless set). Its own alert beside the floor's: wallet:runway:..."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.base import DetectionContext


@dataclass(frozen=True)
class WalletRunwayDetector:
    kind: str = "WALLET_LOW"
    candidates_query: str = "wallet_runway_candidates"

    def enabled(self, ctx: DetectionContext) -> bool:
        return ctx.config.detect.wallet_runway_days is not None

    def params(self, ctx: DetectionContext) -> dict:
        settings = ctx.config.detect
        return {"runway_days": settings.wallet_runway_days, "hysteresis": ctx.hysteresis,
                "burn_window_seconds": float(settings.wallet_burn_window)}


WALLET_RUNWAY = WalletRunwayDetector()
