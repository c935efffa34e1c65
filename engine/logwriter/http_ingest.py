"""HTTP ingestion of log rows for services not written in Python.

    POST /v1/logs/<schema.table>          e.g. /v1/logs/data_activity.api_access_logs
    Authorization: Bearer <logs.ingest.token>
    body: JSON Lines, one row a line, the seed's column names

Every line goes through the same validation, sampling and redaction as every other write
(engine.logwriter.pipeline), into a BatchedLogWriter; the answer comes once the request's rows
are committed, so 200 means written:

    200 {"table": ..., "accepted": 10, "rejected": 1, "written": 9, "sampled_out": 0,
         "dropped": 0, "errors": [{"line": 4, "error": "...: status: must be between 100 and 599, got 700"}]}

A bad line never fails the others (as `notifyctl logs import`). 401 without the right token
(compared in constant time), 404 for an unknown table, 413 past logs.ingest.max_body_bytes,
503 when the database cannot take the rows now: they stay buffered in the server and are written
when it can, so the caller must not resend them.

`IngestServer` runs the endpoint on its own listener in a background thread with its own event
loop, so notifyd (a thread-based scheduler) starts it with `start()` and stops it with `stop()`.
"""

from __future__ import annotations

import hmac
import logging
from typing import Optional

from aiohttp import web

from engine.config import IngestConfig
from engine.errors import BadInput
from engine.logwriter.batched import BatchedLogWriter, LogWriteFailed
from engine.logwriter.jsonl import RejectedLine, parse_json_lines
from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import record_type
from engine.web_thread import ThreadedAiohttpServer

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 100
_WRITER_KEY = web.AppKey("log_writer", BatchedLogWriter)
_MAX_BODY_KEY = web.AppKey("max_body_bytes", int)


def make_ingest_app(writer: BatchedLogWriter, token: str, *, max_body_bytes: int = 16 * 1024 * 1024) -> web.Application:
    """The aiohttp application; the caller owns the writer (start it before, close it after)."""
    if not token:
        raise ValueError("the ingestion endpoint needs a token")
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler):
        if not hmac.compare_digest(_header_bytes(request, "Authorization"), expected):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="notify-engine logs"'})
        return await handler(request)

    app = web.Application(middlewares=[require_token], client_max_size=max_body_bytes)
    app[_WRITER_KEY] = writer
    app[_MAX_BODY_KEY] = max_body_bytes
    app.router.add_post("/v1/logs/{table}", ingest_lines)
    return app


def _header_bytes(request: web.Request, name: str) -> bytes:
    """A header as the bytes the client sent. aiohttp decodes headers as UTF-8 with
    surrogateescape, so a non-UTF-8 value (latin-1 \\xff) holds lone surrogates that a plain
    .encode() refuses: that was a 500 and a traceback instead of a 401."""
    try:
        return request.headers.get(name, "").encode("utf-8", "surrogateescape")
    except UnicodeError:
        return b""   # not bytes any client could have sent: matches no token


async def ingest_lines(request: web.Request) -> web.Response:
    writer = request.app[_WRITER_KEY]
    pipeline: LogPipeline = writer.pipeline
    table = request.match_info["table"]
    try:
        record_type(table)
    except BadInput as exc:
        return web.json_response({"error": str(exc)}, status=404)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"error": f"body larger than {request.app[_MAX_BODY_KEY]} bytes; send smaller batches"},
                                 status=413)
    accepted = written = sampled_out = dropped = 0
    errors: list[dict] = []
    rejected = 0
    for item in parse_json_lines(pipeline, table, body.split(b"\n")):
        if isinstance(item, RejectedLine):
            rejected += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append({"line": item.line, "error": item.error})
            continue
        accepted += 1
        record = pipeline.admit(item[1])
        if record is None:
            sampled_out += 1
        elif await writer.write_admitted(record):
            written += 1
        else:
            dropped += 1
    answer = {"table": table, "accepted": accepted, "rejected": rejected, "written": written,
              "sampled_out": sampled_out, "dropped": dropped, "errors": errors}
    try:
        await writer.flush()
    except LogWriteFailed:
        log.warning("ingest: %d rows for %s buffered, the database did not take them yet", written, table)
        answer["buffered"], answer["written"] = written, 0
        answer["error"] = "the database cannot take rows now; they are buffered and will be written: do not resend"
        return web.json_response(answer, status=503)
    return web.json_response(answer)


class IngestServer(ThreadedAiohttpServer):
    """The endpoint on its own listener (logs.ingest.listen), in a thread with its own event loop."""

    thread_name = "log-ingest"
    description = "log ingestion"

    def __init__(self, app, settings: Optional[IngestConfig] = None):
        self._app = app   # engine.app.App, open
        self.settings = settings or app.config.logs.ingest
        if not self.settings.listen or not self.settings.token:
            raise BadInput("logs.ingest: listen and token are both needed to start the ingestion endpoint")
        super().__init__(self.settings.listen)
        self.writer: Optional[BatchedLogWriter] = None

    async def make_application(self) -> web.Application:
        config = self._app.config
        self.writer = BatchedLogWriter(self._app.databases, config.logs.writer,
                                       LogPipeline.from_config(config, self._app.clock))
        await self.writer.start()
        return make_ingest_app(self.writer, self.settings.token, max_body_bytes=self.settings.max_body_bytes)

    async def after_stop(self) -> None:
        await self.writer.close()   # writes every buffered row


def start_ingest_if_configured(app) -> Optional[IngestServer]:
    """For notifyd: starts the endpoint when logs.ingest.listen is set; the caller stop()s it."""
    if not app.config.logs.ingest.listen:
        return None
    return IngestServer(app).start()
