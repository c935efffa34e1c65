"""The asynchronous batched writer: size and age flushes, backpressure, drop policy, clean close."""

import asyncio
import uuid

import pytest

from engine.config import LogWriterConfig
from engine.db import Databases
from engine.logwriter import ApiAccessLog, LogPipeline, RecordEvent
from engine.logwriter.batched import BatchedLogWriter, LogWriteFailed
from tests.conftest import url_of_missing_database

TENANT = str(uuid.uuid4())
BASE = str(uuid.uuid4())
TABLE_ID = str(uuid.uuid4())


def access(status=200):
    return ApiAccessLog(tenant_id=TENANT, base_id=BASE, route="/v1/records", method="GET", status=status)


def record_event():
    return RecordEvent(tenant_id=TENANT, base_id=BASE, table_id=TABLE_ID, action="INSERT")


def rows_in(databases, table):
    with databases.begin("data_activity") as conn:
        return conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_clean_close_under_load_writes_every_row(databases, clock):
    async def scenario():
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=500, buffer_rows=2000, flush_interval=60),
                                  LogPipeline(clock=clock))
        await writer.start()

        async def producer(n, make):
            for i in range(n):
                await writer.write(make())
                if i % 250 == 0:
                    await asyncio.sleep(0)   # let the flusher interleave, as a real service would

        await asyncio.gather(*(producer(3000, access) for _ in range(4)), producer(2000, record_event))
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.pending() == 0
    assert writer.written == {"data_activity.api_access_logs": 12000, "data_activity.record_events": 2000}
    assert rows_in(databases, "data_activity.api_access_logs") == 12000
    assert rows_in(databases, "data_activity.record_events") == 2000


def test_buffer_is_flushed_once_its_oldest_row_is_flush_interval_old(databases, clock):
    monotonic = FakeMonotonic()

    async def scenario():
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=1000, flush_interval=2),
                                  LogPipeline(clock=clock), monotonic=monotonic)
        for _ in range(3):
            await writer.write(record_event())
        monotonic.now += 1.9
        assert await writer.flush_due() == 0
        assert rows_in(databases, "data_activity.record_events") == 0
        monotonic.now += 0.1
        assert await writer.flush_due() == 3
        await writer.close()

    asyncio.run(scenario())
    assert rows_in(databases, "data_activity.record_events") == 3


def test_buffer_reaching_batch_rows_is_flushed_without_waiting_for_age(databases, clock):
    async def scenario():
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=10, buffer_rows=100, flush_interval=3600),
                                  LogPipeline(clock=clock), monotonic=FakeMonotonic())
        for _ in range(10):
            await writer.write(record_event())
        assert await writer.flush_due() == 10
        await writer.close()

    asyncio.run(scenario())


def test_full_buffer_makes_write_wait_until_a_flush_makes_room(databases, clock):
    async def scenario():
        # No background task: only our explicit flush() can make room.
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=5, buffer_rows=5), LogPipeline(clock=clock))
        for _ in range(5):
            assert await writer.write(record_event())
        blocked = asyncio.ensure_future(writer.write(record_event()))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not blocked.done() and writer.pending() == 5
        assert await writer.flush() == 5
        assert await blocked is True
        assert writer.pending() == 1
        await writer.close()

    asyncio.run(scenario())
    assert rows_in(databases, "data_activity.record_events") == 6


def test_full_access_log_buffer_drops_and_counts_when_configured(databases, clock):
    async def scenario():
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=5, buffer_rows=5, api_access_logs_when_full="drop"),
                                  LogPipeline(clock=clock))
        results = [await writer.write(access()) for _ in range(8)]
        assert results == [True] * 5 + [False] * 3
        # Other tables never drop: a record event still waits for room.
        for _ in range(5):
            await writer.write(record_event())
        blocked = asyncio.ensure_future(writer.write(record_event()))
        await asyncio.sleep(0)
        assert not blocked.done()
        await writer.close()
        assert await blocked is True   # a write waiting when close() began still goes in
        return writer

    writer = asyncio.run(scenario())
    assert writer.dropped == {"data_activity.api_access_logs": 3}
    assert rows_in(databases, "data_activity.api_access_logs") == 5
    assert rows_in(databases, "data_activity.record_events") == 6


def test_a_failed_flush_keeps_the_rows_and_the_next_flush_writes_them(databases, database_urls, clock):
    broken = Databases({**database_urls, "data_activity": url_of_missing_database(database_urls["data_activity"])})

    async def scenario():
        writer = BatchedLogWriter(broken, LogWriterConfig(batch_rows=100), LogPipeline(clock=clock))
        for _ in range(7):
            await writer.write(record_event())
        with pytest.raises(LogWriteFailed, match="writing 7 rows to data_activity.record_events failed"):
            await writer.flush()
        assert writer.pending() == 7
        broken.urls["data_activity"] = database_urls["data_activity"]   # the database is back
        assert await writer.flush() == 7
        await writer.close()

    asyncio.run(scenario())
    assert rows_in(databases, "data_activity.record_events") == 7


def test_writer_refuses_rows_after_close(databases, clock):
    async def scenario():
        writer = BatchedLogWriter(databases, pipeline=LogPipeline(clock=clock))
        await writer.close()
        with pytest.raises(LogWriteFailed, match="closed"):
            await writer.write(record_event())

    asyncio.run(scenario())


def test_a_retried_batch_skips_rows_already_written(databases, clock):
    async def scenario():
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=100), LogPipeline(clock=clock))
        events = [record_event() for _ in range(5)]
        for event in events[:3]:
            await writer.write(event)
        assert await writer.flush() == 3
        for event in events:          # the first three again (same ids), as a retry would send them
            await writer.write(event)
        assert await writer.flush() == 2
        await writer.close()

    asyncio.run(scenario())
    assert rows_in(databases, "data_activity.record_events") == 5


def test_a_row_the_database_refuses_is_isolated_and_the_rest_written(databases, clock, caplog):
    # A constraint added after validation was written (here by hand) must not poison the batch.
    with databases.begin("data_activity") as conn:
        conn.exec_driver_sql("ALTER TABLE data_activity.record_events ADD CONSTRAINT no_import "
                             "CHECK (source <> 'import')")

    async def scenario():
        writer = BatchedLogWriter(databases, LogWriterConfig(batch_rows=100), LogPipeline(clock=clock))
        for i in range(9):
            event = record_event()
            event.source = "import" if i == 4 else "api"
            await writer.write(event)
        assert await writer.flush() == 8
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.refused == {"data_activity.record_events": 1}
    assert rows_in(databases, "data_activity.record_events") == 8
    assert "violates check constraint" in caplog.text
