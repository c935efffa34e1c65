"""Webhooks: a versioned JSON payload (docs/WEBHOOKS.md), signed the Standard Webhooks way.

Two HTTP clients, chosen by channels.webhook.client (BENCHMARKS.md has the measurements):
  * http1 (default): channels/http1.py, asyncio protocols + httptools, keep-alive per origin;
    it connects to the addresses channels.ssrf.resolve_checked returned.
  * aiohttp: one ClientSession per dispatcher whose connector resolves through the SSRF guard's
    resolver, so the address that was checked is the address connected to.
Both: the URL's host made canonical (`channels.ssrf.canonical_host`) before the check, no
redirects, no proxies from the environment, no cookies, bounded responses, and one deadline per
send (`channels.webhook.timeout`) over resolution, connect and response; responses mean the same
(`classify`). docs/SECURITY.md says what each outbound path guarantees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
from dataclasses import dataclass
from typing import Any, Optional

import aiohttp
import orjson

from channels.base import Channel, DeliveryResult, Message, answer_excerpt, parse_retry_after, peer_address
from channels.http1 import BadResponse, Http1Client, RequestTimeout
from channels.ssrf import GuardedResolver, Resolve, SsrfRefused, canonical_url, check_url_host
from engine.messages import Composer, Recipient
from engine.templating import render, subject_line

# What the aiohttp path reads of a response body (the http1 client has its own bounds); the header
# block is bounded by aiohttp's parser (8190 bytes a line, 128 headers).
MAX_BODY_READ = 4096
MAX_CANONICAL_URLS = 4096

PAYLOAD_VERSION = 1
GROUP_PAYLOAD_VERSION = 2   # a group message's payload (issue 15): several alerts in one


def signing_key(secret: str) -> bytes:
    """Standard Webhooks: `whsec_<base64>` is the base64 of the key; any other string is the key."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _alert_json(alert: dict, severity: Any) -> dict[str, Any]:
    return {
        "id": str(alert.get("id")),
        "tenant_id": str(alert.get("tenant_id")),
        "base_id": str(alert["base_id"]) if alert.get("base_id") else None,
        "kind": alert.get("kind"),
        "severity": severity,
        "status": alert.get("status"),
        "dedupe_key": alert.get("dedupe_key"),
        "first_seen_at": _iso(alert.get("first_seen_at")),
        "last_seen_at": _iso(alert.get("last_seen_at")),
        "context": alert.get("context") or {},
    }


def build_group_payload(message: Message, summary: Optional[str] = None) -> dict[str, Any]:
    """Version 2 (docs/WEBHOOKS.md): one payload for a group message (issue 15): the group (why
    its members were held, how many there are) and its members, each as version 1's alert."""
    from engine.noise import DESTINATION_GROUPS

    group = message.group or {}
    key = group.get("key") or ""
    members = group.get("members") or []
    return {
        "version": GROUP_PAYLOAD_VERSION,
        "type": "alert.group",
        "id": message.idempotency_key,
        "timestamp": message.now.isoformat(),
        "summary": summary,
        "data": {
            "notification": {"id": message.notification_id, "transition": "group", "attempt": message.attempt},
            "group": {"key": key, "reason": key if key in DESTINATION_GROUPS else "group_wait",
                      "size": int(group.get("size") or len(members)), "listed": len(members)},
            "alerts": [{"notification": {"id": str(m.get("notification_id")), "transition": m.get("transition"),
                                         "reminder_no": m.get("reminder_no") or 0, "held_reason": m.get("held_reason")},
                        "alert": _alert_json(m.get("alert") or {}, m.get("severity"))} for m in members],
        },
    }


