"""Database roles: log in as a user of each role and check what it may and may not do."""

import re
import uuid

import psycopg
import pytest
from psycopg import sql

from engine.cli import main
from engine.logwriter import ApiAccessLog, LogPipeline
from engine.logwriter.copy import copy_records
from engine.roles import LOG_ADMIN_READER, LOG_SUPPORT, LOG_WRITER, apply_roles


def as_user(url: str, user: str) -> str:
    # The test cluster trusts local socket connections: any LOGIN role may connect as itself.
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[1]}"


@pytest.fixture
def login_users(databases, database_urls):
    apply_roles(databases)
    url = database_urls["notify"]
    created = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for role in (LOG_WRITER, LOG_SUPPORT, LOG_ADMIN_READER):
            user = f"u_{role}_{uuid.uuid4().hex[:6]}"
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(user), sql.Identifier(role)))
            created[role] = user
    yield {role: as_user(url, user) for role, user in created.items()}
    with psycopg.connect(url, autocommit=True) as conn:
        for user in created.values():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def privileges(url, tables, privilege):
    with psycopg.connect(url) as conn:
        # By oid from the catalog: resolving a name needs USAGE on its schema, which is itself denied.
        return {t: conn.execute(
            "SELECT has_table_privilege(c.oid, %s) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = split_part(%s, '.', 1) AND c.relname = split_part(%s, '.', 2)",
            (privilege, t, t)).fetchone()[0] for t in tables}


LOG_TABLES = ["admin_log.security_events", "admin_log.admin_events", "portal_log.auth_events",
              "portal_log.portal_events", "portal_log.token_events", "data_activity.api_access_logs",
              "data_activity.record_events"]
NOTIFY_TABLES = ["notify.alerts", "notify.notifications", "notify.quota_snapshots"]


def test_log_writer_inserts_into_every_log_table_and_nothing_else(login_users):
    url = login_users[LOG_WRITER]
    assert all(privileges(url, LOG_TABLES, "INSERT").values())
    for privilege in ("SELECT", "UPDATE", "DELETE", "TRUNCATE"):
        assert not any(privileges(url, LOG_TABLES, privilege).values()), privilege
    assert not any(privileges(url, NOTIFY_TABLES, "INSERT").values())
    assert not any(privileges(url, NOTIFY_TABLES, "SELECT").values())
    # A real write, through COPY as the log writers do it.
    record = LogPipeline().admit(ApiAccessLog(tenant_id=str(uuid.uuid4()), base_id=str(uuid.uuid4()),
                                              route="/v1/records", method="GET", status=200))
    with psycopg.connect(url) as conn:
        assert copy_records(conn, ApiAccessLog, [record]) == 1
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM data_activity.api_access_logs")
        conn.rollback()
        # Direct access to a partition is not granted: only the parent routes rows.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO data_activity.record_events_default (tenant_id, base_id, table_id, action) "
                         "VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'INSERT')")


def test_log_support_reads_portal_data_activity_and_notify_but_not_admin_log(login_users, databases):
    url = login_users[LOG_SUPPORT]
    readable = ["portal_log.auth_events", "portal_log.portal_events", "portal_log.token_events",
                "data_activity.api_access_logs", "data_activity.record_events"] + NOTIFY_TABLES
    assert all(privileges(url, readable, "SELECT").values())
    assert not any(privileges(url, readable, "INSERT").values())
    assert not any(privileges(url, ["admin_log.security_events", "admin_log.admin_events"], "SELECT").values())
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM data_activity.api_access_logs").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM notify.alerts").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM admin_log.admin_events")


def test_log_admin_reader_reads_admin_log_only(login_users):
    url = login_users[LOG_ADMIN_READER]
    assert all(privileges(url, ["admin_log.security_events", "admin_log.admin_events"], "SELECT").values())
    assert not any(privileges(url, ["admin_log.admin_events"], "INSERT").values())
    assert not any(privileges(url, ["portal_log.auth_events", "data_activity.record_events", "notify.alerts"],
                              "SELECT").values())
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM admin_log.admin_events").fetchone()[0] == 0


@pytest.mark.four_databases
def test_grants_apply_per_database_when_sections_are_separate(databases):
    report = apply_roles(databases)
    assert any(g.endswith("log_writer INSERT on 2 tables of admin_log") for g in report.granted)
    assert any(re.search(r"log_support SELECT on \d+ tables of notify$", g) for g in report.granted)
    with psycopg.connect(databases.urls["admin_log"]) as conn:
        assert conn.execute("SELECT has_table_privilege('log_support', 'admin_log.admin_events', 'SELECT')").fetchone()[0] is False
        assert conn.execute("SELECT has_table_privilege('log_admin_reader', 'admin_log.admin_events', 'SELECT')").fetchone()[0]


def test_db_init_creates_roles_once_and_says_so(config_file, capsys):
    config = str(config_file())
    assert main(["db", "init", "--config", config]) == 0
    first = capsys.readouterr().out
    assert "grants:" in first
    assert main(["db", "init", "--config", config]) == 0
    second = capsys.readouterr().out
    assert "roles: created" not in second and "schema up to date" in second


def test_a_user_who_may_not_create_roles_is_told_and_init_goes_on(databases, database_urls):
    url = database_urls["notify"]
    user = f"u_plain_{uuid.uuid4().hex[:6]}"
    wanted = (f"r_missing_{uuid.uuid4().hex[:6]}",)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
    try:
        from engine.db import Databases
        plain = Databases({s: as_user(u, user) for s, u in database_urls.items()})
        report = apply_roles(plain, roles=wanted)
        plain.dispose()
        assert report.created == [] and report.missing == list(wanted)
        assert "may not create roles" in "\n".join(report.lines())
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def test_db_init_by_an_owner_who_may_create_roles_but_is_no_superuser(pg_server, capsys, tmp_path):
    # The common managed-PostgreSQL set-up: the databases belong to a role with CREATEROLE only.
    from engine.cli import main as notifyctl

    owner = f"u_owner_{uuid.uuid4().hex[:6]}"
    name = f"owned_{uuid.uuid4().hex[:6]}"
    admin_url = pg_server.create_database(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
    config = tmp_path / "config.yaml"
    url = as_user(admin_url, owner)
    config.write_text("databases:\n" + "".join(f"  {s}: {url}\n" for s in
                                               ("admin_log", "portal_log", "data_activity", "notify")))
    try:
        assert notifyctl(["db", "init", "--config", str(config)]) == 0
        assert notifyctl(["db", "init", "--config", str(config)]) == 0  # again: nothing to do, no error
        out = capsys.readouterr().out
        assert "schema up to date" in out
        with psycopg.connect(url) as conn:  # the grants were made by the owner
            assert conn.execute("SELECT has_table_privilege('log_writer', 'data_activity.api_access_logs', "
                                "'INSERT')").fetchone()[0]
    finally:
        pg_server.drop_database(name)
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(owner)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
