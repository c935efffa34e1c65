"""The notify pool reuses the connection returned last (engine/db.py): a steady load keeps one
backend warm, and the others a burst opened stay cold, each a PostgreSQL process whose private
memory counts (issue 16's memory goal)."""

from __future__ import annotations

import contextlib

from sqlalchemy import text


def test_sequential_transactions_after_a_burst_reuse_one_backend(databases):
    with contextlib.ExitStack() as burst:   # three at once: three pooled connections
        for _ in range(3):
            burst.enter_context(databases.begin("notify"))
    backends = set()
    for _ in range(6):
        with databases.begin("notify") as conn:
            backends.add(conn.execute(text("SELECT pg_backend_pid()")).scalar())
    assert len(backends) == 1
