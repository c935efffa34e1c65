"""WALLET_LOW: the wallet balance below the plan's wallet_floor_cents (critical at or below 0,
which escalates an open warning)."""

from __future__ import annotations

from dataclasses import dataclass

from detectors.base import DetectionContext


@dataclass(frozen=True)
class WalletLowDetector:
    kind: str = "WALLET_LOW"
    candidates_query: str = "wallet_low_candidates"

    def params(self, ctx: DetectionContext) -> dict:
        return {"limits": ctx.plan_limits("wallet_floor_cents"), "hysteresis": ctx.hysteresis}


WALLET_LOW = WalletLowDetector()
