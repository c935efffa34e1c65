"""A configured SQL query as a snapshot source: rows of (tenant_id, base_id, metric, value)."""

from __future__ import annotations

import sqlalchemy

from engine.collectors import CollectorResult, write_fetched_rows
from engine.config import SECTIONS, SqlSourceConfig
from engine.db import SESSION_OPTIONS, sqlalchemy_url


class SqlCollector:
    def __init__(self, source: SqlSourceConfig):
        self.source = source
        self.name = f"sql:{source.name}"

    def _fetch(self, app) -> list[dict]:
        # The query is the operator's own, from config.yaml: run as written, read-only.
        statement = sqlalchemy.text(self.source.query)
        if self.source.database in SECTIONS:
            with app.databases.begin(self.source.database) as conn:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                return [dict(r._mapping) for r in conn.execute(statement)]
        engine = sqlalchemy.create_engine(sqlalchemy_url(self.source.database), poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"options": SESSION_OPTIONS, "connect_timeout": 10})
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                return [dict(r._mapping) for r in conn.execute(statement)]
        finally:
            engine.dispose()

    def collect(self, app) -> CollectorResult:
        result = CollectorResult(self.name)
        now = app.clock.now()
        try:
            rows = self._fetch(app)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # Never the URL (it may hold a password): the source's name and the server's reason.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            result.error = f"{self.name}: query failed: {reason}"
            return result
        return write_fetched_rows(app, result, rows, now)
