"""The planner's fast paths (issue 16, item 3), each keeping every outcome: a transaction's own
transitions are planned by plan_transitions (plan_notifications without the tick's parts), or by
plan_transitions_unsuppressed (without the suppression's parts either) when nothing can be
suppressed, which checks that for itself; the planning statement wakes the dispatchers itself;
the release step's statements run only when a held row is due."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text

from engine import planner
from engine.alerts import raise_event
from engine.collectors.push import record_snapshots
from engine.config import RouteConfig
from engine.detect import run_detection
from engine.queries import load, parse, query
from tests.delivery_support import TENANT, notifications
from tests.noise_support import with_mail_destinations

OTHER = "6f1c2d3e-0000-4000-8000-000000000002"
PLANNER_SQL = Path(__file__).resolve().parent.parent / "engine" / "sql" / "planner.sql"


@pytest.fixture(autouse=True)
def fast_path_first(monkeypatch):
    """Each test starts with the planner's guess that nothing is suppressible (its default)."""
    monkeypatch.setattr(planner, "_suppressible_last", False)


@pytest.fixture
def mail_dest_app(app):
    return with_mail_destinations(app, OTHER)


class Statements:
    """The engine/sql blocks the app's notify engine runs, by name, in order."""

    def __init__(self, app):
        self.names = {}
        for name in ("lock_planner", "plan_notifications", "plan_transitions", "plan_transitions_unsuppressed",
                     "wake_dispatchers"):
            self.names[_first_line(query("planner", name).text)] = f"planner.{name}"
        for name in ("suppress_silenced_held", "release_held"):
            self.names[_first_line(query("noise", name).text)] = f"noise.{name}"
        self.ran: list[str] = []
        event.listen(app.databases.engine("notify"), "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        name = self.names.get(_first_line(statement))
        if name:
            self.ran.append(name)


def _first_line(statement: str) -> str:
    # Binds are :name in the file and %(name)s for the driver, comments included.
    return re.sub(r"%\(\w+\)s|:\w+", "?", statement.strip().splitlines()[0])


def rows(app, **where) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn, **where)


def _ctes(block: str) -> dict[str, str]:
    """A WITH statement's CTEs by name, each with its text (comments left out)."""
    found, name = {}, None
    for line in block.splitlines():
        start = re.match(r"^(?:WITH )?([a-z_]+) AS (?:MATERIALIZED )?\($", line)
        if start:
            name = start.group(1)
            found[name] = []
        elif line.startswith("SELECT (SELECT count(*) FROM inserted)"):
            name = None
        elif name and not line.lstrip().startswith("--"):
            found[name].append(line)
    return {k: "\n".join(v).rstrip(",") for k, v in found.items()}


def test_the_transition_statements_share_the_ticks_ctes_and_the_fast_one_leaves_out_suppression():
    # The CTEs are written once (`_` blocks spliced in by engine/queries.py); what differs is
    # which are included.
    statements = {name: q.text for name, q in load("planner").items()}
    tick, full, fast = (_ctes(statements[n]) for n in ("plan_notifications", "plan_transitions",
                                                        "plan_transitions_unsuppressed"))
    suppression = {"candidate_tenants", "inhibitors", "inhibited", "silenced"}
    assert suppression <= set(tick) and suppression <= set(full) and not suppression & set(fast)
    for name in ("routes", "active_silences", "suppression_candidates", "inhibit_rules", "shaped", "inserted"):
        assert tick[name] == full[name] == fast[name], name
    assert "reminders" in tick and "reminders" not in full
    assert statements["plan_transitions_unsuppressed"].count("CAST(:guarded AS boolean)") == 2


def test_sql_fragments_are_spliced_in_and_bad_includes_are_refused():
    source = ("-- name: q\nSELECT * FROM (\n-- include: _inner\n) x;\n"
              "-- name: _inner\n-- a fragment\nSELECT 1 AS one\n")
    queries = parse("example", source)
    assert list(queries) == ["q"]                    # a fragment is no query of its own
    assert "SELECT 1 AS one" in queries["q"].text and "include" not in queries["q"].text
    with pytest.raises(ValueError, match="includes _missing, which is no `_` block"):
        parse("example", "-- name: q\n-- include: _missing\n")
    with pytest.raises(ValueError, match="q -> _a -> _b -> _a includes itself"):
        parse("example", "-- name: q\n-- include: _a\n-- name: _a\n-- include: _b\n-- name: _b\n-- include: _a\n")


