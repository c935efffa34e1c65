"""The seed's tables, columns and indexes, read from its own text (tests/data/seed.sql)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEED_SQL = (Path(__file__).parent / "data" / "seed.sql").read_text()

_TYPE_NAMES = {"timestamptz": "timestamp with time zone", "int": "integer", "sev_level": "public.sev_level"}


@dataclass(frozen=True)
class SeedColumn:
    table: str
    name: str
    type: str          # as format_type() prints it
    not_null: bool
    default: str | None
    generated: bool


def seed_section(section: str) -> str:
    match = re.search(rf"-- section: {section}\n(.*?)(?=\n-- section: |\Z)", SEED_SQL, re.S)
    assert match, section
    return match.group(1)


def seed_tables() -> dict[str, list[SeedColumn]]:
    tables: dict[str, list[SeedColumn]] = {}
    for match in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+\.\w+) \((.*?)\n\)", SEED_SQL, re.S):
        table, body = match.group(1), match.group(2)
        columns = []
        for line in body.splitlines():
            line = line.split("--")[0].strip().rstrip(",")
            m = re.match(r"^(\w+)\s+(\w+(?:\(\d+,\d+\))?)(.*)$", line)
            if not m or m.group(1).upper() in ("UNIQUE", "PRIMARY", "CHECK"):
                continue
            name, type_, rest = m.groups()
            default = re.search(r"DEFAULT (.+?)(?:,|$| CHECK| REFERENCES)", rest)
            columns.append(SeedColumn(
                table=table,
                name=name,
                type=_TYPE_NAMES.get(type_, type_),
                not_null="NOT NULL" in rest or "PRIMARY KEY" in rest,
                default=default.group(1).strip() if default else None,
                generated="GENERATED ALWAYS" in rest,
            ))
        tables[table] = columns
    return tables


def seed_indexes() -> list[tuple[str, str, str]]:
    """(index name, table, definition after USING/ON) of every seed index."""
    return re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)\s+ON (\w+\.\w+) (.*?);", SEED_SQL)
