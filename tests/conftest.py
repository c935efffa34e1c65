"""The suite's real PostgreSQL, and fresh databases for every test.

One cluster per test session (per xdist worker): the embedded launcher in a temporary directory,
or the server named by NOTIFY_TEST_DATABASE_URL (a URL to a maintenance database of a server where
the user may create databases; scripts/run-tests then runs one worker, see there). The schema is
applied once to template databases; each worker copies them into its scratch database, which is
emptied before every test (TRUNCATE), so tests never see each other's rows. Tests that change DDL
or need the sections apart ask for new databases (markers fresh_database, four_databases).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

import freezegun
import psycopg
import pytest

from engine.app import App
from engine.clock import ManualClock
from engine.config import SECTIONS, Config, DatabasesConfig
from engine.db import Databases
from engine.embedded import EmbeddedCluster, find_bin_dir
from engine.migrations import apply_migrations
from tests.browser_support import chromium  # noqa: F401  (a fixture: the system browser)

# Frozen time is for the engine's clock, not the driver's timers: psycopg before 3.3.4 reads
# time.monotonic() for its connect timeout, and under a frozen clock a connection made inside
# freeze_time fails with "connection timeout expired".
freezegun.configure(extend_ignore_list=["psycopg"])

# Durability off: the suite's data is thrown away, and fsync dominates small transactions.
TEST_CLUSTER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
}


def url_of_missing_database(url: str) -> str:
    """The same server, a database that does not exist: a stand-in for a database that went away."""
    return _with_database(url, "missing_" + uuid.uuid4().hex[:8])


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class PgServer:
    admin_url: str
    cluster: Optional[EmbeddedCluster] = None

    def url(self, database: str) -> str:
        return _with_database(self.admin_url, database)

    def create_database(self, name: str, template: str = "template0") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_test_cluster(root: Path) -> EmbeddedCluster:
    """An embedded cluster under `root` (which must be reachable by the cluster's user)."""
    run_as = "postgres" if os.geteuid() == 0 else None
    cluster = EmbeddedCluster(root / "pg", find_bin_dir(os.environ.get("NOTIFY_PG_BIN")), run_as,
                              settings=TEST_CLUSTER_SETTINGS)
    cluster.acquire()
    return cluster


def make_reachable_tempdir(prefix: str) -> Path:
    # mkdtemp makes 0700 dirs; the cluster's unprivileged user must be able to enter it.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("NOTIFY_TEST_DATABASE_URL")
    if url:
        yield PgServer(admin_url=url)
        return
    root = make_reachable_tempdir("ne-pg-")
    cluster = start_test_cluster(root)
    try:
        yield PgServer(admin_url=cluster.url("postgres"), cluster=cluster)
    finally:
        cluster.release()
        shutil.rmtree(root, ignore_errors=True)


_run_id = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def shared_template(pg_server: PgServer) -> Iterator[str]:
    """A database holding all four sections as schemas, schema applied: the template of most tests."""
    name = f"ne_tpl_{_run_id}"
    url = pg_server.create_database(name)
    databases = Databases({s: url for s in SECTIONS})
    apply_migrations(databases)
    databases.dispose()
    yield name
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def separate_templates(pg_server: PgServer) -> Iterator[dict[str, str]]:
    """Four template databases, one per section, as the seed recommends."""
    names = {s: f"ne_tpl_{_run_id}_{s}" for s in SECTIONS}
    urls = {s: pg_server.create_database(n) for s, n in names.items()}
    databases = Databases(urls)
    apply_migrations(databases)
    databases.dispose()
    yield names
    for name in names.values():
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def scratch_database(pg_server: PgServer, shared_template: str) -> Iterator[str]:
    """One database per worker that most tests share, emptied before each test (see reset_database):
    a TRUNCATE is ~50x cheaper than a CREATE DATABASE per test."""
    name = f"ne_scratch_{_run_id}"
    url = pg_server.create_database(name, shared_template)
    yield url
    pg_server.drop_database(name)


def reset_database(url: str) -> None:
    """Empty every table of the four sections and drop every month partition tests created."""
    with psycopg.connect(url, autocommit=True) as conn:
        schemas = list(SECTIONS)
        months = conn.execute(
            "SELECT partition FROM partitions.list(%s) WHERE NOT is_default", (schemas,)).fetchall()
        for (partition,) in months:
            conn.execute(f"DROP TABLE {partition}")  # quoted and qualified by partitions.list()
        tables = conn.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            (schemas,)).fetchall()
        if tables:
            conn.execute("TRUNCATE " + ", ".join(t for (t,) in tables) + " CASCADE")


