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


def copy_records(conn: psycopg.Connection, cls: type[LogRecord], records: Sequence[LogRecord]) -> int:
    """COPY records of one table in the caller's transaction."""
    if not records:
        return 0
    with conn.cursor() as cursor, cursor.copy(copy_statement(cls)) as copy:
        for record in records:
            copy.write_row(record.copy_row())
    return len(records)


async def copy_records_async(conn: psycopg.AsyncConnection, cls: type[LogRecord],
                             records: Sequence[LogRecord]) -> int:
    if not records:
        return 0
    async with conn.cursor() as cursor, cursor.copy(copy_statement(cls)) as copy:
        for record in records:
            await copy.write_row(record.copy_row())
    return len(records)


@dataclass(frozen=True)
class WriteResult:
    written: int
    sampled_out: int


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
    if admitted:
        with databases.connect_raw(cls.SECTION) as conn:
            copy_records(conn, cls, admitted)
    return WriteResult(written=len(admitted), sampled_out=sampled_out)


def group_by_table(records: Iterable[LogRecord]) -> dict[type[LogRecord], list[LogRecord]]:
    grouped: dict[type[LogRecord], list[LogRecord]] = defaultdict(list)
    for record in records:
        grouped[type(record)].append(record)
    return grouped
