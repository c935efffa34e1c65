"""Versioned schema: ddl/<section>/NNNN_name.sql applied in order, each once, with a checksum.

Each database records what it holds in public.notify_engine_migrations (section, version,
checksum). `apply_migrations` applies what is missing and refuses, before touching anything,
when a file that was already applied has changed since: the fix for a shipped migration is a new
migration. Concurrent runs serialise on an advisory lock, so two daemons starting at once apply
each file once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from engine.db import Databases
from engine.errors import NotifyError

COMMON = "common"
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_LOCK_KEY = 0x6E6F7469  # 'noti': one advisory lock for every migration run in a database

_TABLE = """
CREATE TABLE IF NOT EXISTS public.notify_engine_migrations (
  section     text NOT NULL,
  version     text NOT NULL,
  name        text NOT NULL,
  checksum    text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (section, version)
)
"""


@dataclass(frozen=True)
class Migration:
    section: str
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def path(self) -> str:
        return f"ddl/{self.section}/{self.version}_{self.name}.sql"


class MigrationChanged(NotifyError):
    pass


def discover(section: str) -> list[Migration]:
    folder = resources.files("ddl").joinpath(section)
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(section, match.group(1), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    for previous, current in zip(found, found[1:]):
        if previous.version == current.version:
            # Two branches picked the same number: refuse rather than apply one and skip the other.
            raise NotifyError(f"{previous.path} and {current.path} share version {current.version}: renumber one")
    return found


@dataclass
class AppliedReport:
    applied: list[tuple[str, str]]   # (database name, migration path)
    unchanged: int


def apply_migrations(databases: Databases) -> AppliedReport:
    report = AppliedReport(applied=[], unchanged=0)
    for url, sections in databases.by_database().items():
        with psycopg.connect(url, options="-c TimeZone=UTC") as conn:
            _apply_to_database(conn, [COMMON, *sections], report)
    return report


def _apply_to_database(conn: psycopg.Connection, sections: list[str], report: AppliedReport) -> None:
    dbname = conn.info.dbname
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(_TABLE)
        applied = {
            (section, version): checksum
            for section, version, checksum in conn.execute(
                "SELECT section, version, checksum FROM public.notify_engine_migrations"
            )
        }
        known = {section: discover(section) for section in sections}
        # A database migrated by a newer notify-engine refuses an older one: old code on a newer
        # schema can break its rules (an old dispatcher would take notifications still leased).
        unknown = sorted(f"ddl/{section}/{version}" for section, version in applied
                         if section in known and version not in {m.version for m in known[section]})
        if unknown:
            raise NotifyError(f"database {dbname!r} holds {', '.join(unknown)}, which this notify-engine does "
                              "not have: the schema is newer than this code; run the newer notify-engine")
        pending = []
        for section in sections:
            for migration in known[section]:
                recorded = applied.get((section, migration.version))
                if recorded is None:
                    pending.append(migration)
                elif recorded != migration.checksum:
                    raise MigrationChanged(
                        f"{migration.path} changed after it was applied to database {dbname!r} "
                        f"(recorded checksum {recorded[:12]}, file now {migration.checksum[:12]}); "
                        "applied migrations are immutable: restore the file and add a new one"
                    )
                else:
                    report.unchanged += 1
        # All files of one database go in one transaction: a failure leaves it as it was.
        for migration in pending:
            try:
                conn.execute(migration.sql)
            except psycopg.Error as exc:
                raise NotifyError(f"{migration.path} failed on database {dbname!r}: {exc}".strip()) from None
            conn.execute(
                "INSERT INTO public.notify_engine_migrations (section, version, name, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (migration.section, migration.version, migration.name, migration.checksum),
            )
            report.applied.append((dbname, migration.path))
