"""The one interface every channel implements, and the typed result it returns.

A channel sends; it never decides what happens next. The dispatcher alone turns a DeliveryResult
into a status, a retry time or a disabled destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    # A group message (transition 'group', issue 15): {key, size, members: [{notification_id,
    # transition, severity, held_reason, alert: {...}}, ...] (at most grouping.list_max),
    # grouped_payload}; None for a message about one alert.
    group: Optional[dict[str, Any]] = None


# The ledger keeps at most this many bytes of an answer; channels read twice that (redaction may
# need the context a cut would lose) and only from answers that are failures.
EXCERPT_BYTES = 256
EXCERPT_READ = 2 * EXCERPT_BYTES


def answer_excerpt(body: bytes) -> Optional[str]:
    """The start of an answer's body as text for the ledger (None when empty)."""
    text = body[:EXCERPT_READ].decode("utf-8", "replace").strip()
    return text or None


def peer_address(sockname) -> Optional[str]:
    """"ip:port" ("[ip]:port" for IPv6) from a socket's peername, or None."""
    if not sockname or not isinstance(sockname, tuple):
        return None
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class DeliveryResult:
    kind: Literal["sent", "transient", "permanent"]
    error: Optional[str] = None          # short; never a secret or a full address
    retry_after: Optional[float] = None  # seconds, from Retry-After or the like
    disable_destination: bool = False    # the endpoint is gone for good (HTTP 410)
    # For the attempt ledger (notify.delivery_attempts): what answered and where.
    code: Optional[str] = None           # HTTP status, SMTP reply code, Slack error name; None: no answer
    excerpt: Optional[str] = None        # the answer's start (failures only); the dispatcher redacts and cuts it
    address: Optional[str] = None        # the address connected to: "ip:port" (or the SMTP host:port)

    @classmethod
    def sent(cls, note: Optional[str] = None, *, code: Optional[str] = None,
             address: Optional[str] = None) -> "DeliveryResult":
        if note is None and code is None and address is None:
            return _SENT  # frozen, so one instance serves every plain success
        if note is None:
            return _sent_at(code, address)
        return cls("sent", error=note, code=code, address=address)

    @classmethod
    def transient(cls, error: str, retry_after: Optional[float] = None, *, code: Optional[str] = None,
                  excerpt: Optional[str] = None, address: Optional[str] = None) -> "DeliveryResult":
        return cls("transient", error=error, retry_after=retry_after, code=code, excerpt=excerpt, address=address)

    @classmethod
    def permanent(cls, error: str, *, disable_destination: bool = False, code: Optional[str] = None,
                  excerpt: Optional[str] = None, address: Optional[str] = None) -> "DeliveryResult":
        return cls("permanent", error=error, disable_destination=disable_destination, code=code, excerpt=excerpt,
                   address=address)

    def answered(self, code: Optional[str], excerpt: Optional[str], address: Optional[str]) -> "DeliveryResult":
        """This result with what answered it (a classifier's result, filled in by the channel)."""
        if self.kind == "sent" and self.error is None:
            return _sent_at(code, address)
        return replace(self, code=code, excerpt=None if self.kind == "sent" else excerpt, address=address)


_SENT = DeliveryResult("sent")
# A plain success per (code, address): a dispatcher sends to the same few receivers, so the hot
# path makes no new result object per send (cleared when it grows past a bound).
_SENT_BY_ANSWER: dict[tuple, DeliveryResult] = {}


def _sent_at(code: Optional[str], address: Optional[str]) -> DeliveryResult:
    key = (code, address)
    result = _SENT_BY_ANSWER.get(key)
    if result is None:
        if len(_SENT_BY_ANSWER) >= 4096:
            _SENT_BY_ANSWER.clear()
        result = _SENT_BY_ANSWER[key] = DeliveryResult("sent", code=code, address=address)
    return result


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