def test_a_transaction_that_plans_wakes_the_dispatchers_at_commit_and_a_refresh_does_not(mail_dest_app,
                                                                                        database_urls):
    app = mail_dest_app
    with psycopg.connect(database_urls["notify"], autocommit=True) as listener:
        listener.execute("LISTEN notify_engine_deliveries")
        raise_event(app, TENANT, "PAYMENT_FAILED")
        assert len(list(listener.notifies(timeout=5, stop_after=1))) == 1
        raise_event(app, TENANT, "PAYMENT_FAILED")   # refreshed: nothing planned
        assert list(listener.notifies(timeout=0.2)) == []
    assert [r["status"] for r in rows(app)] == ["queued"]


def test_a_transition_with_no_held_row_due_runs_no_release_statement(mail_dest_app):
    app = mail_dest_app
    seen = Statements(app)
    raise_event(app, TENANT, "PAYMENT_FAILED")
    assert seen.ran == ["planner.lock_planner", "planner.plan_transitions_unsuppressed"]
    assert [r["status"] for r in rows(app)] == ["queued"]


def test_a_held_row_that_fell_due_is_released_by_the_next_transactions_planning(mail_dest_app):
    app = mail_dest_app
    app.config.routes = [RouteConfig(name="ops", channel="email", target="ops-team@example.com")]
    seen = Statements(app)
    raise_event(app, TENANT, "PAYMENT_FAILED")
    held = rows(app, route_key="route:ops")
    assert [r["status"] for r in held] == ["held"]          # group_wait 30s
    assert "noise.release_held" not in seen.ran              # not due yet
    app.clock.advance(timedelta(seconds=31))
    raise_event(app, OTHER, "PAYMENT_FAILED", severity="warn")   # a group of its own
    assert seen.ran.count("noise.release_held") == 1
    assert rows(app, id=held[0]["id"])[0]["status"] == "queued"


