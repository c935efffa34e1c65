"""Real servers and small helpers for the delivery tests: an HTTP receiver (webhooks, Slack's Web
API), an SMTP server (aiosmtpd), and plain-SQL alerts (the detectors' code is not needed)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web
from aiosmtpd.controller import Controller
from sqlalchemy import text

TENANT = "6f1c2d3e-0000-4000-8000-000000000001"
OTHER_TENANT = "6f1c2d3e-0000-4000-8000-000000000002"


# --------------------------------------------------------------------------- alerts by plain SQL


def insert_alert(conn, now: datetime, *, tenant_id: str = TENANT, kind: str = "RUNS_THRESHOLD",
                 severity: str = "warn", dedupe_key: Optional[str] = None, status: str = "open",
                 context: Optional[dict] = None) -> str:
    return str(conn.execute(text(
        "INSERT INTO notify.alerts (tenant_id, kind, severity, dedupe_key, status, first_seen_at, last_seen_at,"
        " created_at, context, transition, transition_seq, transition_at)"
        " VALUES (:t, :k, CAST(:s AS public.sev_level), :d, :st, :now, :now, :now, CAST(:c AS jsonb), 'opened', 1, :now)"
        " RETURNING id"), dict(t=tenant_id, k=kind, s=severity, d=dedupe_key or f"{kind}:{uuid.uuid4().hex}",
                               st=status, now=now, c=json.dumps(context or {"percent": 80}))).scalar_one())


def transition_alert(conn, alert_id: str, transition: str, now: datetime, *, severity: Optional[str] = None,
                     status: Optional[str] = None) -> None:
    conn.execute(text(
        "UPDATE notify.alerts SET transition = :tr, transition_seq = transition_seq + 1, transition_at = :now,"
        " severity = coalesce(CAST(:sev AS public.sev_level), severity), status = coalesce(:st, status),"
        " acked_at = CASE WHEN :tr = 'acked' THEN CAST(:now AS timestamptz) ELSE acked_at END,"
        " resolved_at = CASE WHEN :tr = 'resolved' THEN CAST(:now AS timestamptz) ELSE resolved_at END"
        " WHERE id = :id"), dict(tr=transition, now=now, sev=severity, st=status, id=alert_id))


def add_dest(conn, now, channel: str, target: str, *, tenant_id: str = TENANT, secret_ciphertext=None,
             kinds=None, min_severity: str = "info") -> str:
    return str(conn.execute(text(
        "INSERT INTO notify.destinations (tenant_id, created_at, channel, target, secret_ciphertext, kinds, min_severity)"
        " VALUES (:t, :now, :c, :x, :s, :k, CAST(:m AS public.sev_level)) RETURNING id"),
        dict(t=tenant_id, now=now, c=channel, x=target, s=secret_ciphertext, k=kinds, m=min_severity)).scalar_one())


def notifications(conn, **where) -> list[dict]:
    rows = conn.execute(text("SELECT * FROM notify.notifications ORDER BY created_at, route_key, reminder_no")).mappings()
    return [dict(r) for r in rows if all(r[k] == v for k, v in where.items())]


# --------------------------------------------------------------------------- HTTP servers


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


RELEASE = web.AppKey("release", asyncio.Event)

Responder = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


class HttpServer:
    """An aiohttp server on 127.0.0.1 in its own thread; records every request it answers."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.received: list[Received] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.path_qs, dict(request.headers), body))
        return await self.responder(request, body)

    async def _start(self) -> None:
        app = web.Application()
        self._release = asyncio.Event()
        app[RELEASE] = self._release
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "HttpServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._release.set)  # lets hanging handlers finish
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def webhook_responder(request: web.Request, body: bytes) -> web.StreamResponse:
    """Answers by path: /ok, /status/<code>, /retry-after/<seconds>, /hang (never answers in time)."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "status":
        headers = {"Location": "http://127.0.0.1:1/elsewhere"} if parts[1].startswith("3") else {}
        return web.Response(status=int(parts[1]), headers=headers, text="status")
    if parts[0] == "retry-after":
        return web.Response(status=429, headers={"Retry-After": parts[1]}, text="slow down")
    if parts[0] == "chunked-close":
        # A chunked body and Connection: close: the client must read to the end and reconnect.
        response = web.StreamResponse(status=202)
        response.enable_chunked_encoding()
        response.force_close()
        await response.prepare(request)
        await response.write(b"accepted, ")
        await response.write(b"thanks")
        await response.write_eof()
        return response
    if parts[0] == "hang":
        # Holds the response until the server stops: the client's read timeout fires first.
        await request.app[RELEASE].wait()
    return web.Response(status=200, text="ok")


async def slack_responder(request: web.Request, body: bytes) -> web.StreamResponse:
    """Speaks enough of Slack's Web API (chat.postMessage) and incoming webhooks for slack-sdk."""
    if request.path.startswith("/hooks/"):
        code = request.path.rsplit("/", 1)[1]
        if code == "gone":
            return web.Response(status=404, text="no_service")
        return web.Response(status=200, text="ok")
    if not request.path.endswith("/chat.postMessage"):
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
    if request.headers.get("Authorization") != "Bearer xoxb-test-token":
        return web.json_response({"ok": False, "error": "invalid_auth"})
    payload = json.loads(body) if request.content_type == "application/json" else dict(await request.post())
    channel = payload.get("channel")
    if channel == "CRATELIMIT":
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "30"})
    if channel == "CMISSING":
        return web.json_response({"ok": False, "error": "channel_not_found"})
    if channel == "CINTERNAL":
        return web.json_response({"ok": False, "error": "internal_error"})
    return web.json_response({"ok": True, "channel": channel, "ts": "1700000000.000100"})


class DripReceiver:
    """A webhook endpoint that reads the request, then answers one header line every `interval`
    until `release` is set, then completes a 200: a slow (or hostile) receiver whose answer
    outlives the dispatcher's lease without ever going silent long enough for a read timeout.
    One line a second keeps a long drip within a client's bound on header lines. Raw asyncio,
    since aiohttp's server writes a response's head at once."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.release = threading.Event()
        self.webhook_ids: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
            headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
            await reader.readexactly(int(headers.get("content-length", "0")))
            self.webhook_ids.append(headers.get("webhook-id", ""))
            writer.write(b"HTTP/1.1 200 OK\r\n")
            line = 0
            while not self.release.is_set():
                writer.write(f"X-Drip-{line}: still here\r\n".encode())
                await writer.drain()
                line += 1
                await asyncio.to_thread(self.release.wait, self.interval)   # the drip's pace, or released
            writer.write(b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass   # the client gave up
        finally:
            writer.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "DripReceiver":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        self.release.set()

        async def close() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, path: str = "/drip") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --------------------------------------------------------------------------- SMTP server


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: keeps each message; refuses recipients whose local part says so."""

    messages: list[Any] = field(default_factory=list)
    connections: int = 0
    data_reply: Optional[str] = None   # e.g. '451 4.3.0 try again later'

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("refuse5"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("refuse4"):
            return "450 4.2.1 mailbox busy"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_smtp(handler: SmtpRecorder) -> Controller:
    # aiosmtpd's Controller probes its own port at start, so it needs a real port number.
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller
