"""COPY of validated records into their tables: the one way rows reach the log tables.

One COPY per table per batch (set-based, as the hot path needs). The column list names every
column of the record and never a generated one (occurred_on), so PostgreSQL computes those.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import psycopg
from psycopg import sql

from engine.db import Databases
from engine.logwriter.pipeline import LogPipeline
from engine.logwriter.records import LogRecord, record_type


@functools.cache
def copy_statement(cls: type[LogRecord]) -> sql.Composed:
    schema, table = cls.TABLE.split(".")
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(sql.Identifier(c) for c in cls.COLUMNS))


# The slow path, taken only when the fast COPY hit a duplicate key: a retried batch (the writer
# retries what a failed flush kept; a caller resends lines with their ids). Staged in a temporary
# table, then inserted with ON CONFLICT DO NOTHING, so a row already written is skipped and the
# rest goes in: retries are idempotent.
@functools.cache
def _staging_statements(cls: type[LogRecord]) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    schema, table = cls.TABLE.split(".")
    staging = sql.Identifier(f"staging_{schema}_{table}")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in cls.COLUMNS)
    # IF NOT EXISTS + TRUNCATE: a second slow path in the same transaction reuses the table.
    create = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA; "
                     "TRUNCATE {}").format(staging, columns, sql.Identifier(schema, table), staging)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(staging, columns)
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
        sql.Identifier(schema, table), columns, columns, staging)
    return create, copy, insert


def copy_records(conn: psycopg.Connection, cls: type[LogRecord], records: Sequence[LogRecord]) -> int:
    """COPY records of one table (in the caller's transaction, or in one of its own); returns the
    rows inserted, which is fewer than given only when some were already in the table."""
    if not records:
        return 0
    with conn.transaction():
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(copy_statement(cls)) as copy:
                for record in records:
                    copy.write_row(record.copy_row())
            return len(records)
        except psycopg.errors.UniqueViolation:
            create, copy_sql, insert = _staging_statements(cls)
            with conn.cursor() as cursor:
                cursor.execute(create)
                with cursor.copy(copy_sql) as copy:
                    for record in records:
                        copy.write_row(record.copy_row())
                cursor.execute(insert)
                return cursor.rowcount


async def copy_records_async(conn: psycopg.AsyncConnection, cls: type[LogRecord],
                             records: Sequence[LogRecord]) -> int:
    """copy_records() on an asyncio connection."""
    if not records:
        return 0
    async with conn.transaction():
        try:
            async with conn.transaction(), conn.cursor() as cursor, cursor.copy(copy_statement(cls)) as copy:
                for record in records:
                    await copy.write_row(record.copy_row())
            return len(records)
        except psycopg.errors.UniqueViolation:
            create, copy_sql, insert = _staging_statements(cls)
            async with conn.cursor() as cursor:
                await cursor.execute(create)
                async with cursor.copy(copy_sql) as copy:
                    for record in records:
                        await copy.write_row(record.copy_row())
                await cursor.execute(insert)
                return cursor.rowcount


@dataclass(frozen=True)
class WriteResult:
    written: int
    sampled_out: int
    duplicates: int = 0     # rows whose key was already in the table (skipped)


def write_rows(databases: Databases, table: str, rows: Iterable[Union[LogRecord, Mapping[str, Any]]],
               *, pipeline: Optional[LogPipeline] = None) -> WriteResult:
    """Validates, samples and redacts `rows` (records or mappings with the seed's column names) and
    writes them to `table` with one COPY in one transaction. A bad row raises InvalidRecord before
    anything is written. Without a pipeline, the default redaction rules apply and nothing is
    sampled."""
    pipeline = pipeline or LogPipeline()
    cls = record_type(table)
    admitted: list[LogRecord] = []
    sampled_out = 0
    for row in rows:
        record = row if isinstance(row, LogRecord) else pipeline.parse(table, row)
        if type(record) is not cls:
            raise TypeError(f"write_rows({table!r}): got a {type(record).__name__} record")
        kept = pipeline.admit(record)
        if kept is None:
            sampled_out += 1
        else:
            admitted.append(kept)
    written = 0
    if admitted:
        with databases.connect_raw(cls.SECTION) as conn:
            written = copy_records(conn, cls, admitted)
    return WriteResult(written=written, sampled_out=sampled_out, duplicates=len(admitted) - written)


def group_by_table(records: Iterable[LogRecord]) -> dict[type[LogRecord], list[LogRecord]]:
    grouped: dict[type[LogRecord], list[LogRecord]] = defaultdict(list)
    for record in records:
        grouped[type(record)].append(record)
    return grouped
