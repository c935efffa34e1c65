"""Runtime SQL lives in engine/sql/*.sql as named blocks, loaded once and called by name.

A block starts with a line `-- name: <query_name>`, followed by comment lines that describe it,
then the statement. Parameters are SQLAlchemy named binds (`:tenant_id`). Python never assembles
SQL from strings, except identifiers, which go through the driver's quoting.

A block whose name starts with `_` is a fragment, not a query: a line `-- include: <_name>` in
another block of the same file is replaced by its text when the file is loaded, so statements that
share CTEs write them once (engine/sql/planner.sql).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from sqlalchemy import TextClause, text

_BLOCK = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def load(module: str) -> dict[str, TextClause]:
    """All named queries of engine/sql/<module>.sql."""
    return parse(module, resources.files("engine").joinpath("sql", f"{module}.sql").read_text())


def parse(module: str, source: str) -> dict[str, TextClause]:
    """The named queries of one .sql file's text, fragments spliced in."""
    parts = _BLOCK.split(source)
    bodies: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in bodies:
            raise ValueError(f"engine/sql/{module}.sql: query {name} is defined twice")
        bodies[name] = body.strip().rstrip(";")
    return {name: text(_expand(module, bodies, name, ())) for name in bodies if not name.startswith("_")}


def _expand(module: str, bodies: dict[str, str], name: str, within: tuple[str, ...]) -> str:
    """The block's text with each `-- include: <_name>` line replaced by that fragment's."""
    if name in within:
        raise ValueError(f"engine/sql/{module}.sql: {' -> '.join(within + (name,))} includes itself")

    def fragment(match: re.Match) -> str:
        included = match.group(1)
        if not included.startswith("_") or included not in bodies:
            raise ValueError(f"engine/sql/{module}.sql: {name} includes {included}, which is no `_` block of the file")
        return _expand(module, bodies, included, within + (name,))

    return _INCLUDE.sub(fragment, bodies[name])


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
