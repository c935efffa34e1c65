"""The database roles of the log tables (CONTRACT.md "Database roles"), created and granted by
`notifyctl db init` after the migrations.

| role             | may                                                                      |
| log_writer       | INSERT into every log table of admin_log, portal_log, data_activity      |
| log_support      | SELECT on portal_log, data_activity and notify; nothing on admin_log     |
| log_admin_reader | SELECT on admin_log                                                      |
| log_audit        | never granted to anyone: pgaudit's `pgaudit.role`; every read of a table |
|                  | this role may SELECT (admin_log) is written to the server log            |

Roles are NOLOGIN groups; a deployment grants them to its login users. Roles belong to the
cluster, grants to each database: the grants run on every database for the sections it holds.
Grants go on partitioned parents (and plain tables) only: access through a parent is checked on
the parent, and a partition named directly is deliberately not reachable (PITFALLS.md). New
tables from later migrations are granted by the next `db init`, which is idempotent. No ALTER
DEFAULT PRIVILEGES: it would also grant every new monthly partition directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from sqlalchemy.dialects import postgresql

from engine.db import SESSION_OPTIONS, Databases
from engine.queries import query

LOG_WRITER = "log_writer"
LOG_SUPPORT = "log_support"
LOG_ADMIN_READER = "log_admin_reader"
LOG_AUDIT = "log_audit"
LOG_ROLES = (LOG_WRITER, LOG_SUPPORT, LOG_ADMIN_READER, LOG_AUDIT)

LOG_SECTIONS = ("admin_log", "portal_log", "data_activity")

# (role, privilege, sections) granted on every grantable table of those sections' schemas.
GRANTS = (
    (LOG_WRITER, "INSERT", LOG_SECTIONS),
    (LOG_SUPPORT, "SELECT", ("portal_log", "data_activity", "notify")),
    (LOG_ADMIN_READER, "SELECT", ("admin_log",)),
    (LOG_AUDIT, "SELECT", ("admin_log",)),
)


@dataclass
class RolesReport:
    created: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)        # absent and we may not create them
    granted: list[str] = field(default_factory=list)        # "<database>: <role> <privilege> on <n> tables"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"roles: created {name} (NOLOGIN)" for name in self.created]
        if self.missing:
            out.append(f"roles: {', '.join(self.missing)} missing and this user may not create roles "
                       "(needs CREATEROLE); their grants are skipped")
        return out + [f"grants: {g}" for g in self.granted] + self.notes


def _sql(name: str) -> str:
    # The named queries are SQLAlchemy text; render them for psycopg (pyformat binds).
    return str(query("roles", name).compile(dialect=postgresql.psycopg.dialect()))


def apply_roles(databases: Databases, roles: tuple[str, ...] = LOG_ROLES) -> RolesReport:
    """Creates the group roles when allowed, then grants them on every database. Idempotent."""
    report = RolesReport()
    for url, sections in databases.by_database().items():
        with psycopg.connect(url, options=SESSION_OPTIONS) as conn:
            powers = conn.execute(_sql("current_role_powers")).fetchone()
            present = {r[0] for r in conn.execute(_sql("existing_roles"), {"names": list(roles)})}
            # Asked per database: the four URLs may point at different servers.
            for role in roles:
                if role in present:
                    continue
                if powers[2]:
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                    if role not in report.created:
                        report.created.append(role)
                    present.add(role)
                elif role not in report.missing:
                    report.missing.append(role)
            _grant(conn, sections, present, report)
            _audit_admin_reads(conn, sections, powers[1], present, report)
    return report


def _grant(conn: psycopg.Connection, sections: list[str], roles: set[str], report: RolesReport) -> None:
    dbname = conn.info.dbname
    for role, privilege, granted_sections in GRANTS:
        if role not in roles:
            continue
        schemas = [s for s in sections if s in granted_sections]
        if not schemas:
            continue
        tables = conn.execute(_sql("grantable_tables"), {"schemas": schemas}).fetchall()
        for schema in schemas:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
        for schema, table in tables:
            conn.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                sql.SQL(privilege), sql.Identifier(schema, table), sql.Identifier(role)))
        report.granted.append(f"{dbname}: {role} {privilege} on {len(tables)} tables of {', '.join(schemas)}")
    # admin_log stays closed to support staff even if someone granted it by hand earlier.
    if LOG_SUPPORT in roles and "admin_log" in sections:
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA admin_log FROM {}").format(sql.Identifier(LOG_SUPPORT)))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA admin_log FROM {}").format(sql.Identifier(LOG_SUPPORT)))


def _audit_admin_reads(conn: psycopg.Connection, sections: list[str], is_superuser: bool, roles: set[str],
                       report: RolesReport) -> None:
    """Turns on pgaudit object auditing of admin_log reads where the server allows it."""
    if "admin_log" not in sections or LOG_AUDIT not in roles:
        return
    dbname = conn.info.dbname
    if not conn.execute(_sql("pgaudit_loaded")).fetchone()[0]:
        report.notes.append(f"audit: {dbname}: admin_log reads are not audited: pgaudit is not in "
                            "shared_preload_libraries (see docs/SCHEMA.md, 'Auditable admin_log reads')")
        return
    if not is_superuser:
        report.notes.append(f"audit: {dbname}: pgaudit is loaded; a superuser must run "
                            f"CREATE EXTENSION pgaudit and ALTER DATABASE {dbname} SET pgaudit.role = '{LOG_AUDIT}'")
        return
    conn.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")
    conn.execute(sql.SQL("ALTER DATABASE {} SET pgaudit.role = {}").format(
        sql.Identifier(dbname), sql.Literal(LOG_AUDIT)))
    report.notes.append(f"audit: {dbname}: reads of admin_log are logged by pgaudit (pgaudit.role = {LOG_AUDIT})")
