"""Partition lifecycle for every partitioned table of the four databases.

`ensure` premakes this month and the next N (pg_partman's `premake`), and also creates any month
that has rows waiting in a table's DEFAULT partition, moving them into it. `prune` drops the
partitions whose whole range ends more than N months before the current UTC month, judged by the
bounds PostgreSQL stores. The DEFAULT partition catches a row whose month has no partition yet, so
no log row is ever refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from sqlalchemy import Connection, text

from engine.clock import add_months, month_start
from engine.db import Databases
from engine.errors import NotifyError
from engine.queries import query

# Called with (connection, partition, directory) before a partition is dropped; returns the rows
# it wrote. It must raise when the archive is incomplete: the partition is then kept.
Archiver = Callable[[Connection, "PartitionInfo", Path], int]


@dataclass(frozen=True)
class PartitionInfo:
    parent: str
    partition: str
    lower_bound: Optional[datetime]
    upper_bound: Optional[datetime]
    is_default: bool


@dataclass(frozen=True)
class CreatedPartition:
    parent: str
    month: date
    moved_rows: int


@dataclass(frozen=True)
class PrunedPartition:
    partition: PartitionInfo
    archived_rows: Optional[int]
    dropped: bool


class PruneStopped(NotifyError):
    """A prune failed part-way: `done` were archived (when asked) and dropped before `failed`,
    which was left in place with every partition after it."""

    def __init__(self, failed: PartitionInfo, done: list[PrunedPartition], cause: BaseException):
        self.failed, self.done = failed, done
        before = ", ".join(p.partition.partition for p in done) if done else "none"
        verb = "archived and dropped" if any(p.archived_rows is not None for p in done) else "dropped"
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        super().__init__(f"{reason} (partitions prune stopped at {failed.partition}, which is kept with every "
                         f"partition after it; {verb} before it: {before})")


def ensure_partitions(databases: Databases, now: datetime, months_ahead: int) -> list[CreatedPartition]:
    if months_ahead < 0:
        raise ValueError("months_ahead cannot be negative")
    current = month_start(now)
    wanted = [add_months(current, i) for i in range(months_ahead + 1)]
    created: list[CreatedPartition] = []
    for sections in databases.by_database().values():
        engine = databases.engine(sections[0])
        with engine.connect() as conn:
            parents = [r.parent for r in conn.execute(query("partitions", "partitioned_tables"), {"schemas": sections})]
            conn.commit()
            for parent in parents:
                # One transaction per parent: the default partition is detached and re-attached
                # around the move, and other tables need not wait for that.
                with conn.begin():
                    stray = [r.month for r in conn.execute(query("partitions", "stray_months"), {"parent": parent})]
                    for month in sorted(set(wanted) | set(stray)):
                        moved = conn.execute(
                            query("partitions", "create_month"), {"parent": parent, "month": month}
                        ).scalar()
                        if moved is not None:
                            created.append(CreatedPartition(parent, month, moved))
    return created


def list_partitions(databases: Databases) -> list[PartitionInfo]:
    found: list[PartitionInfo] = []
    for sections in databases.by_database().values():
        with databases.begin(sections[0]) as conn:
            for r in conn.execute(query("partitions", "list_partitions"), {"schemas": sections}):
                found.append(PartitionInfo(r.parent, r.partition, r.lower_bound, r.upper_bound, r.is_default))
    return found


def prune_cutoff(now: datetime, keep_months: int) -> datetime:
    """Partitions whose upper bound is at or before this instant are expired."""
    if keep_months < 0:
        raise ValueError("keep_months cannot be negative")
    first = add_months(month_start(now), -keep_months)
    return datetime(first.year, first.month, 1, tzinfo=timezone.utc)


def prune_partitions(
    databases: Databases,
    now: datetime,
    keep_months: int,
    *,
    dry_run: bool = False,
    archive_dir: Optional[Path] = None,
    archiver: Optional[Archiver] = None,
) -> list[PrunedPartition]:
    """Drop expired month partitions; never the DEFAULT one, never the current month.

    With an archive directory, each partition is first exported by `archiver`; a failure raises
    PruneStopped, which says what was dropped before it, and leaves that partition and every later
    one in place.
    """
    cutoff = prune_cutoff(now, keep_months)
    results: list[PrunedPartition] = []
    for sections in databases.by_database().values():
        with databases.engine(sections[0]).connect() as conn:
            rows = conn.execute(query("partitions", "list_partitions"), {"schemas": sections}).all()
            conn.commit()
            expired = [
                PartitionInfo(r.parent, r.partition, r.lower_bound, r.upper_bound, r.is_default)
                for r in rows
                if not r.is_default and r.upper_bound is not None and r.upper_bound <= cutoff
            ]
            for info in expired:
                if dry_run:
                    results.append(PrunedPartition(info, None, dropped=False))
                    continue
                if archive_dir is not None and archiver is None:
                    raise ValueError("archive_dir given without an archiver")
                try:
                    with conn.begin():
                        archived = archiver(conn, info, archive_dir) if archive_dir is not None else None
                        # parent and partition come quoted and schema-qualified from partitions.list().
                        conn.execute(text(f"ALTER TABLE {info.parent} DETACH PARTITION {info.partition}"))
                        conn.execute(text(f"DROP TABLE {info.partition}"))
                except Exception as exc:
                    raise PruneStopped(info, [r for r in results if r.dropped], exc) from exc
                results.append(PrunedPartition(info, archived, dropped=True))
    return results
