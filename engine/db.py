"""Connections to the four databases.

Each section (admin_log, portal_log, data_activity, notify) has a libpq URL; sections that share
a URL share one database and one SQLAlchemy engine. Every table is schema-qualified, so the same
SQL serves one database or four. Sessions run with TimeZone=UTC: month bounds and date casts
must never depend on a client's settings.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import psycopg
import sqlalchemy
from sqlalchemy import Connection, Engine

from engine.config import SECTIONS

SESSION_OPTIONS = "-c TimeZone=UTC"


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _options(settings: dict[str, str] | None) -> str:
    return " ".join([SESSION_OPTIONS, *(f"-c {name}={value}" for name, value in (settings or {}).items())])


class Databases:
    def __init__(self, urls: dict[str, str], *, application_name: str = "notify-engine"):
        missing = [s for s in SECTIONS if s not in urls]
        if missing:
            raise ValueError(f"no database URL for {', '.join(missing)}")
        self.urls = {s: urls[s] for s in SECTIONS}
        self._application_name = application_name
        self._engines: dict[str, Engine] = {}

    def engine(self, section: str) -> Engine:
        url = self.urls[section]
        if url not in self._engines:
            self._engines[url] = sqlalchemy.create_engine(
                sqlalchemy_url(url),
                pool_size=4,
                # Opened only when needed: a detection pass alone holds up to
                # detect.parallelism (at most 16) + 1 while the other jobs run.
                max_overflow=20,
                # The connection returned last is taken next: a steady load reuses a few warm
                # backends (their prepared statements and caches) and the rest stay cold and small,
                # where FIFO turned every pooled backend into a warm one (about 14 MB each).
                pool_use_lifo=True,
                pool_pre_ping=True,  # a restarted server leaves dead pooled connections behind
                connect_args={"options": SESSION_OPTIONS, "application_name": self._application_name,
                              # libpq waits forever by default: a network cut would hang a tick.
                              "connect_timeout": 10},
            )
        return self._engines[url]

    @contextlib.contextmanager
    def begin(self, section: str) -> Iterator[Connection]:
        """A connection to `section`'s database inside one transaction (committed on success)."""
        with self.engine(section).begin() as conn:
            yield conn

    def connect_raw(self, section: str, *, settings: dict[str, str] | None = None, **kwargs) -> psycopg.Connection:
        """A plain psycopg connection (for COPY, LISTEN and multi-statement scripts); `settings`
        are extra session settings (`{"synchronous_commit": "off"}`)."""
        return psycopg.connect(self.urls[section], options=_options(settings),
                               application_name=self._application_name, **kwargs)

    async def connect_raw_async(self, section: str, *, settings: dict[str, str] | None = None,
                                **kwargs) -> psycopg.AsyncConnection:
        """A plain asyncio psycopg connection, with the same session options as connect_raw."""
        return await psycopg.AsyncConnection.connect(self.urls[section], options=_options(settings),
                                                     application_name=self._application_name,
                                                     connect_timeout=10, **kwargs)

    def by_database(self) -> dict[str, list[str]]:
        """Sections grouped by the database (URL) that holds them, in SECTIONS order."""
        grouped: dict[str, list[str]] = {}
        for section in SECTIONS:
            grouped.setdefault(self.urls[section], []).append(section)
        return grouped

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
