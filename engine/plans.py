"""Which plan each tenant is on: config.yaml `tenants`, plus the optional SQL source
(detect.tenant_plans_sql) for more tenants than a file should hold. The SQL source wins for a
tenant listed in both. The pairs are synced into notify.tenant_plans, which detectors join."""

from __future__ import annotations

import logging
import uuid

import sqlalchemy

from engine.config import SECTIONS
from engine.db import SESSION_OPTIONS, sqlalchemy_url
from engine.errors import NotifyError

log = logging.getLogger(__name__)


def query_source(app, source, setting: str) -> list:
    """The rows of a configured query (`database`: a section name or a libpq URL, `query`); a
    failure is a NotifyError naming `setting`. Shared with messages.names_sql."""
    statement = sqlalchemy.text(source.query)
    try:
        if source.database in SECTIONS:
            with app.databases.begin(source.database) as conn:
                return conn.execute(statement).all()
        engine = sqlalchemy.create_engine(sqlalchemy_url(source.database), poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"options": SESSION_OPTIONS, "connect_timeout": 10})
        try:
            with engine.begin() as conn:
                return conn.execute(statement).all()
        finally:
            engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise NotifyError(f"{setting}: query failed: {reason}") from None


def tenant_plan_pairs(app) -> dict[uuid.UUID, str]:
    config = app.config
    pairs = {uuid.UUID(t): c.plan for t, c in config.tenants.items()}
    source = config.detect.tenant_plans_sql
    if source is None:
        return pairs
    rows = query_source(app, source, "detect.tenant_plans_sql")
    skipped = 0
    for number, row in enumerate(rows, 1):
        tenant, plan = row[0], row[1]
        try:
            tenant_id = tenant if isinstance(tenant, uuid.UUID) else uuid.UUID(str(tenant))
        except ValueError:
            skipped += 1
            log.warning("detect.tenant_plans_sql: row %d: tenant_id %r is not a UUID; skipped", number, tenant)
            continue
        if plan not in config.plans:
            skipped += 1
            log.warning("detect.tenant_plans_sql: row %d: unknown plan %r for tenant %s; it stays on its "
                        "previous plan", number, plan, tenant_id)
            continue
        pairs[tenant_id] = plan
    return pairs
