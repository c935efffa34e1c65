"""What makes `notifyctl logs import` safe to run again on the same file.

The import commits in chunks, so a failure half-way keeps what went in; running the command again
must then write each line once. Two parts:

- A line without an `id` gets one derived from the line, not a random one: uuid5 of the table, a
  digest of the file's first 64 KiB (the whole file when smaller), the line number and the line's
  bytes. The same file gives the same ids on every run (also once it has grown by appended lines
  past its first 64 KiB); another file gets other ids even for an identical line at the same number.
- The tables' keys include `occurred_at`, which the pipeline stamps from the clock for a line
  without one, so a second run's stamp differs and the key alone would not see the repeat. Each
  chunk is therefore checked for ids already in the table (by the key's columns other than
  `occurred_at`) before its COPY, in the same transaction, until a chunk finds none: a first run
  commits a prefix of the file, so after the first chunk that is wholly new nothing more is there.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import uuid
from typing import BinaryIO, Iterable, Sequence

import psycopg
from psycopg import sql

from engine.logwriter.records import LogRecord
from engine.queries import raw_query

# Fixed forever: changing it changes every derived id, and a re-run would write lines twice.
LINE_ID_NAMESPACE = uuid.UUID("0b5b49ba-2960-4147-9737-eede15b74b25")
IDENTITY_HEAD_BYTES = 64 * 1024


class FileIdentity:
    """Derives the id of each line of one file (see the module's docstring)."""

    def __init__(self, table: str, head: bytes):
        self._prefix = f"{table}\0{hashlib.sha256(head).hexdigest()}\0".encode()

    @classmethod
    def read(cls, table: str, stream: BinaryIO) -> tuple["FileIdentity", Iterable[bytes]]:
        """The identity of the file behind `stream` and its lines (stdin too: the head is kept, not re-read)."""
        head = stream.read(IDENTITY_HEAD_BYTES)
        rest_of_cut_line = stream.readline() if len(head) == IDENTITY_HEAD_BYTES and not head.endswith(b"\n") else b""
        return cls(table, head), itertools.chain(io.BytesIO(head + rest_of_cut_line), stream)

    def line_id(self, number: int, raw: bytes) -> uuid.UUID:
        # uuid.uuid5 over bytes (Python 3.11's takes only str): SHA-1 of namespace + name, version 5.
        name = b"%s%d\0%s" % (self._prefix, number, raw.rstrip(b"\r\n"))
        return uuid.UUID(bytes=hashlib.sha1(LINE_ID_NAMESPACE.bytes + name).digest()[:16], version=5)


@functools.cache
def _probe_statement(table: str, key: tuple[tuple[str, str], ...]) -> sql.Composed:
    schema, name = table.split(".")
    names = [sql.Identifier(column) for column, _ in key]
    return sql.SQL("SELECT k.id FROM unnest({arrays}) AS k({names}) "
                   "WHERE EXISTS (SELECT 1 FROM {table} t WHERE {match})").format(
        arrays=sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(type_)) for _, type_ in key),
        names=sql.SQL(", ").join(names),
        table=sql.Identifier(schema, name),
        match=sql.SQL(" AND ").join(sql.SQL("t.{c} = k.{c}").format(c=c) for c in names))


class AlreadyImported:
    """Drops records whose key is already in the table, chunk by chunk, until a chunk finds none."""

    def __init__(self, conn: psycopg.Connection, cls: type[LogRecord]):
        self.cls = cls
        self.checking = True
        with conn.transaction():
            rows = conn.execute(raw_query("imports", "primary_key_columns"), {"table": cls.TABLE}).fetchall()
        # Type names come from the catalog (uuid): the driver's identifier quoting does not apply.
        self.key = tuple((column, type_) for column, type_ in rows if column != "occurred_at")
        if not self.key or "id" not in [column for column, _ in self.key]:
            self.checking = False  # no key to look rows up by; duplicates then rely on ON CONFLICT

    def new_records(self, conn: psycopg.Connection, records: Sequence[LogRecord]) -> list[LogRecord]:
        """Call inside the transaction that writes `records`."""
        if not self.checking or not records:
            return list(records)
        arrays = [[getattr(r, column) for r in records] for column, _ in self.key]
        present = {row[0] for row in conn.execute(_probe_statement(self.cls.TABLE, self.key), arrays)}
        if not present:
            self.checking = False
        return [r for r in records if r.id not in present]
