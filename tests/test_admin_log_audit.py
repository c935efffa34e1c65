"""Auditable admin_log reads: with pgaudit loaded, db init's role step turns on object auditing,
and a read of admin_log by a log_admin_reader user lands in the server log; other reads do not.

Needs the pgaudit extension (Debian: postgresql-15-pgaudit); skipped where it is not installed.
Runs its own small cluster, since pgaudit must be preloaded at server start.
"""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from engine.config import SECTIONS
from engine.db import Databases
from engine.embedded import EmbeddedCluster, find_bin_dir
from engine.migrations import apply_migrations
from engine.roles import LOG_ADMIN_READER, apply_roles


def pgaudit_library() -> Path:
    # The server's own library directory: bin_dir may hold symlinks (/usr/local/bin/postgres).
    postgres = (Path(find_bin_dir(os.environ.get("NOTIFY_PG_BIN"))) / "postgres").resolve()
    return postgres.parent.parent / "lib" / "pgaudit.so"


@pytest.fixture
def audited_cluster():
    if not pgaudit_library().exists():
        pytest.skip("pgaudit is not installed (Debian: apt-get install postgresql-15-pgaudit)")
    root = Path(tempfile.mkdtemp(prefix="ne-audit-"))
    root.chmod(0o755)
    cluster = EmbeddedCluster(root / "pg", find_bin_dir(os.environ.get("NOTIFY_PG_BIN")),
                              "postgres" if os.geteuid() == 0 else None,
                              settings={"shared_preload_libraries": "'pgaudit'", "fsync": "off"})
    cluster.acquire()
    try:
        yield cluster
    finally:
        cluster.release()
        shutil.rmtree(root, ignore_errors=True)


def test_reads_of_admin_log_are_written_to_the_server_log(audited_cluster):
    url = audited_cluster.url("postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE logs")
    databases = Databases({s: audited_cluster.url("logs") for s in SECTIONS})
    try:
        apply_migrations(databases)
        report = apply_roles(databases)
    finally:
        databases.dispose()
    assert any("reads of admin_log are logged by pgaudit" in note for note in report.notes)

    user = f"auditor_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(audited_cluster.url("logs"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(user), sql.Identifier(LOG_ADMIN_READER)))
    reader_url = audited_cluster.url("logs").replace("postgres@", f"{user}@", 1)
    with psycopg.connect(reader_url) as conn:
        conn.execute("SELECT count(*) FROM admin_log.admin_events WHERE action = 'audit-probe'").fetchone()
    with psycopg.connect(audited_cluster.url("logs")) as conn:
        conn.execute("SELECT count(*) FROM portal_log.auth_events WHERE type = 'not-audited-probe'").fetchone()

    server_log = (audited_cluster.data_dir / "server.log").read_text()
    audit_lines = [line for line in server_log.splitlines() if "AUDIT: OBJECT" in line]
    assert any("admin_log.admin_events" in line and "audit-probe" in line for line in audit_lines), audit_lines
    assert not any("not-audited-probe" in line for line in audit_lines)
