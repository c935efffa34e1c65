"""The App: one configured engine, shared by notifyd, notifyctl, tests and benchmarks.

It resolves where the four databases are (configured URLs, or the embedded cluster), and holds
the clock. The CLI and the daemon are thin shells over it.
"""

from __future__ import annotations

import logging
from typing import Optional

from engine.clock import Clock, SystemClock
from engine.config import Config
from engine.db import Databases
from engine.embedded import EmbeddedCluster
from engine.migrations import apply_migrations

log = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config, clock: Optional[Clock] = None, *, application_name: str = "notify-engine"):
        self.config = config
        self.clock = clock or SystemClock()
        self.application_name = application_name
        self.embedded: Optional[EmbeddedCluster] = None
        self._databases: Optional[Databases] = None

    @property
    def databases(self) -> Databases:
        if self._databases is None:
            raise RuntimeError("App is not open")
        return self._databases

    def open(self) -> "App":
        if self.config.databases is not None:
            urls = {s: self.config.databases.url(s) for s in ("admin_log", "portal_log", "data_activity", "notify")}
        else:
            self.embedded = EmbeddedCluster.from_config(self.config.embedded)
            self.embedded.acquire()
            urls = self.embedded.urls()
        self._databases = Databases(urls, application_name=self.application_name)
        if self.embedded is not None:
            # The embedded default is ready to use on first start: apply (or upgrade) the schema.
            report = apply_migrations(self._databases)
            for database, path in report.applied:
                log.info("schema: applied %s to database %s", path, database)
        return self

    def close(self) -> None:
        if self._databases is not None:
            self._databases.dispose()
            self._databases = None
        if self.embedded is not None:
            self.embedded.release()
            self.embedded = None

    def __enter__(self) -> "App":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