@pytest.fixture
def database_urls(request, pg_server: PgServer) -> Iterator[dict[str, str]]:
    """Section -> URL of empty databases with the schema applied.

    By default all four sections share the worker's scratch database, emptied before the test.
    `@pytest.mark.four_databases` gives four new databases, one per section; `@pytest.mark.fresh_database`
    a new shared one (for tests that change DDL, roles or the migrations table)."""
    created = []
    if request.node.get_closest_marker("four_databases"):
        templates = request.getfixturevalue("separate_templates")
        urls = {}
        for section, template in templates.items():
            name = f"t_{uuid.uuid4().hex[:12]}_{section}"
            urls[section] = pg_server.create_database(name, template)
            created.append(name)
    elif request.node.get_closest_marker("fresh_database"):
        name = f"t_{uuid.uuid4().hex[:12]}"
        url = pg_server.create_database(name, request.getfixturevalue("shared_template"))
        created.append(name)
        urls = {s: url for s in SECTIONS}
    else:
        url = request.getfixturevalue("scratch_database")
        reset_database(url)
        urls = {s: url for s in SECTIONS}
    yield urls
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def template_urls(pg_server: PgServer, separate_templates: dict[str, str]) -> dict[str, str]:
    """Read-only: the four per-section template databases. Tests that only inspect the schema
    use these instead of paying for four new databases each."""
    return {section: pg_server.url(name) for section, name in separate_templates.items()}


@pytest.fixture
def databases(database_urls) -> Iterator[Databases]:
    dbs = Databases(database_urls)
    yield dbs
    dbs.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def config(database_urls) -> Config:
    return Config(databases=DatabasesConfig(**database_urls), source="<test>")


@pytest.fixture
def app(config, clock) -> Iterator[App]:
    with App(config, clock) as opened:
        yield opened


@pytest.fixture
def config_file(tmp_path, database_urls):
    """Writes a config.yaml for CLI tests: `config_file(extra_yaml="...")` returns its path."""

    def write(extra_yaml: str = "") -> Path:
        lines = ["databases:"] + [f"  {s}: {u}" for s, u in database_urls.items()]
        path = tmp_path / "config.yaml"
        path.write_text("\n".join(lines) + "\n" + extra_yaml)
        return path

    return write


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on loopback: (the recorder of what it received, its port)."""
    from tests.delivery_support import SmtpRecorder, start_smtp

    handler = SmtpRecorder()
    controller = start_smtp(handler)
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def receiver():
    """A webhook receiver on loopback answering 2xx and recording what it got (delivery tests)."""
    from tests.delivery_support import HttpServer, webhook_responder

    server = HttpServer(webhook_responder).start()
    yield server
    server.stop()


@pytest.fixture
def slack_server():
    """A stand-in for Slack's Web API on loopback (chat.postMessage and friends, recorded)."""
    from tests.delivery_support import HttpServer, slack_responder

    server = HttpServer(slack_responder).start()
    yield server
    server.stop()


@pytest.fixture
def slack_app(app, slack_server):
    """The app posting through slack_server with a bot token."""
    app.config.channels.slack.token = "xoxb-test-token"
    app.config.channels.slack.base_url = slack_server.url("/api/")
    return app
