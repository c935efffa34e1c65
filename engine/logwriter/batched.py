"""The asynchronous batched writer: what a service calls on its request path to log a row.

`await writer.write(record)` admits the record (sampling, redaction) and appends it to its table's
in-memory buffer; a background task flushes a table's buffer with one COPY when it holds
`batch_rows` rows or when its oldest row is `flush_interval` old. A buffer holds at most
`buffer_rows` rows: past that, write() waits until a flush made room (backpressure), except for
data_activity.api_access_logs when `api_access_logs_when_full: drop`, where the row is discarded
and counted in `dropped` (access logs are the seed's sampleable stream; losing an admin or record
event silently is never acceptable). `flush()` writes everything buffered now; `close()` refuses new
rows, stops the background task, and writes everything buffered (including rows of write() calls
that were waiting for room) before closing the connections.

A failed COPY puts its rows back at the head of their buffer, so nothing admitted is lost while
the process lives: the background task retries on its next tick, and flush()/close() raise.

Age is measured with a monotonic clock that tests may replace (no sleeping in tests): the
background task calls `flush_due()`, which tests can also call directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import psycopg

from engine.config import LogWriterConfig
from engine.db import SESSION_OPTIONS, Databases
from engine.errors import NotifyError
from engine.logwriter.copy import copy_records_async
from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import ApiAccessLog, LogRecord, record_type

log = logging.getLogger(__name__)


class LogWriteFailed(NotifyError):
    """A flush could not write; the rows are still buffered."""


@dataclass
class _TableBuffer:
    cls: type[LogRecord]
    rows: list[LogRecord] = field(default_factory=list)
    oldest: Optional[float] = None          # monotonic time the oldest buffered row arrived
    room: asyncio.Event = field(default_factory=asyncio.Event)
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)


class BatchedLogWriter:
    def __init__(self, databases: Databases, settings: Optional[LogWriterConfig] = None,
                 pipeline: Optional[LogPipeline] = None, *, monotonic: Callable[[], float] = time.monotonic,
                 application_name: str = "notify-engine-logwriter"):
        self.settings = settings or LogWriterConfig()
        self.pipeline = pipeline or LogPipeline()
        self._databases = databases
        self._monotonic = monotonic
        self._application_name = application_name
        self._buffers: dict[type[LogRecord], _TableBuffer] = {}
        self._connections: dict[str, psycopg.AsyncConnection] = {}   # by database URL
        self._connection_locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._closed = False
        self._waiting = 0                         # write() calls waiting for room
        self.written: Counter[str] = Counter()    # table -> rows committed
        self.dropped: Counter[str] = Counter()    # table -> rows discarded because the buffer was full
        self.refused: Counter[str] = Counter()    # table -> rows the database refused (logged)
        self.last_error: Optional[BaseException] = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> "BatchedLogWriter":
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="log-writer-flush")
        return self

    async def __aenter__(self) -> "BatchedLogWriter":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Stops accepting rows, writes everything buffered, closes the connections."""
        self._closed = True
        if self._task is not None:
            # Not cancel(): a COPY cancelled halfway leaves its connection unusable. The task
            # finishes the flush it is in and returns.
            self._wake.set()
            await self._task
            self._task = None
        try:
            await self.flush()
            # A write() that began before close() and waited for room goes in too.
            while self._waiting or self.pending():
                await asyncio.sleep(0)
                await self.flush()
        finally:
            for conn in self._connections.values():
                await conn.close()
            self._connections.clear()

    # ------------------------------------------------------------------ writing

    def pending(self) -> int:
        return sum(len(b.rows) for b in self._buffers.values())

    async def write(self, record: LogRecord) -> bool:
        """Admits and buffers one record. False when sampling or the drop policy discarded it."""
        if self._closed:
            raise LogWriteFailed("the log writer is closed")
        admitted = self.pipeline.admit(record)
        if admitted is None:
            return False
        return await self.write_admitted(admitted)

    async def write_admitted(self, record: LogRecord) -> bool:
        """Buffers a record that already went through pipeline.admit(); False when dropped."""
        if self._closed:
            raise LogWriteFailed("the log writer is closed")
        admitted = record
        buffer = self._buffers.get(type(record))
        if buffer is None:
            buffer = self._buffers[type(record)] = _TableBuffer(type(record))
        while len(buffer.rows) >= self.settings.buffer_rows:
            if type(record) is ApiAccessLog and self.settings.api_access_logs_when_full == "drop":
                self.dropped[record.TABLE] += 1
                return False
            buffer.room.clear()
            self._wake.set()
            self._waiting += 1
            try:
                await buffer.room.wait()
            finally:
                self._waiting -= 1
        if not buffer.rows:
            buffer.oldest = self._monotonic()
        buffer.rows.append(admitted)
        if len(buffer.rows) >= self.settings.batch_rows:
            self._wake.set()
        return True

    async def write_mapping(self, table: str, row: Mapping[str, Any]) -> bool:
        """Validates a mapping with the seed's column names, then write(); raises InvalidRecord."""
        return await self.write(record_type(table).from_mapping(row))

    # ------------------------------------------------------------------ flushing

    async def flush(self) -> int:
        """Writes every buffered row now; returns how many. Raises LogWriteFailed on failure."""
        total = 0
        for buffer in list(self._buffers.values()):
            total += await self._flush_buffer(buffer, raise_errors=True)
        return total

    async def flush_due(self) -> int:
        """Flushes the buffers that are full enough or old enough (what the background task runs)."""
        now = self._monotonic()
        total = 0
        for buffer in list(self._buffers.values()):
            if not buffer.rows:
                continue
            if len(buffer.rows) >= self.settings.batch_rows or now - buffer.oldest >= self.settings.flush_interval:
                total += await self._flush_buffer(buffer, raise_errors=False)
        return total

    async def _run(self) -> None:
        # Wake at least a few times per flush_interval so age-based flushes are on time.
        tick = max(min(self.settings.flush_interval / 4, 1.0), 0.005)
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=tick)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._closed:
                return
            await self.flush_due()

    async def _flush_buffer(self, buffer: _TableBuffer, *, raise_errors: bool) -> int:
        async with buffer.flushing:
            if not buffer.rows:
                return 0
            # Take the whole buffer: producers refill a fresh list while this batch is copied.
            batch, batch_oldest = buffer.rows, buffer.oldest
            buffer.rows, buffer.oldest = [], None
            buffer.room.set()
            try:
                written = await self._copy_isolating(buffer.cls, batch)
            except Exception as exc:  # noqa: BLE001 - every failure keeps the rows
                buffer.rows[:0] = batch
                buffer.oldest = batch_oldest
                self.last_error = exc
                message = f"writing {len(batch)} rows to {buffer.cls.TABLE} failed: {type(exc).__name__}: {exc}"
                if raise_errors:
                    raise LogWriteFailed(message) from exc
                log.warning("%s; kept buffered, retrying", message)
                return 0
            self.written[buffer.cls.TABLE] += written
            return written

    async def _copy_isolating(self, cls: type[LogRecord], batch: list[LogRecord]) -> int:
        """COPY the batch; when the database refuses a row (a constraint validation did not
        foresee), split the batch to find it, write the rest, and count and log the refused row
        instead of retrying one poisoned batch forever while the buffer fills. A duplicate id is
        not a refusal: copy_records skips it (a retried flush). Connection failures propagate and
        keep the whole batch."""
        try:
            return await self._copy(cls, batch)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            if len(batch) == 1:
                self.refused[cls.TABLE] += 1
                # The primary message only: the DETAIL of a constraint error quotes the row.
                log.error("%s refused a row (SQLSTATE %s): %s", cls.TABLE, exc.sqlstate,
                          exc.diag.message_primary)
                return 0
            middle = len(batch) // 2
            return (await self._copy_isolating(cls, batch[:middle])
                    + await self._copy_isolating(cls, batch[middle:]))

    async def _copy(self, cls: type[LogRecord], batch: list[LogRecord]) -> int:
        url = self._databases.urls[cls.SECTION]
        lock = self._connection_locks.setdefault(url, asyncio.Lock())
        async with lock:   # one COPY at a time per connection
            conn = self._connections.get(url)
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(url, options=SESSION_OPTIONS,
                                                             application_name=self._application_name)
                self._connections[url] = conn
            try:
                return await copy_records_async(conn, cls, batch)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                raise   # the transaction rolled back; the connection is fine
            except BaseException:
                # A failed or cancelled COPY may leave the connection broken or busy: replace it.
                await conn.close()
                raise