def build_payload(message: Message, summary: Optional[str] = None) -> dict[str, Any]:
    if message.group is not None:
        return build_group_payload(message, summary)
    alert = message.alert
    return {
        "version": PAYLOAD_VERSION,
        # A test send (`notifyctl destinations test`) is about no alert; receivers can tell by type.
        "type": "destination.test" if message.transition == "test" else f"alert.{message.transition}",
        "id": message.idempotency_key,
        "timestamp": message.now.isoformat(),
        # For people (a chat relay, a ticket title): the message's one line, as the email's subject.
        "summary": summary,
        "data": {
            "notification": {
                "id": message.notification_id,
                "transition": message.transition,
                "reminder_no": message.reminder_no,
                "attempt": message.attempt,
            },
            "alert": {
                "id": str(alert.get("id")),
                "tenant_id": str(alert.get("tenant_id")),
                "base_id": str(alert["base_id"]) if alert.get("base_id") else None,
                "kind": alert.get("kind"),
                "severity": message.severity,
                "status": alert.get("status"),
                "dedupe_key": alert.get("dedupe_key"),
                "first_seen_at": _iso(alert.get("first_seen_at")),
                "last_seen_at": _iso(alert.get("last_seen_at")),
                "context": alert.get("context") or {},
            },
        },
    }


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Compact JSON bytes. orjson (several times faster than json.dumps, which was a tenth of the
    dispatcher's CPU); json for what orjson refuses, such as integers past 64 bits in a context."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


class WebhookChannel(Channel):
    name = "webhook"

    def __init__(self, *, allow_private_networks: bool, connect_timeout: float, read_timeout: float,
                 resolve: Optional[Resolve] = None, connection_limit: int = 128, client: str = "http1",
                 timeout: Optional[float] = None, composer: Optional[Any] = None,
                 templates_root: Optional[Any] = None, summary: bool = True):
        self.allow_private_networks = allow_private_networks
        self.composer = composer
        self.templates_root = templates_root
        self.with_summary = summary
        self.client = client
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        # The one deadline of a send; sock_read alone resets with every byte a receiver drips.
        self._deadline = timeout if timeout is not None else connect_timeout + read_timeout
        self._http1: Optional[Http1Client] = None
        self._timeout = aiohttp.ClientTimeout(total=self._deadline, sock_connect=connect_timeout,
                                              sock_read=read_timeout, connect=connect_timeout)
        self._resolve = resolve
        self._connection_limit = connection_limit
        self._session: Optional[aiohttp.ClientSession] = None

    async def open(self) -> None:
        if self.client == "http1":
            if self._http1 is None:
                self._http1 = Http1Client(allow_private=self.allow_private_networks,
                                          connect_timeout=self._connect_timeout, read_timeout=self._read_timeout,
                                          resolve=self._resolve, timeout=self._deadline)
            return
        if self._session is None:
            self._session = guarded_session(self.allow_private_networks, self._resolve, self._timeout,
                                            self._connection_limit)

    def summary(self, message: Message) -> str:
        if self.composer is None:
            self.composer = Composer()
        if message.group is not None:
            context = self.composer.group_context(
                message.group, message.severity,
                Recipient(message.destination_id, message.timezone, message.locale, None),
                lambda kind, member: render("webhook", kind, "summary", member, root=self.templates_root),
                message_id=message.notification_id)
            return " ".join(render("webhook", "group", "summary", context, root=self.templates_root).split())
        recipient = Recipient(message.destination_id, message.timezone, message.locale, None)
        kind = message.alert.get("kind", "default")
        # The shipped templates' line needs only the subject's part of the context; an override
        # of the summary or its words renders from the whole context.
        line = subject_line("webhook", kind, "summary", self.composer.subject_context(
            message.alert, message.transition, message.severity, message.reminder_no, recipient),
            root=self.templates_root)
        if line is None:
            context = self.composer.context(message.alert, message.transition, message.severity,
                                            message.reminder_no, recipient)
            line = render("webhook", kind, "summary", context, root=self.templates_root)
        return " ".join(line.split())

    async def close(self) -> None:
        if self._http1 is not None:
            await self._http1.close()
            self._http1 = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: Message) -> DeliveryResult:
        if self._http1 is None and self._session is None:   # open once, not a coroutine call a send
            await self.open()
        body = encode_payload(build_payload(message, self.summary(message) if self.with_summary else None))
        timestamp = int(message.now.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "notify-engine/webhook",
            "webhook-id": message.idempotency_key,
            "webhook-timestamp": str(timestamp),
        }
        if message.secret:
            headers["webhook-signature"] = sign(message.secret, message.idempotency_key, timestamp, body)
        if self._http1 is not None:
            return await post_lean(self._http1, message.recipient, body, headers, message.now)
        assert self._session is not None
        return await post_guarded(self._session, message.recipient, body, headers, self.allow_private_networks,
                                  message.now)


def guarded_session(allow_private: bool, resolve: Optional[Resolve], timeout: aiohttp.ClientTimeout,
                    limit: int = 128) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private, resolve), limit=limit,
                                     limit_per_host=limit, ttl_dns_cache=10, enable_cleanup_closed=True)
    # trust_env=False: a proxy from the environment would carry requests past the guard.
    # DummyCookieJar: one receiver's Set-Cookie must never ride along to the next request (and
    # cookie bookkeeping is a measurable share of the per-request cost).
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                 auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                 skip_auto_headers=("Accept", "Accept-Encoding"))


def classify(status: int, retry_after: Optional[str], now) -> DeliveryResult:
    """What a webhook response means (docs/WEBHOOKS.md "Responses")."""
    if 200 <= status < 300:
        return DeliveryResult.sent()
    if status < 200:
        # Only 101 gets here (other 1xx are interim): a protocol switch nobody asked for is a
        # receiver that does not take webhooks, which a retry does not change.
        return DeliveryResult.permanent(f"HTTP {status}: not an answer to a webhook")
    if status == 410:
        return DeliveryResult.permanent("HTTP 410 Gone: endpoint removed, destination disabled",
                                        disable_destination=True)
    if status == 429 or status >= 500:
        return DeliveryResult.transient(f"HTTP {status}", parse_retry_after(retry_after, now))
    if 300 <= status < 400:
        return DeliveryResult.permanent(f"HTTP {status}: redirects are not followed")
    return DeliveryResult.permanent(f"HTTP {status}")


