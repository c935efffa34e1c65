"""What the noise-control tests (grouping, rate limits, digests and quiet hours) share."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import text


@pytest.fixture
def mail_app(app, smtp):
    """The app sending email to the suite's SMTP server."""
    app.config.channels.email.port = smtp[1]
    app.config.channels.email.sender = "alerts@notify.example"
    return app


def with_mail_destinations(app, other_tenant: str):
    """The app with an email destination for the suite's tenant and one for `other_tenant`, the
    runs quota planned, and no reminders (the silence and planner tests start from it)."""
    from engine.config import PlanConfig
    from tests.delivery_support import add_dest

    app.config.delivery.reminder_interval = 0
    app.config.plans = {"default": PlanConfig(runs_used=1000)}
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "email", "ops@example.com")
        add_dest(conn, app.clock.now(), "email", "other@example.com", tenant_id=other_tenant)
    return app


def subjects(handler) -> list[str]:
    """The Subject of every email the SMTP test server received, in order."""
    return [email.message_from_bytes(e.original_content, policy=email.policy.default)["Subject"]
            for e in handler.messages]


def rows(app, where: str = "true") -> list[dict]:
    """Every notification row matching `where` (SQL), oldest first."""
    with app.databases.begin("notify") as conn:
        return [dict(r) for r in conn.execute(text(
            f"SELECT * FROM notify.notifications WHERE {where} ORDER BY created_at, id")).mappings()]
