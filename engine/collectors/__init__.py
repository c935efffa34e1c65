"""Snapshot sources, one module per kind: data_activity (built-in log collectors), sql, http,
push. Each collector has a `name` and `collect(app) -> CollectorResult`; engine.collect runs
them all and keeps going when one fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from engine.snapshots import Rejection, copy_snapshots, validate_snapshots


@dataclass
class CollectorResult:
    name: str
    written: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    error: Optional[str] = None  # set when the source failed as a whole (unreachable, bad SQL)


def write_fetched_rows(app, result: CollectorResult, rows, now) -> CollectorResult:
    """The tail every fetching source shares: validate the rows (rejections named by source and
    row, the rest kept) and write the valid ones with one COPY."""
    batch = validate_snapshots(result.name, rows, now)
    result.rejected = batch.rejected
    if batch.accepted:
        with app.databases.begin("notify") as notify:
            result.written = copy_snapshots(notify.connection.driver_connection, batch.accepted)
    return result


class Collector(Protocol):
    name: str

    def collect(self, app) -> CollectorResult: ...


def configured_collectors(config) -> list[Collector]:
    """Every collector the config asks for, in a fixed order."""
    from engine.collectors.data_activity import builtin_collectors
    from engine.collectors.http_source import HttpCollector
    from engine.collectors.sql_source import SqlCollector

    collectors: list[Collector] = []
    if config.collect.data_activity:
        collectors.extend(builtin_collectors(config))
    collectors.extend(SqlCollector(source) for source in config.collect.sql)
    collectors.extend(HttpCollector(source) for source in config.collect.http)
    return collectors
