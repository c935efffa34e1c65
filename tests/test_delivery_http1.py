"""The lean webhook client against replies aiohttp's server never sends: close-delimited bodies,
interim 1xx replies, garbage, a server that drops kept-alive connections."""

from __future__ import annotations

import asyncio

import pytest

from channels.http1 import Http1Client, RequestTimeout
from channels.ssrf import SsrfRefused


def serve(replies: list[bytes], *, close_after_reply: bool = True):
    """An asyncio server that answers each request with the next canned reply."""
    answered = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")][0])
            answered.append(head + await reader.readexactly(length))
            writer.write(replies.pop(0))
            await writer.drain()
            if close_after_reply:
                break
        writer.close()

    return handle, answered


async def post_all(replies: list[bytes], count: int, *, close_after_reply: bool = True, read_timeout: float = 2,
                   path: str = ""):
    handle, answered = serve(replies, close_after_reply=close_after_reply)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1Client(allow_private=True, connect_timeout=2, read_timeout=read_timeout)
    results = []
    try:
        for _ in range(count):
            try:
                results.append(await client.post(f"http://127.0.0.1:{port}{path or '/hook?x=1'}", b'{"a":1}',
                                                 {"content-type": "application/json"}))
            except Exception as exc:  # noqa: BLE001 - the test looks at what came back
                results.append(exc)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    return results, answered


def test_a_close_delimited_body_and_an_interim_reply_are_read_to_the_real_status():
    results, answered = asyncio.run(post_all([
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length, ends at close",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
    ], 2))
    assert [(r.status, r.retry_after) for r in results] == [(200, None), (429, "7")]
    assert answered[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert answered[0].endswith(b'\r\n\r\n{"a":1}')


def test_a_kept_alive_connection_dropped_by_the_server_is_replaced_once():
    ok = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
    # The server answers one request per connection but does not say Connection: close.
    results, answered = asyncio.run(post_all([ok, ok, ok], 3))
    assert [r.status for r in results] == [204, 204, 204] and len(answered) == 3


def test_garbage_and_silence_are_errors_not_statuses():
    results, _ = asyncio.run(post_all([b"SPDY/9 nonsense\r\n\r\n"], 1))
    assert isinstance(results[0], ConnectionError)
    results, _ = asyncio.run(post_all([b""], 1, close_after_reply=False, read_timeout=0.2))
    assert isinstance(results[0], (RequestTimeout, ConnectionError))


def test_private_literals_are_refused_before_connecting():
    async def attempt():
        client = Http1Client(allow_private=False, connect_timeout=1, read_timeout=1)
        try:
            await client.post("http://0x7f.0.0.1:9/x", b"{}", {})
        finally:
            await client.close()

    with pytest.raises(SsrfRefused):
        asyncio.run(attempt())


def test_a_target_cannot_smuggle_anything_into_the_request_line():
    ok = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
    results, answered = asyncio.run(post_all([ok], 1, path="/a b/\u00e9?q=x y\r\nX-Evil: 1"))
    assert results[0].status == 204
    request_line, *headers = answered[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert request_line == b"POST /a%20b/%C3%A9?q=x%20yX-Evil:%201 HTTP/1.1"
    assert not any(h.lower().startswith(b"x-evil") for h in headers)


def test_tls_verifies_the_certificate_and_a_kept_alive_connection_is_reused(tmp_path):
    """https through the client's TLS context: a self-signed certificate is refused; a keep-alive
    response leaves the connection for the next request (one parser reads both replies)."""
    import ssl

    from tests.tls_support import self_signed_certificate

    self_signed_certificate(tmp_path)    # valid from yesterday to tomorrow, whatever the date
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def run():
        handle, answered = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"] * 2, close_after_reply=False)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        untrusting = Http1Client(allow_private=True, connect_timeout=2, read_timeout=2)
        trusting = Http1Client(allow_private=True, connect_timeout=2, read_timeout=2)
        trusting._tls().load_verify_locations(tmp_path / "cert.pem")
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await untrusting.post(f"https://127.0.0.1:{port}/hook", b"{}", {})
            replies = [await trusting.post(f"https://127.0.0.1:{port}/hook", b"{}", {}) for _ in range(2)]
        finally:
            await untrusting.close()
            await trusting.close()
            server.close()
            await server.wait_closed()
        return replies, answered

    replies, answered = asyncio.run(run())
    assert [r.status for r in replies] == [200, 200] and len(answered) == 2
