"""`notifyctl notifications retry [ID] [filters] [--dry-run]` (issue 13, item 3): a bulk re-drive
selects exactly what its filters say, a dry run changes nothing, a re-driven notification keeps
its idempotency key, and rows of removed or disabled destinations are skipped and counted."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import text

from engine.cli import main
from engine.dispatcher import deliver_due
from engine.notifications import RetryFilter, retry_matching
from engine.planner import plan_notifications
from engine.queries import query
from tests.delivery_support import OTHER_TENANT, TENANT, HttpServer, add_dest, insert_alert


@pytest.fixture
def flaky_receiver():
    """Refuses the first webhook (HTTP 400: a permanent failure), accepts every later one."""
    calls = []

    async def responder(request: web.Request, body: bytes) -> web.StreamResponse:
        calls.append(1)
        return web.Response(status=400 if len(calls) == 1 else 200, text="x")

    server = HttpServer(responder).start()
    yield server
    server.stop()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def by_destination(app) -> dict[str, dict]:
    with app.databases.begin("notify") as conn:
        rows = conn.execute(text("SELECT * FROM notify.notifications WHERE transition <> 'test'")).mappings()
        return {str(r["destination_id"]): dict(r) for r in rows}


@pytest.fixture
def failed_everywhere(app, clock, flaky_receiver):
    """Failed notifications across tenants, channels and destinations: the webhook one failed for
    real (HTTP 400 from the receiver), the others by hand; one destination since disabled, one
    removed; a failed test send and a sent notification that no filter may touch."""
    app.config.channels.webhook.allow_private_networks = True
    now = clock.now()
    with app.databases.begin("notify") as conn:
        dests = {
            "hook": add_dest(conn, now, "webhook", flaky_receiver.url("/a")),
            "mail": add_dest(conn, now, "email", "ops@tenant.example"),
            "disabled": add_dest(conn, now, "webhook", flaky_receiver.url("/d")),
            "removed": add_dest(conn, now, "webhook", flaky_receiver.url("/r")),
            "other": add_dest(conn, now, "webhook", flaky_receiver.url("/o"), tenant_id=OTHER_TENANT),
            "sent": add_dest(conn, now, "slack", "C0123SENT", tenant_id=OTHER_TENANT),
        }
        insert_alert(conn, now)
        insert_alert(conn, now, tenant_id=OTHER_TENANT)
        plan_notifications(conn, app.config, now)
        conn.execute(text("UPDATE notify.notifications SET status = 'failed', error = 'by hand', send_attempts = 8,"
                          " last_attempt_at = :at WHERE destination_id <> :hook"), dict(at=now, hook=dests["hook"]))
        conn.execute(text("UPDATE notify.notifications SET status = 'sent', error = NULL WHERE destination_id = :d"),
                     dict(d=dests["sent"]))
        conn.execute(text("UPDATE notify.destinations SET enabled = false, disabled_reason = 'HTTP 410 Gone'"
                          " WHERE id = :d"), dict(d=dests["disabled"]))
        conn.execute(text("DELETE FROM notify.destinations WHERE id = :d"), dict(d=dests["removed"]))
        conn.execute(query("destinations", "insert_test_notification"),
                     dict(id=dests["other"], now=now, token=uuid.uuid4()))
    assert deliver_due(app).failed == 1 and len(flaky_receiver.received) == 1
    rows = by_destination(app)
    assert rows[dests["hook"]]["status"] == "failed" and rows[dests["hook"]]["error"] == "HTTP 400"
    return dests


def snapshot(app) -> list[tuple]:
    with app.databases.begin("notify") as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM notify.notifications ORDER BY id"))]


@pytest.mark.parametrize("filters, expected, skipped", [
    (RetryFilter(channel="email"), {"mail"}, 0),
    (RetryFilter(tenant_id=uuid.UUID(OTHER_TENANT)), {"other"}, 0),
    (RetryFilter(channel="webhook", tenant_id=uuid.UUID(TENANT)), {"hook"}, 2),
    (RetryFilter(), {"hook", "mail", "other"}, 2),
    (RetryFilter(status="skipped"), set(), 0),
])
def test_a_dry_run_counts_exactly_what_the_filters_select_and_changes_nothing(app, failed_everywhere, filters,
                                                                            expected, skipped):
    before = snapshot(app)
    counts = retry_matching(app, filters, dry_run=True)
    assert (counts.requeued, counts.skipped, counts.dry_run) == (len(expected), skipped, True)
    assert snapshot(app) == before


def test_the_filters_re_queue_exactly_the_matching_rows(app, failed_everywhere):
    dests = failed_everywhere
    counts = retry_matching(app, RetryFilter(destination_id=uuid.UUID(dests["mail"])))
    assert (counts.requeued, counts.skipped) == (1, 0)
    rows = by_destination(app)
    assert {d for d, r in rows.items() if r["status"] == "queued"} == {dests["mail"]}


def test_since_selects_by_the_last_attempt_on_the_engine_clock(app, clock, failed_everywhere):
    dests = failed_everywhere
    with app.databases.begin("notify") as conn:
        conn.execute(text("UPDATE notify.notifications SET last_attempt_at = :at WHERE destination_id = :d"),
                     dict(at=clock.now() - timedelta(hours=3), d=dests["mail"]))
    clock.advance(timedelta(minutes=90))   # the webhook failed 90 minutes ago, the mail 4.5 hours ago
    assert retry_matching(app, RetryFilter(tenant_id=uuid.UUID(TENANT), since_seconds=7200), dry_run=True).requeued == 1
    assert retry_matching(app, RetryFilter(tenant_id=uuid.UUID(TENANT), since_seconds=3600), dry_run=True).requeued == 0
    assert retry_matching(app, RetryFilter(tenant_id=uuid.UUID(TENANT), since_seconds=5 * 3600),
                          dry_run=True).requeued == 2
    counts = retry_matching(app, RetryFilter(tenant_id=uuid.UUID(TENANT), since_seconds=7200))
    assert counts.requeued == 1 and by_destination(app)[dests["hook"]]["status"] == "queued"
    assert by_destination(app)[dests["mail"]]["status"] == "failed"


def test_a_re_driven_notification_keeps_its_idempotency_key_and_is_sent_with_the_same_webhook_id(
        app, clock, failed_everywhere, flaky_receiver):
    dests = failed_everywhere
    first_webhook_id = flaky_receiver.received[0].headers["webhook-id"]
    before = by_destination(app)
    clock.advance(timedelta(hours=1))
    counts = retry_matching(app, RetryFilter(channel="webhook"), actor="oncall")
    assert (counts.requeued, counts.skipped) == (2, 2)
    after = by_destination(app)
    for name in ("hook", "other"):
        row = after[dests[name]]
        assert (row["status"], row["send_attempts"], row["error"], row["next_attempt_at"]) == \
            ("queued", 0, None, clock.now())
        assert row["idempotency_key"] == before[dests[name]]["idempotency_key"]
    for name in ("disabled", "removed"):   # skipped: left as they were
        assert after[dests[name]] == before[dests[name]]
    with app.databases.begin("notify") as conn:
        (test_row,) = conn.execute(text("SELECT status FROM notify.notifications WHERE transition = 'test'")).all()
        audit = conn.execute(text("SELECT action, target_type, diff FROM admin_log.admin_events"
                                  " WHERE action = 'NOTIFICATIONS_RETRY'")).one()
    assert test_row.status == "failed"   # a test send is never re-driven
    assert audit.target_type == "NOTIFICATION" and audit.diff["requeued"] == 2 and audit.diff["skipped"] == 2
    assert audit.diff["filters"]["channel"] == "webhook" and audit.diff["actor"] == "oncall"
    assert deliver_due(app).sent == 2
    resent = [r for r in flaky_receiver.received[1:] if r.path == "/a"]
    assert [r.headers["webhook-id"] for r in resent] == [first_webhook_id]
    assert by_destination(app)[dests["hook"]]["status"] == "sent"


def test_a_dry_run_writes_no_audit_row(app, failed_everywhere):
    retry_matching(app, RetryFilter(), dry_run=True)
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM admin_log.admin_events"
                                 " WHERE action = 'NOTIFICATIONS_RETRY'")).scalar() == 0


def test_the_cli_prints_how_many_and_a_dry_run_changes_nothing(config_file, capsys, app, failed_everywhere):
    cfg = str(config_file())
    before = snapshot(app)
    code, out, err = run(capsys, "notifications", "retry", "--tenant", TENANT, "--dry-run", "--config", cfg)
    assert (code, out) == (0, "would re-queue 2 failed notifications; skipped 2 whose destination is removed or "
                              "disabled\n"), err
    assert snapshot(app) == before
    code, out, _ = run(capsys, "notifications", "retry", "--channel", "email", "--config", cfg)
    assert (code, out) == (0, "re-queued 1 failed notifications\n")
    code, out, _ = run(capsys, "notifications", "retry", "--status", "failed", "--since", "36500d",
                       "--destination", failed_everywhere["other"], "--config", cfg)
    assert (code, out) == (0, "re-queued 1 failed notifications\n")
    assert {d for d, r in by_destination(app).items() if r["status"] == "queued"} == \
        {failed_everywhere["mail"], failed_everywhere["other"]}


def test_a_test_send_is_not_retried_by_id(config_file, capsys, app, failed_everywhere):
    with app.databases.begin("notify") as conn:
        test_id = conn.execute(text("SELECT id FROM notify.notifications WHERE transition = 'test'")).scalar()
    code, _, err = run(capsys, "notifications", "retry", str(test_id), "--config", str(config_file()))
    assert code == 2 and "is a test send" in err


@pytest.mark.parametrize("argv, message", [
    ([], "retry: give an ID, or at least one of --status"),
    ([str(uuid.uuid4()), "--channel", "email"], "ID: retry ID takes no filters"),
    ([str(uuid.uuid4()), "--dry-run"], "ID: retry ID takes no filters"),
    (["--dry-run"], "retry: give an ID, or at least one of --status"),
    (["--since", "2 weeks"], "--since: expected a duration such as 30s, 5m, 4h or 1d"),
    (["--tenant", "nope"], "--tenant: expected a UUID, got 'nope'"),
    (["--destination", "nope"], "--destination: expected a UUID, got 'nope'"),
    (["--status", "sent"], "argument --status: invalid choice: 'sent'"),
    (["--channel", "pager"], "argument --channel: invalid choice: 'pager'"),
])
def test_bad_retry_arguments_exit_2_with_one_line_and_change_nothing(config_file, capsys, app, failed_everywhere,
                                                                     argv, message):
    before = snapshot(app)
    code, out, err = run_or_exit(capsys, "notifications", "retry", *argv, "--config", str(config_file()))
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""
    assert snapshot(app) == before


def run_or_exit(capsys, *argv) -> tuple[int, str, str]:
    try:
        return run(capsys, *argv)
    except SystemExit as exc:   # argparse's own usage errors
        out = capsys.readouterr()
        return exc.code, out.out, out.err


def test_the_json_listing_of_a_re_driven_row_is_unchanged_but_for_its_status(config_file, capsys, app,
                                                                             failed_everywhere):
    cfg = str(config_file())
    run(capsys, "notifications", "retry", "--channel", "email", "--config", cfg)
    code, out, _ = run(capsys, "notifications", "--status", "queued", "--json", "--config", cfg)
    (listed,) = json.loads(out)
    assert listed["channel"] == "email" and listed["send_attempts"] == 0 and listed["error"] is None
