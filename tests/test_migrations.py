"""`notifyctl db init`: applies what is missing, changes nothing the second time, refuses a changed file."""

import psycopg
import pytest

from engine.cli import main as notifyctl
from engine.config import SECTIONS
from engine.db import Databases
from engine.errors import NotifyError
from engine.migrations import COMMON, MigrationChanged, apply_migrations, discover

CATALOG_SNAPSHOT = """
SELECT n.nspname, c.relname, c.relkind, md5(coalesce(string_agg(a.attname || format_type(a.atttypid, a.atttypmod), ','
       ORDER BY a.attnum), ''))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
WHERE n.nspname = ANY(%s)
GROUP BY 1, 2, 3 ORDER BY 1, 2
"""


def snapshot(url):
    with psycopg.connect(url) as conn:
        return conn.execute(CATALOG_SNAPSHOT, (list(SECTIONS) + ["partitions", "public"],)).fetchall()


@pytest.fixture
def empty_databases(pg_server):
    """Four empty databases, as a deployment would create them before `db init`."""
    names = {s: f"empty_{s}_{id(pg_server) % 10000}" for s in SECTIONS}
    urls = {s: pg_server.create_database(n) for s, n in names.items()}
    yield urls
    for name in names.values():
        pg_server.drop_database(name)


def test_db_init_on_four_empty_databases_then_again_changes_nothing(empty_databases, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("databases:\n" + "".join(f"  {s}: {u}\n" for s, u in empty_databases.items()))

    assert notifyctl(["db", "init", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert "applied ddl/notify/0001_init.sql" in first and "applied ddl/common/0001_bootstrap.sql" in first
    before = {s: snapshot(u) for s, u in empty_databases.items()}

    assert notifyctl(["db", "init", "--config", str(config)]) == 0
    assert "schema up to date" in capsys.readouterr().out
    assert {s: snapshot(u) for s, u in empty_databases.items()} == before
    with psycopg.connect(empty_databases["notify"]) as conn:
        assert conn.execute("SELECT to_regclass('notify.alerts') IS NOT NULL").fetchone()[0]
        assert conn.execute("SELECT to_regclass('admin_log.admin_events')").fetchone()[0] is None


@pytest.mark.fresh_database
def test_changed_migration_file_is_refused_and_nothing_is_applied(database_urls, config_file, capsys):
    url = database_urls["notify"]
    with psycopg.connect(url, autocommit=True) as conn:  # as if ddl/notify/0001 had been edited since
        conn.execute("UPDATE public.notify_engine_migrations SET checksum = 'edited' "
                     "WHERE section = 'notify' AND version = '0001'")
        conn.execute("DELETE FROM public.notify_engine_migrations WHERE section = 'admin_log'")

    with pytest.raises(MigrationChanged, match=r"ddl/notify/0001_init.sql changed after it was applied"):
        apply_migrations(Databases(database_urls))

    assert notifyctl(["db", "init", "--config", str(config_file())]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "applied migrations are immutable" in err
    with psycopg.connect(url) as conn:  # the refusal came before admin_log's file was re-applied
        assert conn.execute("SELECT count(*) FROM public.notify_engine_migrations "
                            "WHERE section = 'admin_log'").fetchone()[0] == 0


def test_migrations_are_discovered_in_version_order():
    for section in [COMMON, *SECTIONS]:
        versions = [m.version for m in discover(section)]
        assert versions == sorted(versions) and versions[0] == "0001"


@pytest.mark.fresh_database
def test_a_schema_newer_than_the_code_is_refused(database_urls, config_file, capsys):
    url = database_urls["notify"]
    with psycopg.connect(url, autocommit=True) as conn:  # as if a newer notify-engine had migrated it
        conn.execute("INSERT INTO public.notify_engine_migrations (section, version, name, checksum) "
                     "VALUES ('notify', '9999', 'from_the_future', 'x')")
    with pytest.raises(NotifyError, match=r"holds ddl/notify/9999, which this notify-engine does not have"):
        apply_migrations(Databases(database_urls))
    assert notifyctl(["db", "init", "--config", str(config_file())]) == 1
    assert "the schema is newer than this code" in capsys.readouterr().err
