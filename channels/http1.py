"""A lean HTTP/1.1 POST client for the webhook hot path: asyncio protocols + httptools (llhttp).

Why it exists: per request, aiohttp's client machinery costs more CPU than everything else the
dispatcher does together (profiles in BENCHMARKS.md). Webhooks need little of it: POST a small
body with Content-Length, read the status, Retry-After and the body, keep the connection alive.
Everything else (redirects, cookies, proxies, compression) is deliberately absent, which is also
what the SSRF rules ask for. Response parsing is llhttp's (httptools), not ours.

Connections go to addresses that `channels.ssrf.resolve_checked` returned (checked once,
connected to as checked), for the host `channels.ssrf.canonical_host` made of the URL's; TLS
verifies the certificate against that host name. A receiver's answer is bounded: the header
block (MAX_HEAD_BYTES, MAX_HEADERS) and what is read of the body (MAX_RESPONSE_BYTES), and each
post has one deadline (`timeout`) over resolution, connects to each address, and the response.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlsplit

import httptools

from channels.base import EXCERPT_READ, peer_address
from channels.ssrf import Resolve, SsrfRefused, canonical_host, check_url_host, resolve_checked, system_resolve

MAX_IDLE_PER_ORIGIN = 256
MAX_CACHED_TARGETS = 4096
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
DNS_TTL = 10.0
# What a receiver may make the client read: the status line and headers together (aiohttp's own
# parser allows 8190 bytes a line and 128 headers), and then the body, which is drained and thrown
# away: past the bound the status counts and the connection is closed rather than read further.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 128
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass
class Response:
    status: int
    retry_after: Optional[str]
    peer: Optional[str] = None        # the address connected to ("ip:port"), for the attempt ledger
    body_start: bytes = b""           # the body's first EXCERPT_READ bytes, kept only when not a 2xx


class RequestTimeout(Exception):
    pass


class BadResponse(ConnectionError):
    """The receiver's answer broke a bound or could not be parsed; the message says which."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        # One parser for the connection's life: llhttp reads keep-alive responses one after another.
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: Optional[asyncio.Future] = None
        self.closed = False
        self._retry_after: Optional[str] = None
        self._headers_complete = False
        self._timer: Optional[asyncio.TimerHandle] = None
        self._received = 0        # bytes of this response so far
        self._header_count = 0
        self._overflow: Optional[str] = None
        self.peer: Optional[str] = None
        self._keep_body = False           # this response is no 2xx: its body's start is kept
        self._body = bytearray()

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.peer = peer_address(transport.get_extra_info("peername"))

    def _response(self, status: int) -> Response:
        return Response(status, self._retry_after, self.peer, bytes(self._body) if self._keep_body else b"")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # HttpParserUpgrade (a 101 with Upgrade) is no HttpParserError: uncaught, asyncio would
            # log a traceback. A 101 has already been answered in on_message_complete.
            self._fail(BadResponse(self._overflow or f"bad HTTP response: {type(exc).__name__}"))
            self.close()
            return
        # Counted after the parser has seen the chunk, so a chunk that ends the head and starts the
        # body is not held against the head; the parser's own buffer holds at most one chunk more.
        self._received += len(data)
        if self._received > MAX_HEAD_BYTES and not self._headers_complete:
            self._fail(BadResponse(f"response header block over {MAX_HEAD_BYTES} bytes"))
            self.close()
        elif self._received > MAX_RESPONSE_BYTES:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                self._stop_timer()
                waiter.set_result((self._response(self.parser.get_status_code()), False))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if exc is None and self._headers_complete and self.waiter is not None and not self.waiter.done():
            # A response without Content-Length or chunking ends when the server closes.
            self.waiter.set_result((self._response(self.parser.get_status_code()), False))
            return
        self._fail(exc or ConnectionResetError("connection closed before the response"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._overflow = f"more than {MAX_HEADERS} response headers"
            raise BadResponse(self._overflow)  # stops the parser; data_received reports it
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self._headers_complete = status >= 200
        self._keep_body = not 200 <= status < 300

    def on_body(self, body: bytes) -> None:
        # Only failures keep their start (the ledger's excerpt); a 2xx body is thrown away unread.
        if self._keep_body and len(self._body) < EXCERPT_READ:
            self._body += body[:EXCERPT_READ - len(self._body)]

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        keep_alive = True
        if status < 200:
            if status != 101:
                return  # an interim 1xx reply: the real one follows
            # 101 Switching Protocols was never asked for: it is the answer (classify decides what
            # it means) and the connection, no longer HTTP, is not reused.
            keep_alive = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self._stop_timer()
            waiter.set_result((self._response(status), keep_alive and self.parser.should_keep_alive()))

    # use
    def _fail(self, exc: BaseException) -> None:
        self._stop_timer()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(RequestTimeout())
        self.close()

    def send(self, request: bytes, timeout: float) -> asyncio.Future:
        """Writes one request; the future resolves to (Response, keep_alive) or raises
        RequestTimeout after `timeout` seconds (one timer handle, not a wait_for task per request)."""
        self._retry_after = None
        self._headers_complete = False
        self._received = self._header_count = 0
        if self._body:
            self._body = bytearray()
        self._keep_body = False
        loop = self._loop
        self.waiter = loop.create_future()
        self._timer = loop.call_later(timeout, self._timed_out)
        assert self.transport is not None
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """Keep-alive connections per origin. It does not bound requests in flight: the caller does
    (the dispatcher's per-channel limit, the one place such limits live)."""

    def __init__(self, *, allow_private: bool, connect_timeout: float, read_timeout: float,
                 resolve: Optional[Resolve] = None, timeout: Optional[float] = None):
        self.allow_private = allow_private
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # One deadline per post over resolution, every connect and the response.
        self.timeout = timeout if timeout is not None else connect_timeout + read_timeout
        self._reused_send_timeout = min(read_timeout, self.timeout)   # a kept-alive connection: no connect spent
        self._resolve = resolve or system_resolve
        self._idle: dict[tuple, list[_Connection]] = {}
        self._addresses: dict[tuple, tuple[float, list[str]]] = {}
        self._targets: dict[str, tuple[tuple, str, Optional[str]]] = {}
        self._ssl: Optional[ssl.SSLContext] = None   # made on the first https connection (loading CA certificates takes tens of ms)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _addresses_for(self, host: str, port: int, deadline: float) -> list[str]:
        key = (host, port)
        cached = self._addresses.get(key)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        # Checked once here; the connection below goes to exactly these addresses. The lookup is
        # under the post's deadline too (a wait_for only on a cache miss, not per request).
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            addresses = await asyncio.wait_for(resolve_checked(host, port, self._resolve, self.allow_private),
                                               max(0.0, remaining))
        except asyncio.TimeoutError:
            raise RequestTimeout() from None
        self._addresses[key] = (now + DNS_TTL, addresses)
        return addresses

    async def _connect(self, scheme: str, host: str, port: int, literal: Optional[str],
                       deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        last_error: BaseException = ConnectionError("no address")
        addresses = [literal] if literal is not None else await self._addresses_for(host, port, deadline)
        for address in addresses:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RequestTimeout()  # the name's addresses share the one deadline
            try:
                _, connection = await asyncio.wait_for(loop.create_connection(
                    _Connection, address, port,
                    ssl=self._tls() if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None), min(self.connect_timeout, remaining))
                return connection
            except (OSError, asyncio.TimeoutError) as exc:
                last_error = exc
        if isinstance(last_error, asyncio.TimeoutError) and loop.time() >= deadline:
            raise RequestTimeout()
        raise last_error

    def _target(self, url: str) -> tuple[tuple, str, Optional[str]]:
        """(origin, request line and Host header, the checked address of an IP-literal host) of a
        URL, parsed and checked once per URL: a dispatcher posts to the same few URLs over and over.
        A refused URL raises SsrfRefused and is not cached."""
        known = self._targets.get(url)
        if known is not None:
            return known
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise SsrfRefused("target refused: not a valid URL") from None
        scheme = parts.scheme
        if scheme not in ("http", "https"):
            raise SsrfRefused("target refused: only http and https URLs are sent")
        # The host as the check sees it is the host connected to and named in Host and TLS SNI.
        host = canonical_host(parts.hostname or "")
        literal = check_url_host(host, self.allow_private)
        port = port or (443 if scheme == "https" else 80)
        # Percent-encode what may not appear raw in a request line (spaces, non-ASCII); urlsplit has
        # already dropped CR, LF and tabs, so a target cannot smuggle a header in.
        target = quote(parts.path or "/", safe=_PATH_SAFE) + (f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query else "")
        default_port = port == (443 if scheme == "https" else 80)
        host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
        known = ((scheme, host, port), f"POST {target} HTTP/1.1\r\nHost: {host_header}\r\n", literal)
        if len(self._targets) >= MAX_CACHED_TARGETS:
            self._targets.clear()
        self._targets[url] = known
        return known

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        origin, request_head, literal = self._target(url)
        scheme, host, port = origin
        head = [request_head, f"Content-Length: {len(body)}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in headers.items()]
        head.append("\r\n")
        request = "".join(head).encode("latin-1") + body
        for attempt in (1, 2):
            idle = self._idle.get(origin)
            connection = None
            while idle:
                candidate = idle.pop()
                if not candidate.closed:
                    connection = candidate
                    break
            reused = connection is not None
            if reused:
                send_timeout = self._reused_send_timeout
            else:
                connection = await self._connect(scheme, host, port, literal, deadline)
                send_timeout = min(self.read_timeout, deadline - loop.time())
                if send_timeout <= 0:
                    connection.close()
                    raise RequestTimeout()
            try:
                response, keep_alive = await connection.send(request, send_timeout)
            except (RequestTimeout, BadResponse) as exc:
                connection.close()
                exc.peer = connection.peer  # type: ignore[attr-defined]  # for the attempt ledger
                raise   # the receiver answered (or took too long): a second try would send twice
            except (ConnectionError, OSError):
                connection.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: one fresh try
                raise
            if keep_alive and not connection.closed:
                pool = self._idle.setdefault(origin, [])
                if len(pool) < MAX_IDLE_PER_ORIGIN:
                    pool.append(connection)
                else:
                    connection.close()
            else:
                connection.close()
            return response
        raise ConnectionError("unreachable")  # pragma: no cover


__all__ = ["BadResponse", "Http1Client", "RequestTimeout", "Response", "SsrfRefused"]
