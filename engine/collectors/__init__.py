"""Snapshot sources, one module per kind: data_activity (built-in log collectors), sql, http,
push. Each collector has a `name` and `collect(app) -> CollectorResult`; engine.collect runs
them all and keeps going when one fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from engine.snapshots import Rejection


@dataclass
class CollectorResult:
    name: str
    written: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    error: Optional[str] = None  # set when the source failed as a whole (unreachable, bad SQL)


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
