"""Outbound hardening (issue 11, docs/SECURITY.md): the SSRF refusal matrix against every outbound
path, bounded answers, one deadline per send, Slack incoming webhooks without slack-sdk's
webhook client, and the Retry-After edges.

Nothing here connects anywhere but loopback. The channel tests run on `ConnectGuardLoop`, an
asyncio loop whose `sock_connect` (the one call both HTTP clients connect through) refuses any
address but 127/8 and ::1 without touching the network and records it, so a guard that failed
would fail the test, not reach 10.x; names are answered by an injected resolver.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable, Optional

import pytest
from aiohttp import web

from channels.base import DeliveryResult, Message, parse_retry_after
from channels.http1 import MAX_HEAD_BYTES, Http1Client
from channels.slack import SlackChannel
from channels.ssrf import blocked_reason, canonical_host
from channels.webhook import WebhookChannel, classify
from engine.config import SlackChannelConfig
from engine.destinations import validate_target
from engine.errors import BadInput
from tests.delivery_support import TENANT, HttpServer, add_dest, insert_alert, notifications

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- a loop that cannot leave


class ConnectGuardLoop(asyncio.SelectorEventLoop):
    """The standard selector loop, except for where it may connect: loopback only (anything else is
    recorded in `forbidden` and refused before a socket call), and addresses in `hanging` never
    answer (a black hole, played without the network)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []
        self.forbidden: list[str] = []
        self.hanging: set[str] = set()

    async def sock_connect(self, sock, address):
        host = address[0]
        self.attempts.append(host)
        if not (host.startswith("127.") or host == "::1"):
            self.forbidden.append(host)
            raise ConnectionRefusedError(f"test loop: {host} is not loopback")
        if host in self.hanging:
            await asyncio.Event().wait()
        return await super().sock_connect(sock, address)


def run_guarded(coroutine_factory: Callable[[ConnectGuardLoop], Awaitable]):
    loop = ConnectGuardLoop()
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        result = runner.run(asyncio.wait_for(coroutine_factory(loop), 20))
    return result, loop


