"""Archive of an expired partition to Parquet before it is dropped (the seed: "ship to a lakehouse
as parquet too"; CONTRACT.md: a failed export drops nothing).

`archive_partition` is the `Archiver` that engine.partitions.prune_partitions calls inside the
transaction that then detaches and drops the partition. It:
1. locks the partition against writes (SHARE), so the rows counted are the rows exported;
2. streams the rows through a server-side cursor into <dir>/<schema>/<table>/<partition>.parquet
   (<partition>.2.parquet, ... if that month was archived before: files are never overwritten),
   written to a temporary name, fsynced, linked into place, and the directory fsynced;
3. reads the row count back from the file's footer and compares it with count(*) of the partition.
Any error or a mismatch raises ArchiveFailed; the caller's transaction then rolls back and the
partition stays. pyarrow is an optional extra (`pip install 'notify-engine[archive]'`).

Types in the file: uuid, inet, jsonb, enums and text become strings (jsonb as its JSON text),
timestamptz a UTC timestamp in microseconds, date a date, integers int32/int64, numeric a
decimal of the column's precision, boolean a boolean.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from psycopg import sql
from sqlalchemy import Connection

from engine.errors import NotifyError
from engine.partitions import PartitionInfo
from engine.queries import query

FETCH_ROWS = 50_000   # rows per round trip and per Parquet row group


class ArchiveFailed(NotifyError):
    """The partition could not be archived completely; it was not dropped."""


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ArchiveFailed("archiving partitions needs pyarrow: install the extra with "
                            "pip install 'notify-engine[archive]'") from None
    return pyarrow, pyarrow.parquet


def _arrow_type(pa, type_name: str, numeric_precision, numeric_scale):
    if type_name == "timestamp with time zone":
        return pa.timestamp("us", tz="UTC"), False
    if type_name == "date":
        return pa.date32(), False
    if type_name == "integer":
        return pa.int32(), False
    if type_name == "smallint":
        return pa.int16(), False
    if type_name == "bigint":
        return pa.int64(), False
    if type_name == "boolean":
        return pa.bool_(), False
    if type_name == "double precision":
        return pa.float64(), False
    if type_name == "numeric" and numeric_precision:
        return pa.decimal128(numeric_precision, numeric_scale or 0), False
    # uuid, inet (abbrev), jsonb, text, enums, unconstrained numeric: their text form, cast in SQL.
    return pa.string(), True


def archive_partition(conn: Connection, info: PartitionInfo, directory: Path) -> int:
    """Writes one partition to Parquet under `directory`; returns its row count. Raises
    ArchiveFailed unless the file holds every row of the partition."""
    pa, pq = _pyarrow()
    raw = conn.connection.driver_connection   # the psycopg connection, inside the caller's transaction
    names = conn.execute(query("archive", "partition_names"), {"partition": info.partition}).one()
    target_dir = Path(directory) / names.schema_name / names.table_name
    target = _free_name(target_dir, names.partition_name)
    partition = sql.Identifier(names.partition_schema, names.partition_name)
    try:
        # Rows arriving now would be counted but not exported (or the reverse): keep writers out
        # until the transaction that drops the partition ends.
        raw.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(partition))
        columns = conn.execute(query("archive", "partition_columns"), {"partition": info.partition}).all()
        fields, selects = [], []
        for column in columns:
            arrow_type, as_text = _arrow_type(pa, column.type_name, column.numeric_precision, column.numeric_scale)
            fields.append(pa.field(column.name, arrow_type, nullable=not column.not_null))
            ident = sql.Identifier(column.name)
            if column.type_name == "inet":
                # abbrev() drops a host's /32 (/128) but keeps a real network's mask.
                selects.append(sql.SQL("abbrev({})").format(ident))
            else:
                selects.append(sql.SQL("{}::text").format(ident) if as_text else ident)
        schema = pa.schema(fields)
        expected = raw.execute(sql.SQL("SELECT count(*) FROM {}").format(partition)).fetchone()[0]

        target_dir.mkdir(parents=True, exist_ok=True)
        target = _free_name(target_dir, names.partition_name)
        temporary = target_dir / f".{names.partition_name}.parquet.{uuid.uuid4().hex[:8]}.tmp"
        written = 0
        try:
            with open(temporary, "wb") as sink:
                with pq.ParquetWriter(sink, schema, compression="zstd") as writer, \
                        raw.cursor(name=f"archive_{uuid.uuid4().hex[:8]}") as cursor:
                    cursor.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(selects), partition))
                    while rows := cursor.fetchmany(FETCH_ROWS):
                        batch = pa.RecordBatch.from_arrays(
                            [pa.array([row[i] for row in rows], type=f.type) for i, f in enumerate(fields)],
                            schema=schema)
                        writer.write_batch(batch)
                        written += len(rows)
                sink.flush()
                os.fsync(sink.fileno())
            # link() refuses an existing name where rename() would replace it: an archive is
            # never overwritten, even by a concurrent prune that picked the same free name.
            os.link(temporary, target)
        finally:
            if temporary.exists():
                temporary.unlink()
        _fsync_directory(target_dir)

        in_file = pq.ParquetFile(target).metadata.num_rows
    except ArchiveFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the partition must stay
        raise ArchiveFailed(f"archiving {info.partition} to {target} failed: {type(exc).__name__}: {exc}") from exc
    if not in_file == written == expected:
        raise ArchiveFailed(f"archiving {info.partition}: the file {target} holds {in_file} rows, "
                            f"the partition {expected}; not dropped")
    return expected


def _free_name(target_dir: Path, partition_name: str) -> Path:
    """<partition>.parquet, or <partition>.2.parquet, ... when a month is archived again: late rows
    of an expired month land in the DEFAULT partition, `ensure` recreates the month for them, and
    the next prune archives that month a second time; the first file must survive."""
    candidate = target_dir / f"{partition_name}.parquet"
    n = 1
    while candidate.exists():
        n += 1
        candidate = target_dir / f"{partition_name}.{n}.parquet"
    return candidate


def _fsync_directory(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