def test_a_silence_added_by_another_process_holds_down_the_very_next_transition(mail_dest_app, config_file):
    app = mail_dest_app
    seen = Statements(app)
    raise_event(app, OTHER, "PAYMENT_FAILED")                # a first pass: nothing is silenced
    assert seen.ran[-1] == "planner.plan_transitions_unsuppressed" and not planner._suppressible_last
    added = subprocess.run(
        [str(Path(sys.executable).parent / "notifyctl"), "--config", str(config_file()), "silence", "add",
         "--match", f"tenant={TENANT}", "--for", "1h"], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    ident = added.stdout.strip()
    app.clock.current = max(app.clock.now(), datetime.now(timezone.utc)) + timedelta(seconds=1)
    raise_event(app, TENANT, "PAYMENT_FAILED")
    # The fast statement saw the silence, wrote nothing, and the whole one planned.
    assert seen.ran[-2:] == ["planner.plan_transitions_unsuppressed", "planner.plan_transitions"]
    mine = [r for r in rows(app) if str(r["tenant_id"]) == TENANT]
    assert [(r["status"], r["suppressed_by"]) for r in mine] == [("suppressed", f"silence:{ident}")]
    assert [r["status"] for r in rows(app) if str(r["tenant_id"]) == OTHER] == ["queued"]


def test_transitions_an_inhibition_rule_targets_are_planned_by_the_whole_statement_once(mail_dest_app):
    app = mail_dest_app
    seen = Statements(app)
    # 100 %: the warn (80 %) and critical alerts open together; the default rule's targets take the
    # warn one, and the critical one holds it down.
    record_snapshots(app, [{"tenant_id": TENANT, "metric": "runs_used", "value": 1000}])
    run_detection(app)
    assert seen.ran[-2:] == ["planner.plan_transitions_unsuppressed", "planner.plan_transitions"]
    assert sorted((r["severity"], r["status"], (r["suppressed_by"] or "").split(":")[0]) for r in rows(app)) == [
        ("critical", "queued", ""), ("warn", "suppressed", "inhibition")]
    assert planner._suppressible_last
    # The guess: the next transitions go straight to the whole statement ...
    seen.ran.clear()
    raise_event(app, OTHER, "PAYMENT_FAILED")
    assert seen.ran[:2] == ["planner.lock_planner", "planner.plan_transitions"]
    # ... which saw nothing suppressible: the ones after them take the fast statement alone.
    assert not planner._suppressible_last
    seen.ran.clear()
    raise_event(app, OTHER, "PAYMENT_FAILED", dedup_key="second")
    assert seen.ran[:2] == ["planner.lock_planner", "planner.plan_transitions_unsuppressed"]
    assert "planner.plan_transitions" not in seen.ran


def test_the_tick_still_plans_with_the_whole_statement(mail_dest_app):
    from engine.planner import plan_notifications

    app = mail_dest_app
    seen = Statements(app)
    with app.databases.begin("notify") as conn:
        conn.execute(text("INSERT INTO notify.alerts (tenant_id, kind, dedupe_key) VALUES (:t, 'WALLET_LOW', 'w')"),
                     {"t": TENANT})
        assert plan_notifications(conn, app.config, app.clock.now()) == 1
    assert seen.ran[:2] == ["planner.lock_planner", "planner.plan_notifications"]


def _sql_bodies(path: Path) -> list[str]:
    """The CREATE FUNCTION statements of a migration, made temporary (pg_temp) for a comparison."""
    text_ = path.read_text()
    found = re.findall(r"CREATE FUNCTION notify\.(?:next_digest_at|quiet_hours_end|silence_matches)\(.*?\$\$;",
                       text_, re.S)
    return [f.replace("CREATE FUNCTION notify.", "CREATE FUNCTION pg_temp.") for f in found]


def test_the_plpgsql_planner_functions_answer_as_the_sql_ones_did(database_urls):
    ddl = PLANNER_SQL.parent.parent.parent / "ddl" / "notify"
    old = _sql_bodies(ddl / "0018_noise_settings.sql") + _sql_bodies(ddl / "0020_silences.sql")
    assert len(old) == 3
    with psycopg.connect(database_urls["notify"]) as conn:
        for statement in old:
            conn.execute(statement)
        differ = conn.execute("""
            WITH moments AS (
              SELECT t FROM generate_series(timestamptz '2026-03-28 20:00Z', timestamptz '2026-03-30 04:00Z',
                                            interval '37 minutes') t
              UNION ALL SELECT timestamptz '2026-10-25 00:59:59Z' UNION ALL SELECT NULL),
            zones AS (SELECT z FROM unnest(ARRAY['UTC', 'Europe/Berlin', 'America/St_Johns', 'Asia/Kolkata', NULL]) z),
            settings AS (SELECT * FROM (VALUES ('hourly', time '00:15', time '22:00', time '07:00'),
                                               ('daily', time '08:30', time '09:00', time '17:30'),
                                               ('immediate', time '00:00', time '23:00', time '01:00'),
                                               (NULL, NULL, NULL, time '01:00')) s(every, at_time, q_start, q_end))
            SELECT count(*) FROM moments, zones, settings
            WHERE notify.next_digest_at(t, every, at_time, z) IS DISTINCT FROM pg_temp.next_digest_at(t, every, at_time, z)
               OR notify.quiet_hours_end(t, q_start, q_end, z) IS DISTINCT FROM pg_temp.quiet_hours_end(t, q_start, q_end, z)
            """).fetchone()[0]
        assert differ == 0
        matchers = [
            '[{"name": "tenant", "value": "%s", "isRegex": false, "isEqual": true}]' % TENANT,
            '[{"name": "kind", "value": "PAYMENT_.*", "isRegex": true, "isEqual": true},'
            ' {"name": "severity", "value": "warn", "isRegex": false, "isEqual": false}]',
            '[{"name": "base", "value": "", "isRegex": false, "isEqual": true}]',
            '[{"name": "region", "value": "eu|us", "isRegex": true, "isEqual": true}]',
            '[{"name": "region", "value": "eu", "isRegex": false}]',
        ]
        total, matched, mismatched = conn.execute("""
            SELECT count(*), count(*) FILTER (WHERE notify.silence_matches(m, tenant, kind, severity, base, labels)),
                   count(*) FILTER (WHERE notify.silence_matches(m, tenant, kind, severity, base, labels)
                                    IS DISTINCT FROM pg_temp.silence_matches(m, tenant, kind, severity, base, labels))
            FROM unnest(CAST(%s AS jsonb[])) m,
                 unnest(ARRAY[CAST(%s AS uuid), gen_random_uuid()]) tenant,
                 unnest(ARRAY['PAYMENT_FAILED', 'RUNS_THRESHOLD']) kind,
                 unnest(ARRAY['warn', 'critical']) severity,
                 unnest(ARRAY[NULL, gen_random_uuid()]) base,
                 unnest(ARRAY[NULL, '{"region": "eu"}', '{"region": "apac"}']::jsonb[]) labels
            """, (matchers, TENANT)).fetchone()
        assert mismatched == 0
        assert 0 < matched < total     # the grid has both answers