class RawServer:
    """An asyncio server on 127.0.0.1 that reads one request and lets `reply` answer it as it likes
    (the replies aiohttp's server will not send: endless headers, 101, drips)."""

    def __init__(self, reply: Callable[[asyncio.StreamWriter], Awaitable[None]]):
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.written = 0      # bytes the reply wrote before the client went away
        self.server: Optional[asyncio.AbstractServer] = None

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        write = writer.write

        def counted(data: bytes) -> None:
            self.written += len(data)
            write(data)

        writer.write = counted  # type: ignore[method-assign]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            self.requests.append(head + await reader.readexactly(length))
            await self.reply(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def message(recipient: str, channel: str = "webhook") -> Message:
    alert = {"id": str(uuid.uuid4()), "tenant_id": TENANT, "base_id": None, "kind": "RUNS_THRESHOLD",
             "severity": "warn", "status": "open", "dedupe_key": "runs:80pct", "first_seen_at": NOW,
             "last_seen_at": NOW, "context": {"percent": 80}}
    return Message(notification_id=str(uuid.uuid4()), tenant_id=TENANT, alert_id=alert["id"], channel=channel,
                   recipient=recipient, idempotency_key="msg_1", transition="opened", reminder_no=0,
                   severity="warn", attempt=1, now=NOW, alert=alert)


def webhook_channel(client: str, *, allow_private: bool = False, resolve=None, **timeouts) -> WebhookChannel:
    settings = dict(connect_timeout=2, read_timeout=2, timeout=None) | timeouts
    return WebhookChannel(allow_private_networks=allow_private, resolve=resolve, client=client, **settings)


async def send_once(channel, msg: Message) -> DeliveryResult:
    try:
        return await channel.send(msg)
    finally:
        await channel.close()


# --------------------------------------------------------------------------- the SSRF refusal matrix

# (what it is, the URL's host, what the injected resolver answers for the name; None: a literal)
MATRIX = [
    ("U+3002 full stops", "127\u30020\u30020\u30021", None),
    ("U+FF0E full stops", "127\uff0e0\uff0e0\uff0e1", None),
    ("U+FF61 full stops", "127\uff610\uff610\uff611", None),
    ("trailing full stop", "127\u30020\u30020\u30021\u3002", None),
    ("fullwidth digits", "\uff11\uff12\uff17.0.0.1", None),
    ("decimal", "2130706433", None),
    ("short form", "127.1", None),
    ("hexadecimal", "0x7f.0.0.1", None),
    ("octal", "0177.0.0.1", None),
    ("IPv4-mapped", "[::ffff:127.0.0.1]", None),
    ("IPv4-compatible", "[::127.0.0.1]", None),
    ("6to4 of loopback", "[2002:7f00:1::1]", None),
    ("NAT64 of loopback", "[64:ff9b::127.0.0.1]", None),
    ("local-use NAT64", "[64:ff9b:1::7f00:1]", None),
    ("IPv6 loopback", "[::1]", None),
    ("10/8", "10.1.2.3", None),
    ("cloud metadata", "169.254.169.254", None),
    ("192.0.0.0/24", "192.0.0.170", None),
    ("site-local", "[fec0::1]", None),
    ("name to 10/8", "private.test", ["10.1.2.3"]),
    ("name to cloud metadata", "metadata.test", ["169.254.169.254"]),
    ("name to 192.0.0.0/24", "ietf.test", ["192.0.0.8"]),
    ("name to mapped metadata", "mapped.test", ["::ffff:169.254.169.254"]),
    ("name to IPv4-compatible", "compat.test", ["::a00:1"]),
    ("name to 6to4 of 10/8", "sixtofour.test", ["2002:a00:1::1"]),
    ("name to local-use NAT64", "nat64.test", ["64:ff9b:1::a9fe:a9fe"]),
    ("name to site-local", "sitelocal.test", ["fec0::1"]),
    ("name with full stops to loopback", "hook\u3002test", ["127.0.0.1"]),
    ("name to public and loopback", "mixed.test", ["93.184.216.34", "127.0.0.1"]),
]
NAMES = {row[1].replace("\u3002", "."): row[2] for row in MATRIX if row[2] is not None}
IDS = [row[0] for row in MATRIX]


async def matrix_resolve(host: str, port: int) -> list[str]:
    """The matrix's names; anything else as the system reads a numeric host (no DNS query), which
    is what a literal that slipped past the check would resolve to."""
    if host in NAMES:
        return NAMES[host]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [info[4][0] for info in infos]


async def _nothing(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def refused_on(make_channel, host: str, path: str, channel_name: str = "webhook"):
    async def run(loop: ConnectGuardLoop):
        async with RawServer(_nothing) as server:
            result = await send_once(make_channel(), message(f"http://{host}:{server.port}{path}", channel_name))
        return result, server.connections

    (result, connections), loop = run_guarded(run)
    return result, connections, loop


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
@pytest.mark.parametrize("label, host, answer", MATRIX, ids=IDS)
def test_webhooks_refuse_every_spelling_of_a_blocked_address_before_connecting(client, label, host, answer):
    result, connections, loop = refused_on(lambda: webhook_channel(client, resolve=matrix_resolve), host, "/hook")
    assert result.kind == "permanent" and result.error.startswith("target refused"), (label, result)
    assert connections == 0 and loop.forbidden == [] and loop.attempts == []


@pytest.mark.parametrize("label, host, answer", MATRIX, ids=IDS)
def test_slack_incoming_webhooks_refuse_every_spelling_of_a_blocked_address_before_connecting(label, host, answer):
    def make():
        return SlackChannel(SlackChannelConfig(token=None, timeout=2), allow_private_networks=False,
                            resolve=matrix_resolve)

    result, connections, loop = refused_on(make, host, "/services/T0/B0/XXXX", "slack")
    assert result.kind == "permanent" and result.error.startswith("target refused"), (label, result)
    assert connections == 0 and loop.forbidden == [] and loop.attempts == []


@pytest.mark.parametrize("label, host, answer", MATRIX, ids=IDS)
def test_destinations_add_refuses_every_literal_spelling_and_stores_names_canonical(label, host, answer):
    url = f"http://{host}:8080/hook"
    for channel in ("webhook", "slack"):
        if answer is None:
            with pytest.raises(BadInput, match=r"^--target: the URL's host is a .* address"):
                validate_target(channel, url, allow_private_networks=False)
        else:   # a name: checked at every send, since DNS answers change
            stored = validate_target(channel, url, allow_private_networks=False)
            assert stored == f"http://{canonical_host(host)}:8080/hook" and stored.isascii()


def test_notifyctl_destinations_add_refuses_a_unicode_spelled_loopback_with_exit_2(app, config_file, capsys):
    from sqlalchemy import text

    from engine.cli import main

    path = str(config_file())
    code = main(["destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                 "--target", "http://127\uff0e0\uff0e0\uff0e1:8080/x", "--config", path])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--target: the URL's host is a loopback address" in err
    assert main(["destinations", "add", "--tenant", TENANT, "--channel", "webhook",
                 "--target", "http://Hooks\u3002Example\u3002com/x", "--config", path]) == 0
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT target FROM notify.destinations")).scalars().all() == ["http://hooks.example.com/x"]


def test_destinations_add_keeps_literal_private_targets_when_private_networks_are_allowed():
    assert validate_target("webhook", "http://127\u30020\u30020\u30021:8080/x?q=1", allow_private_networks=True) \
        == "http://127.0.0.1:8080/x?q=1"
    assert validate_target("webhook", "https://B\u00fccher.example/h") == "https://xn--bcher-kva.example/h"
    with pytest.raises(BadInput, match="not a valid host name"):
        validate_target("webhook", "http://" + "a" * 300 + "/x")


def test_the_slack_web_api_base_url_is_operator_config_and_not_guarded(app):
    """docs/SECURITY.md: base_url comes from config.yaml only (never from a tenant; a tenant's
    Slack target is a channel id sent in the JSON body, or an incoming-webhook URL, which is
    guarded above), so it may name a loopback or internal gateway even with
    allow_private_networks false. This pins that decision."""
    from tests.delivery_support import slack_responder

    server = HttpServer(slack_responder).start()
    try:
        base_url = f"http://127\u30020\u30020\u30021:{server.port}/api/"
        config = SlackChannelConfig(token="xoxb-test-token", base_url=base_url, timeout=5)
        channel = SlackChannel(config, allow_private_networks=False, resolve=matrix_resolve)
        result, loop = run_guarded(lambda loop: send_once(channel, message("C0ALERTS", "slack")))
    finally:
        server.stop()
    assert result.kind == "sent" and loop.forbidden == []
    assert [r.path for r in server.received] == ["/api/chat.postMessage"]


@pytest.mark.parametrize("address, reason", [
    ("192.0.0.170", "private or reserved"), ("::7f00:1", "loopback"), ("::a9fe:a9fe", "link-local or cloud metadata"),
    ("2002:7f00:1::1", "loopback"), ("2002:a9fe:a9fe::1", "link-local or cloud metadata"),
    ("2002:5db8:d822::1", "private or reserved"), ("64:ff9b:1::a00:1", "private or reserved"),
    ("fec0::1", "private or reserved"), ("::1", "loopback"), ("::", "private or reserved"),
    ("192.0.2.1", None), ("2606:2800:220:1::1", None),
])
def test_the_blocklist_covers_ipv4_carrying_and_deprecated_ipv6_ranges(address, reason):
    assert blocked_reason(address) == reason


# --------------------------------------------------------------------------- bounded answers (http1)


ENDLESS_CAP = 64 * 1024 * 1024     # what an "endless" reply writes at most, should a client read it all


async def _endless_header(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
    for _ in range(ENDLESS_CAP // 65536):
        writer.write(b"a" * 65536)
        await writer.drain()


async def _many_headers(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(500))
                 + b"Content-Length: 0\r\n\r\n")


async def _endless_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(ENDLESS_CAP // 65536):
        writer.write(b"10000\r\n" + b"b" * 65536 + b"\r\n")
        await writer.drain()


async def _switching_protocols(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nnot http")


async def _switching_protocols_bare(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")


async def _drip_header(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    for _ in range(600):             # a byte every 50 ms: every sock_read timeout starts again
        await asyncio.sleep(0.05)
        writer.write(b"a")
        await writer.drain()


def answer_of(client: str, reply, **timeouts) -> tuple[DeliveryResult, RawServer]:
    async def run(loop):
        async with RawServer(reply) as server:
            channel = webhook_channel(client, allow_private=True, **timeouts)
            return await send_once(channel, message(server.url())), server

    (result, server), _ = run_guarded(run)
    return result, server


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
@pytest.mark.parametrize("reply", [_endless_header, _many_headers], ids=["endless header line", "500 headers"])
def test_a_header_block_past_the_bound_is_a_clean_transient_failure(client, reply, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        result, server = answer_of(client, reply, read_timeout=10)
    assert result.kind == "transient", result
    assert "timed out" not in result.error    # refused at the bound, not at the read timeout
    assert server.written < ENDLESS_CAP / 2   # the client stopped reading and hung up
    assert [r for r in caplog.records if r.name == "asyncio"] == []


def test_http1_stops_reading_an_endless_header_line_at_the_bound():
    async def run(loop):
        async with RawServer(_endless_header) as server:
            client = Http1Client(allow_private=True, connect_timeout=2, read_timeout=10)
            try:
                with pytest.raises(ConnectionError, match=f"header block over {MAX_HEAD_BYTES} bytes"):
                    await client.post(server.url(), b"{}", {})
            finally:
                await client.close()

    run_guarded(run)


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
def test_an_endless_body_still_yields_the_status_without_reading_it_all(client):
    result, server = answer_of(client, _endless_body, read_timeout=10)
    assert result.kind == "sent"
    assert server.written < ENDLESS_CAP / 2   # not drained to the end: the client hung up


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
@pytest.mark.parametrize("reply", [_switching_protocols, _switching_protocols_bare], ids=["with Upgrade", "bare"])
def test_a_101_answer_is_a_clean_permanent_failure_without_a_traceback(client, reply, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        result, _ = answer_of(client, reply)
    assert (result.kind, result.error) == ("permanent", "HTTP 101: not an answer to a webhook")
    assert [r for r in caplog.records if r.name == "asyncio"] == []


# --------------------------------------------------------------------------- one deadline per send


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
def test_a_receiver_dripping_its_headers_is_cut_off_at_the_send_deadline(client):
    result, _ = answer_of(client, _drip_header, read_timeout=0.3, timeout=0.8)
    assert (result.kind, result.error) == ("transient", "timed out")


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
def test_name_resolution_is_under_the_send_deadline(client):
    async def never(host, port):
        await asyncio.Event().wait()

    channel = webhook_channel(client, allow_private=True, resolve=never, connect_timeout=30, read_timeout=30,
                              timeout=0.5)
    result, _ = run_guarded(lambda loop: send_once(channel, message("http://slow-dns.test/hook")))
    assert result.kind == "transient" and "timed out" in result.error


@pytest.mark.parametrize("client", ["http1", "aiohttp"])
def test_a_names_addresses_share_one_deadline(client):
    """Five addresses that never answer a connect (played by the test loop: nothing leaves the
    machine); each may take connect_timeout, but all of them together only the send's timeout."""
    hanging = [f"127.0.0.{n}" for n in range(2, 7)]

    async def resolve(host, port):
        return hanging

    async def run(loop):
        loop.hanging.update(hanging)
        channel = webhook_channel(client, allow_private=True, resolve=resolve, connect_timeout=0.4, timeout=0.5)
        return await send_once(channel, message("http://blackhole.test:9/hook"))

    result, loop = run_guarded(run)
    assert result.kind == "transient" and "timed out" in result.error
    assert 1 <= len(loop.attempts) < len(hanging), loop.attempts
    assert loop.forbidden == []


def test_the_send_deadline_defaults_to_connect_plus_read_timeout():
    from engine.config import parse_config

    config = parse_config({"channels": {"webhook": {"connect_timeout": "2s", "read_timeout": "30s"}}})
    assert config.channels.webhook.timeout is None
    assert webhook_channel("http1", connect_timeout=2, read_timeout=30)._deadline == 32
    assert parse_config({"channels": {"webhook": {"timeout": "20s"}}}).channels.webhook.timeout == 20
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="channels.webhook.timeout: must be more than 0"):
        parse_config({"channels": {"webhook": {"timeout": 0}}})


# --------------------------------------------------------------------------- Slack incoming webhooks


async def slack_hook_responder(request: web.Request, body: bytes) -> web.StreamResponse:
    code = request.path.rsplit("/", 1)[1]
    if code == "redirect":
        return web.Response(status=307, headers={"Location": str(request.url.with_path("/hooks/T0/B0/landed"))})
    if code == "endless":
        response = web.StreamResponse(status=200)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(ENDLESS_CAP // 65536):
            await response.write(b"x" * 65536)
            ENDLESS_WRITTEN.append(65536)
        return response
    if code == "drop":
        assert request.transport is not None
        request.transport.close()   # no answer: a connection error, which slack-sdk's handler retried
        return web.Response(status=200)
    return web.Response(status=200, text="ok")


ENDLESS_WRITTEN: list[int] = []


@pytest.fixture
def hook_server():
    server = HttpServer(slack_hook_responder).start()
    yield server
    server.stop()


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True   # the receiver is on 127.0.0.1
    app.config.channels.slack.timeout = 3
    return app


def deliver_slack_hook(app, url: str) -> dict:
    from engine.dispatcher import deliver_due
    from engine.planner import plan_notifications

    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "slack", url)
        insert_alert(conn, now, severity="critical")
        plan_notifications(conn, app.config, now)
    deliver_due(app)
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    return row


def test_a_slack_incoming_webhook_redirect_is_not_followed(hook_app, hook_server):
    row = deliver_slack_hook(hook_app, hook_server.url("/hooks/T0/B0/redirect"))
    assert (row["status"], row["error"]) == ("failed", "Slack webhook HTTP 307: redirects are not followed")
    assert [r.path for r in hook_server.received] == ["/hooks/T0/B0/redirect"]


def test_a_slack_incoming_webhook_ignores_proxies_from_the_environment(hook_app, hook_server, monkeypatch):
    proxy = HttpServer(slack_hook_responder).start()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, proxy.url("/"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        row = deliver_slack_hook(hook_app, hook_server.url("/hooks/T0/B0/XXXX"))
    finally:
        proxy.stop()
    assert row["status"] == "sent"
    assert proxy.received == [] and len(hook_server.received) == 1


def test_a_slack_incoming_webhook_answer_is_read_only_up_to_a_bound(hook_app, hook_server):
    ENDLESS_WRITTEN.clear()
    row = deliver_slack_hook(hook_app, hook_server.url("/hooks/T0/B0/endless"))
    assert row["status"] == "sent", row["error"]
    assert sum(ENDLESS_WRITTEN) < ENDLESS_CAP / 2   # slack-sdk read it all


def test_a_slack_incoming_webhook_connection_error_is_not_retried_inside_the_send(hook_app, hook_server):
    row = deliver_slack_hook(hook_app, hook_server.url("/hooks/T0/B0/drop"))
    assert row["status"] == "queued" and row["error"].startswith("Slack webhook connection")
    assert len(hook_server.received) == 1   # the dispatcher retries later, with backoff; the send did not


def test_a_slack_incoming_webhook_is_posted_as_json_with_text_and_blocks(hook_app, hook_server):
    row = deliver_slack_hook(hook_app, hook_server.url("/hooks/T0/B0/XXXX"))
    assert row["status"] == "sent"
    (request,) = hook_server.received
    assert request.headers["Content-Type"].startswith("application/json")
    payload = json.loads(request.body)
    assert payload["text"] == "Runs quota threshold reached" and payload["blocks"][0]["type"] == "header"


# --------------------------------------------------------------------------- Retry-After edges


@pytest.mark.parametrize("value, seconds", [
    ("Sun, 01 Mar 2026 12:02:00 -0000", 120.0), ("Sun, 01 Mar 2026 12:02:00 GMT", 120.0),
    ("Sun, 01 Mar 2026 12:02:00", 120.0), ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0), ("90", 90.0),
    ("soon", None), ("", None),
])
def test_retry_after_dates_without_a_zone_or_with_minus_0000_are_gmt(value, seconds):
    assert parse_retry_after(value, NOW) == seconds
    result = classify(503, value, NOW)
    assert result.kind == "transient" and result.retry_after == seconds


def webhook_429(app, receiver, retry_after: str) -> dict:
    from engine.dispatcher import deliver_due
    from engine.planner import plan_notifications

    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", receiver.url(f"/retry-after/{retry_after}"))
        insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
    deliver_due(app)
    with app.databases.begin("notify") as conn:
        (row,) = notifications(conn)
    return row


def test_a_retry_after_longer_than_backoff_max_is_honoured(app, receiver):
    app.config.channels.webhook.allow_private_networks = True
    app.config.delivery.backoff_max = 1
    row = webhook_429(app, receiver, "120")
    assert row["status"] == "queued" and row["next_attempt_at"] == app.clock.now() + timedelta(seconds=120)


def test_a_retry_after_is_capped_by_delivery_retry_after_max(app, receiver):
    app.config.channels.webhook.allow_private_networks = True
    app.config.delivery.retry_after_max = 3600
    row = webhook_429(app, receiver, str(10 * 365 * 86400))
    assert row["next_attempt_at"] == app.clock.now() + timedelta(seconds=3600)


def test_retry_after_max_defaults_to_a_day():
    from engine.config import parse_config

    assert parse_config({}).delivery.retry_after_max == 86400
    assert parse_config({"delivery": {"retry_after_max": "2h"}}).delivery.retry_after_max == 7200
