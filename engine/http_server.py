"""notifyd's HTTP endpoint on `http.listen`: GET /healthz and GET /metrics (CONTRACT.md).

One asyncio loop on its own thread (as the log ingestion's IngestServer), not a thread per
connection: a scraper that opens connections and never finishes its request (slowloris) costs a
socket each, never a thread. Bounded on purpose:

* at most `max_connections` open at once; one past that is closed at once;
* the request head (request line and headers) must arrive within `request_timeout` of the
  connection opening (a deadline, not an idle timer: dribbling a byte at a time does not extend
  it), and be at most MAX_HEAD_BYTES; otherwise the connection is closed without an answer;
* the answers are computed on two single-thread executors, one per route, so a slow database
  under /metrics never holds /healthz up, and the thread count stays fixed;
* one request per connection (`Connection: close`): a scrape every few seconds needs no keep-alive.

Both routes answer from memory (the health state the supervisor keeps, the metrics registry),
except the database-state metrics, which the collector caches and time-limits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from engine import metrics
from engine.web_thread import ThreadedLoop

log = logging.getLogger("notifyd.http")

HealthCheck = Callable[[], tuple[bool, dict]]

MAX_CONNECTIONS = 64          # a few scrapers and probes; more is an attack or a leak
REQUEST_TIMEOUT = 10.0        # seconds for the whole request head, and again for sending the answer
MAX_HEAD_BYTES = 8192
JSON = "application/json"


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class HttpEndpoint(ThreadedLoop):
    """Serves /healthz and /metrics on `listen` (HOST:PORT) from a background thread's event loop.

    The socket is bound in the constructor, so a taken port is an OSError before anything starts.
    """

    thread_name = "notifyd-http"
    description = "http endpoint"

    def __init__(self, listen: str, health: HealthCheck, *, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__()
        host, port = parse_listen(listen)
        self._socket = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setblocking(False)
        self._health = health
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self._open: dict[asyncio.Task, asyncio.StreamWriter] = {}   # the connections being served
        self._executors = {path: ThreadPoolExecutor(1, thread_name_prefix=f"notifyd-http{path.replace('/', '-')}")
                           for path in ("/healthz", "/metrics")}

    def set_health(self, health: HealthCheck) -> None:
        self._health = health

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def address(self) -> tuple[str, int]:
        return self._socket.getsockname()[:2]

    def start(self) -> "HttpEndpoint":
        self._start_thread()
        log.info("http endpoint listening on %s:%d", *self.address)
        return self

    def stop(self) -> None:
        self._stop_thread(timeout=30)
        self._socket.close()
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ the loop

    async def _main(self) -> None:
        server = await asyncio.start_server(self._connection, sock=self._socket, limit=MAX_HEAD_BYTES)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            # Closed rather than cancelled: each handler then sees the end of its stream and
            # finishes on its own path (3.11's start_server logs a cancelled handler as an error).
            for writer in list(self._open.values()):
                writer.transport.abort()
            if self._open:
                await asyncio.wait(list(self._open), timeout=5)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.max_connections:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = writer
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                # Half-sent, oversized, or gone: nothing worth answering.
                writer.transport.abort()
                return
            try:
                status, body, content_type = await self._answer(head)
            except Exception:  # noqa: BLE001 - e.g. a collector that raised: logged, and a 500
                log.warning("http request failed", exc_info=True)
                status, body, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, b'{"error": "internal"}', JSON
            writer.write(_response(status, body, content_type))
            try:
                await asyncio.wait_for(writer.drain(), self.request_timeout)
            except (asyncio.TimeoutError, ConnectionError):
                writer.transport.abort()   # a reader that does not read
        finally:
            del self._open[task]
            writer.close()

    async def _answer(self, head: bytes) -> tuple[HTTPStatus, bytes, str]:
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            return HTTPStatus.BAD_REQUEST, b'{"error": "bad request"}', JSON
        method, target = request_line[0], request_line[1]
        path = target.split(b"?", 1)[0].decode("ascii", "replace")
        if path not in self._executors:
            return HTTPStatus.NOT_FOUND, b'{"error": "not found: try /healthz or /metrics"}', JSON
        if method != b"GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, b'{"error": "GET only"}', JSON
        executor = self._executors[path]
        loop = asyncio.get_running_loop()
        if path == "/metrics":
            return HTTPStatus.OK, await loop.run_in_executor(executor, metrics.render), CONTENT_TYPE_LATEST
        healthy, body = await loop.run_in_executor(executor, self._check_health)
        return (HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE), json.dumps(body).encode(), JSON

    def _check_health(self) -> tuple[bool, dict]:
        try:
            return self._health()
        except Exception as exc:  # noqa: BLE001 - a broken check is itself unhealthy
            return False, {"status": "unavailable", "error": type(exc).__name__}


def _response(status: HTTPStatus, body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 {status.value} {status.phrase}\r\nServer: notifyd\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body
