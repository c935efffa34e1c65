"""Every table, column and index purpose of the seed exists, in the database the seed puts it in."""

import re

import psycopg
import pytest

from engine.config import SECTIONS
from tests.seed import seed_indexes, seed_tables

SEED_TABLES = seed_tables()
# Deliberate departures (docs/SCHEMA.md, "Where the project departs from the seed"), each checked
# by its own test; every other seed column keeps its NOT NULL.
NULLABLE_BY_DESIGN = {
    # ddl/notify/0007: a test send's row notifies about no alert; a CHECK keeps every other row's.
    ("notify.notifications", "alert_id"),
}


def _normalise_default(expr: str | None) -> str | None:
    if expr is None:
        return None
    # PostgreSQL prints 'ok'::text and 'info'::sev_level; the seed writes 'ok' and 'info'.
    return re.sub(r"::(public\.)?[a-z_ ]+$", "", expr.strip())


def test_seed_lists_the_tables_we_expect():
    assert len(SEED_TABLES) == 10
    assert sum(len(c) for c in SEED_TABLES.values()) > 100


@pytest.mark.parametrize("table", sorted(SEED_TABLES))
def test_seed_table_has_every_column_with_the_seeds_type_and_default(template_urls, table):
    schema, name = table.split(".")
    with psycopg.connect(template_urls[schema]) as conn:
        rows = conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid), a.attgenerated <> ''
            FROM pg_attribute a
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
            """,
            (table,),
        ).fetchall()
    actual = {r[0]: r for r in rows}
    for column in SEED_TABLES[table]:
        assert column.name in actual, f"{table}.{column.name} is missing"
        _, type_, not_null, default, generated = actual[column.name]
        assert type_ in (column.type, column.type.removeprefix("public.")), f"{table}.{column.name}: {type_}"
        seed_not_null = column.not_null and (table, column.name) not in NULLABLE_BY_DESIGN
        assert not_null == seed_not_null, f"{table}.{column.name}: NOT NULL differs"
        assert generated == column.generated, f"{table}.{column.name}: generated differs"
        if not column.generated:
            assert _normalise_default(default) == _normalise_default(column.default), (
                f"{table}.{column.name}: default {default!r}, seed {column.default!r}"
            )


def test_each_section_lives_in_its_own_database(template_urls):
    for section in SECTIONS:
        with psycopg.connect(template_urls[section]) as conn:
            present = {r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(SECTIONS),))}
        assert present == {section}


@pytest.mark.parametrize("index,table,definition", seed_indexes())
def test_every_seed_index_purpose_is_kept(template_urls, index, table, definition):
    """Same name, same table, same method, same leading columns (BRIN on the time column:
    occurred_at/captured_at/created_at rather than the generated *_on date, see docs/SCHEMA.md)."""
    schema = table.split(".")[0]
    with psycopg.connect(template_urls[schema]) as conn:
        row = conn.execute(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname = %s",
            (index, schema),
        ).fetchone()
    assert row, f"index {index} is missing"
    actual = row[0]
    assert f"ON {table} " in actual or f"ON ONLY {table} " in actual
    if "BRIN" in definition:
        time_column = re.search(r"\((\w+)_on\)", definition).group(1) + "_at"
        assert f"USING brin ({time_column})" in actual
    else:
        columns = re.search(r"\((.*)\)", definition).group(1)
        assert f"USING btree ({columns})" in actual


def test_notify_seed_constraints_exist(databases):
    with databases.begin("notify") as conn:
        constraints = {r[0] for r in conn.exec_driver_sql(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid IN "
            "('notify.alerts'::regclass, 'notify.notifications'::regclass, 'data_activity.record_events'::regclass)")}
    assert "UNIQUE (tenant_id, dedupe_key)" in constraints
    assert any("FOREIGN KEY (tenant_id, alert_id) REFERENCES notify.alerts(tenant_id, id) ON DELETE CASCADE" in c
               for c in constraints)
    assert any("'INSERT'::text, 'UPDATE'::text, 'DELETE'::text" in c for c in constraints)