async def post_lean(client: Http1Client, url: str, body: bytes, headers: dict[str, str], now) -> DeliveryResult:
    try:
        response = await client.post(url, body, headers)
    except SsrfRefused as exc:
        return DeliveryResult.permanent(str(exc))
    except RequestTimeout as exc:
        return DeliveryResult.transient("timed out", address=getattr(exc, "peer", None))
    except BadResponse as exc:
        return DeliveryResult.transient(str(exc), address=getattr(exc, "peer", None))
    except asyncio.TimeoutError:
        return DeliveryResult.transient("connection failed: timed out")
    except ssl.SSLError as exc:
        return DeliveryResult.transient(f"TLS failed: {type(exc).__name__}")
    except OSError as exc:
        return DeliveryResult.transient(f"connection failed: {type(exc).__name__}")
    return classify(response.status, response.retry_after, now).answered(
        str(response.status), answer_excerpt(response.body_start) if response.body_start else None, response.peer)


@dataclass
class Answer:
    status: int
    retry_after: Optional[str]
    body_start: bytes    # at most MAX_BODY_READ bytes of the body
    peer: Optional[str] = None   # the address connected to, for the attempt ledger


class NotAnswered(Exception):
    """A guarded post that got no usable answer; `result` says what that means."""

    def __init__(self, result: DeliveryResult):
        super().__init__(result.error)
        self.result = result


_canonical_urls: dict[str, tuple[str, str]] = {}


def _canonical(url: str) -> tuple[str, str]:
    """canonical_url, once per URL (the dispatcher posts to the same few URLs over and over)."""
    known = _canonical_urls.get(url)
    if known is None:
        known = canonical_url(url)
        if len(_canonical_urls) >= MAX_CANONICAL_URLS:
            _canonical_urls.clear()
        _canonical_urls[url] = known
    return known


async def post_guarded_answer(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                              allow_private: bool) -> Answer:
    """POST through a `guarded_session`: the canonical URL (so aiohttp connects to the host that
    was checked), no redirects, at most MAX_BODY_READ bytes of the body read, and the rest of the
    connection dropped. Raises NotAnswered with the transient or permanent result otherwise."""
    try:
        url, host = _canonical(url)
        check_url_host(host, allow_private)
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            # Read a little (so a short answer leaves the connection reusable), never the whole body.
            body_start = await response.content.read(MAX_BODY_READ)
            return Answer(response.status, response.headers.get("Retry-After"), body_start, _peer_of(response))
    except SsrfRefused as exc:
        raise NotAnswered(DeliveryResult.permanent(str(exc))) from None
    except aiohttp.ClientConnectorError as exc:
        cause = exc.os_error
        if isinstance(cause, SsrfRefused) or isinstance(exc.__cause__, SsrfRefused):
            raise NotAnswered(DeliveryResult.permanent(
                str(cause if isinstance(cause, SsrfRefused) else exc.__cause__))) from None
        raise NotAnswered(DeliveryResult.transient(f"connection failed: {type(cause).__name__}")) from None
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise NotAnswered(DeliveryResult.transient("timed out")) from None
    except aiohttp.ClientResponseError as exc:
        # Includes a header block past aiohttp's bounds (BadHttpMessage, LineTooLong).
        raise NotAnswered(DeliveryResult.transient(f"bad response: {type(exc).__name__}")) from None
    except aiohttp.ClientError as exc:
        raise NotAnswered(DeliveryResult.transient(f"connection error: {type(exc).__name__}")) from None
    except OSError as exc:
        raise NotAnswered(DeliveryResult.transient(f"connection error: {type(exc).__name__}")) from None


def _peer_of(response: aiohttp.ClientResponse) -> Optional[str]:
    """The address a response came from. A short answer has already given its connection back to
    the pool (`response.connection` is None), so this asks the response's protocol, which aiohttp
    keeps but does not document; None when a release of aiohttp drops it."""
    protocol = getattr(response, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    return peer_address(transport.get_extra_info("peername")) if transport is not None else None


async def post_guarded(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                       allow_private: bool, now) -> DeliveryResult:
    try:
        answer = await post_guarded_answer(session, url, body, headers, allow_private)
    except NotAnswered as exc:
        return exc.result
    excerpt = None if 200 <= answer.status < 300 else answer_excerpt(answer.body_start)
    return classify(answer.status, answer.retry_after, now).answered(str(answer.status), excerpt, answer.peer)
