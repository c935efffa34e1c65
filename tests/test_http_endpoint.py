"""notifyd's /healthz and /metrics endpoint: real sockets on loopback, bounded by design.

The slow-client tests use a small injected request timeout, and wait on what the server does
(a closed socket, an answer), never on a fixed sleep.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from engine.http_server import HttpEndpoint
from tests.daemon_harness import wait_for

HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "   # the head never ends


@pytest.fixture
def endpoints():
    started: list[HttpEndpoint] = []

    def start(health=lambda: (True, {"status": "ok"}), **options) -> HttpEndpoint:
        endpoint = HttpEndpoint("127.0.0.1:0", health, **options).start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


def request(endpoint: HttpEndpoint, raw: bytes) -> bytes:
    """Sends `raw`, returns everything the server sent until it closed ('' when it sent nothing)."""
    with socket.create_connection(endpoint.address, timeout=10) as sock:
        try:
            sock.sendall(raw)
        except (ConnectionResetError, BrokenPipeError):
            return b""   # closed before we finished sending
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass   # closed with a reset: still closed
    return answer


def get(endpoint: HttpEndpoint, path: str) -> tuple[int, bytes]:
    answer = request(endpoint, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def half_sent(endpoint: HttpEndpoint) -> socket.socket:
    sock = socket.create_connection(endpoint.address, timeout=10)
    sock.sendall(HALF_SENT)
    return sock


def test_healthz_answers_from_the_check_and_metrics_in_the_prometheus_format(endpoints):
    state = {"healthy": True}
    endpoint = endpoints(lambda: (state["healthy"], {"status": "ok" if state["healthy"] else "unavailable"}))
    assert get(endpoint, "/healthz") == (200, b'{"status": "ok"}')
    state["healthy"] = False
    assert get(endpoint, "/healthz?verbose=1") == (503, b'{"status": "unavailable"}')
    status, body = get(endpoint, "/metrics")
    assert status == 200 and b"# TYPE notify_" in body
    assert get(endpoint, "/nope")[0] == 404
    assert request(endpoint, b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert request(endpoint, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_a_failing_health_check_is_a_503_not_a_dropped_connection(endpoints):
    def broken():
        raise RuntimeError("boom")

    endpoint = endpoints(broken)
    status, body = get(endpoint, "/healthz")
    assert status == 503 and json.loads(body) == {"status": "unavailable", "error": "RuntimeError"}


def test_half_sent_requests_hold_no_thread_each_and_healthz_still_answers(endpoints):
    endpoint = endpoints(request_timeout=60)   # long: they all hang for the whole test
    threads_before = threading.active_count()
    hanging = [half_sent(endpoint) for _ in range(50)]
    try:
        # Connections are accepted in order: once this answers, all 50 are held by the server.
        assert get(endpoint, "/healthz")[0] == 200
        assert endpoint.open_connections == 50
        assert get(endpoint, "/metrics")[0] == 200
        # The loop thread and one executor thread per route at most, whatever the connections.
        assert threading.active_count() <= threads_before + 2
    finally:
        endpoint.stop()
        for sock in hanging:
            assert read_until_closed(sock) == b""   # stop closed them, unanswered
            sock.close()


def test_a_half_sent_request_is_closed_unanswered_after_the_timeout(endpoints):
    endpoint = endpoints(request_timeout=0.3)
    with half_sent(endpoint) as sock:
        assert read_until_closed(sock) == b""
    wait_for(lambda: endpoint.open_connections == 0, "the connection to be let go", timeout=10)


def test_the_timeout_is_a_deadline_that_dribbling_bytes_does_not_extend(endpoints):
    endpoint = endpoints(request_timeout=0.5)
    with half_sent(endpoint) as sock:
        deadline = time.monotonic() + 20   # generous: an idle timer would never close it
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"x")
                sock.settimeout(0.05)
                closed = sock.recv(1) == b""   # paces the dribble; EOF once the server closed
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
        assert closed


def test_connections_past_the_limit_are_closed_at_once_and_served_again_below_it(endpoints):
    endpoint = endpoints(max_connections=5, request_timeout=60)
    hanging = [half_sent(endpoint) for _ in range(5)]
    try:
        # The sixth is closed unanswered at once (not queued behind the hanging ones).
        assert request(endpoint, b"GET /healthz HTTP/1.1\r\n\r\n") == b""
        assert endpoint.open_connections == 5
        hanging.pop().close()
        wait_for(lambda: endpoint.open_connections == 4, "the closed connection to be let go", timeout=10)
        assert get(endpoint, "/healthz")[0] == 200
    finally:
        for sock in hanging:
            sock.close()


def test_an_oversized_request_head_is_closed_unanswered(endpoints):
    endpoint = endpoints()
    assert request(endpoint, b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n") == b""


def test_a_taken_port_is_an_oserror_before_anything_starts(endpoints):
    endpoint = endpoints()
    with pytest.raises(OSError):
        HttpEndpoint(f"127.0.0.1:{endpoint.address[1]}", lambda: (True, {}))
