"""notifyd's HTTP endpoint on `http.listen`: GET /healthz and GET /metrics (CONTRACT.md).

The standard library's threading HTTP server: two read-only routes, scraped every few seconds,
need no framework. Both answer from memory (the health state the supervisor keeps, the metrics
registry), except the database-state metrics, which the collector caches.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST

from engine import metrics

log = logging.getLogger("notifyd.http")

HealthCheck = Callable[[], tuple[bool, dict]]


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "notifyd"
    health: HealthCheck  # set on the subclass made per endpoint

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            try:
                healthy, body = self.health()
            except Exception as exc:  # noqa: BLE001 - a broken check is itself unhealthy
                healthy, body = False, {"status": "unavailable", "error": type(exc).__name__}
            self._reply(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
                        json.dumps(body).encode(), "application/json")
        elif path == "/metrics":
            self._reply(HTTPStatus.OK, metrics.render(), CONTENT_TYPE_LATEST)
        else:
            self._reply(HTTPStatus.NOT_FOUND, b'{"error": "not found: try /healthz or /metrics"}', "application/json")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client %s went away before the reply", self.address_string())

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - scrapes are not worth a log line
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # socketserver prints tracebacks straight to stderr, which would break the JSON log stream.
        log.warning("http request from %s failed", client_address[0], exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpEndpoint:
    """Serves /healthz and /metrics on `listen` (HOST:PORT) in a background thread."""

    def __init__(self, listen: str, health: HealthCheck) -> None:
        host, port = parse_listen(listen)
        self._handler = type("Handler", (_Handler,), {"health": staticmethod(health)})
        self.server = (_Server6 if ":" in host else _Server)((host, port), self._handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="notifyd-http", daemon=True)

    def set_health(self, health: HealthCheck) -> None:
        self._handler.health = staticmethod(health)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> "HttpEndpoint":
        self._thread.start()
        log.info("http endpoint listening on %s:%d", *self.address)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
