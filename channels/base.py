"""The one interface every channel implements, and the typed result it returns.

A channel sends; it never decides what happens next. The dispatcher alone turns a DeliveryResult
into a status, a retry time or a disabled destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Optional


@dataclass
class Message:
    """One notification, ready to send: the claimed row plus what its templates need."""

    notification_id: str
    tenant_id: str
    alert_id: str
    channel: str
    recipient: str
    idempotency_key: str       # the same on every attempt: webhook-id, Message-ID
    transition: str
    reminder_no: int
    severity: str
    attempt: int
    now: datetime
    alert: dict[str, Any] = field(default_factory=dict)
    secret: Optional[str] = field(default=None, repr=False)   # webhook signing secret, never logged
    # The tenant destination it goes to (None for an ops route), and how its messages read.
    destination_id: Optional[str] = None
    timezone: Optional[str] = None
    locale: Optional[str] = None


@dataclass(frozen=True)
class DeliveryResult:
    kind: Literal["sent", "transient", "permanent"]
    error: Optional[str] = None          # short; never a secret or a full address
    retry_after: Optional[float] = None  # seconds, from Retry-After or the like
    disable_destination: bool = False    # the endpoint is gone for good (HTTP 410)

    @classmethod
    def sent(cls, note: Optional[str] = None) -> "DeliveryResult":
        if note is None:
            return _SENT  # frozen, so one instance serves every plain success
        return cls("sent", error=note)

    @classmethod
    def transient(cls, error: str, retry_after: Optional[float] = None) -> "DeliveryResult":
        return cls("transient", error=error, retry_after=retry_after)

    @classmethod
    def permanent(cls, error: str, *, disable_destination: bool = False) -> "DeliveryResult":
        return cls("permanent", error=error, disable_destination=disable_destination)


_SENT = DeliveryResult("sent")


class Channel:
    """Send one message; `open`/`close` bracket a dispatcher's life so connections are reused."""

    name: str = ""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: Message) -> DeliveryResult:
        raise NotImplementedError


def parse_retry_after(value: Optional[str], now: datetime) -> Optional[float]:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        # An HTTP date is GMT (RFC 9110 5.6.7); email.utils reads "-0000" and a missing zone as
        # "zone unknown" and returns a naive datetime, which cannot be compared with `now`.
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())
