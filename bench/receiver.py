"""A minimal asyncio HTTP/1.1 receiver for the delivery benchmark (loopback only).

Answers every POST with 200 and counts it per path; `GET /count` returns the counts as JSON.
Keep-alive, Content-Length bodies and chunked bodies (Alertmanager's Go client sends either).
Run: python bench/receiver.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

COUNTS: Counter = Counter()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            # Bytes only, no per-header dict: the receiver must not be the bottleneck it measures.
            head = bytes(buffer[:end]).lower()
            first_line_end = head.find(b"\r\n")
            request_line = head[:first_line_end if first_line_end >= 0 else end]
            method, path = request_line.split(b" ", 2)[:2]
            body_start = end + 4
            if b"transfer-encoding: chunked" in head:
                consumed = _chunked_end(buffer, body_start)
                if consumed is None:
                    return
                del buffer[:consumed]
            else:
                at = head.find(b"content-length:")
                length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) >= 0 else end]) if at >= 0 else 0
                if len(buffer) < body_start + length:
                    return
                del buffer[:body_start + length]
            if method == b"get" and path == b"/count":
                body = json.dumps(COUNTS).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                     + str(len(body)).encode() + b"\r\n\r\n" + body)
            else:
                COUNTS[path.decode()] += 1
                self.transport.write(OK)


def _chunked_end(buffer: bytearray, start: int):
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", position)
            return None if trailer_end < 0 else trailer_end + 2
        if len(buffer) < position + size + 2:
            return None
        position += size + 2


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
