"""What the noise-control tests (grouping, rate limits, digests and quiet hours) share."""

from __future__ import annotations

import pytest
from sqlalchemy import text


@pytest.fixture
def mail_app(app, smtp):
    """The app sending email to the suite's SMTP server."""
    app.config.channels.email.port = smtp[1]
    app.config.channels.email.sender = "alerts@notify.example"
    return app


def rows(app, where: str = "true") -> list[dict]:
    """Every notification row matching `where` (SQL), oldest first."""
    with app.databases.begin("notify") as conn:
        return [dict(r) for r in conn.execute(text(
            f"SELECT * FROM notify.notifications WHERE {where} ORDER BY created_at, id")).mappings()]
