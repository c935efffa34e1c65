"""Runtime SQL lives in engine/sql/*.sql as named blocks, loaded once and called by name.

A block starts with a line `-- name: <query_name>`, followed by comment lines that describe it,
then the statement. Parameters are SQLAlchemy named binds (`:tenant_id`). Python never assembles
SQL from strings, except identifiers, which go through the driver's quoting.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from sqlalchemy import TextClause, text

_BLOCK = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def load(module: str) -> dict[str, TextClause]:
    """All named queries of engine/sql/<module>.sql."""
    source = resources.files("engine").joinpath("sql", f"{module}.sql").read_text()
    parts = _BLOCK.split(source)
    queries: dict[str, TextClause] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"engine/sql/{module}.sql: query {name} is defined twice")
        queries[name] = text(body.strip().rstrip(";"))
    return queries


@functools.cache
def raw_query(module: str, name: str) -> str:
    """The same named query for a plain psycopg cursor (`%(name)s` placeholders), for hot paths
    that skip SQLAlchemy's per-statement and per-row work (the dispatcher's claim and results).
    The bind syntax is converted by SQLAlchemy's own compiler, so the .sql file stays one text."""
    from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

    return str(query(module, name).compile(dialect=psycopg_dialect.dialect()))


def query(module: str, name: str) -> TextClause:
    try:
        return load(module)[name]
    except KeyError:
        raise KeyError(f"engine/sql/{module}.sql has no query named {name}") from None
