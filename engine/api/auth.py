"""Bearer tokens on every route but the public ones, and a limit on failed authentication.

Failed attempts (no token, a malformed header, an unknown or revoked token) cost the client's
address one unit of a token bucket (`api.auth_failure_burst`, refilled one unit every
`api.auth_failure_interval`). With the bucket empty, every request from that address is answered
429 with Retry-After before any token is looked at: a guesser learns nothing more, even by
guessing right. Logged: the address and why, never the token.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Callable

log = logging.getLogger("engine.api")

# Addresses remembered at once; the quietest are forgotten first (a flood of addresses cannot
# grow the table without bound).
MAX_TRACKED_ADDRESSES = 10_000


class FailedAuthLimiter:
    """Token bucket per client address, counting failed authentications only. In memory: each
    server (each notifyd) limits on its own."""

    def __init__(self, burst: int, interval: float, *, monotonic: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.interval = interval
        self._monotonic = monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (units, at)

    def _units(self, address: str, now: float) -> float:
        units, at = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), units + (now - at) / self.interval)

    def retry_after(self, address: str) -> int:
        """0 when the address may try; otherwise whole seconds until it may."""
        if address not in self._buckets:
            return 0
        units = self._units(address, self._monotonic())
        if units >= 1:
            return 0
        return max(1, math.ceil((1 - units) * self.interval))

    def failed(self, address: str) -> bool:
        """Counts one failure; True when this one emptied the bucket."""
        now = self._monotonic()
        units = self._units(address, now) - 1
        self._buckets[address] = (units, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > MAX_TRACKED_ADDRESSES:
            self._buckets.popitem(last=False)
        return units < 1


def bearer_token(header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750), or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token
