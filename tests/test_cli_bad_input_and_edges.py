"""notifyctl and notifyd on bad input (exit 2, one line, nothing changed) and the operator's edges:
--version, `alerts --limit`, times with their zone, `show`'s context as JSON."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from engine import daemon
from engine.alerts import ack_alert
from engine.cli import main
from engine.planner import plan_notifications
from tests.delivery_support import TENANT, add_dest, insert_alert

UNKNOWN = "6f1c2d3e-0000-4000-8000-0000000000ff"


@pytest.fixture
def cli(config_file, capsys):
    path = str(config_file())

    def run(*argv):
        try:
            code = main([*argv, "--config", path])
        except SystemExit as exit_:  # argparse's usage errors end the process as the console script would
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def populated(app):
    """An open alert with a failed and a queued notification, a destination and an audit row."""
    now = app.clock.now()
    with app.databases.begin("notify") as conn:
        add_dest(conn, now, "webhook", "https://hooks.example.com/x")
        failed_alert = insert_alert(conn, now)
        insert_alert(conn, now)
        plan_notifications(conn, app.config, now)
        conn.execute(text("UPDATE notify.notifications SET status = 'failed', error = 'HTTP 400', send_attempts = 1,"
                          " last_attempt_at = :now WHERE alert_id = :a"), dict(now=now, a=failed_alert))
    ack_alert(app, failed_alert, actor="ops", comment="looking")  # one audit row
    return app


def state(app) -> dict:
    """Everything a bad command must leave alone."""
    with app.databases.begin("notify") as conn:
        alerts = conn.execute(text("SELECT * FROM notify.alerts ORDER BY id")).mappings().all()
        notes = conn.execute(text("SELECT * FROM notify.notifications ORDER BY id")).mappings().all()
        dests = conn.execute(text("SELECT * FROM notify.destinations ORDER BY id")).mappings().all()
    with app.databases.begin("admin_log") as conn:
        audit = conn.execute(text("SELECT * FROM admin_log.admin_events ORDER BY id")).mappings().all()
    return {"alerts": [dict(r) for r in alerts], "notifications": [dict(r) for r in notes],
            "destinations": [dict(r) for r in dests], "audit": [dict(r) for r in audit]}


@pytest.mark.parametrize("argv, named", [
    (["event", "clear", "--tenant", "acme", "--kind", "PAYMENT_FAILED"], "--tenant"),
    (["event", "clear", "--tenant", TENANT, "--base", "b-1", "--kind", "PAYMENT_FAILED"], "--base"),
    (["event", "clear", "--tenant", TENANT, "--kind", "NO_SUCH_EVENT"], "--kind"),
    (["event", "clear", "--tenant", UNKNOWN, "--kind", "PAYMENT_FAILED"], "no PAYMENT_FAILED alert was ever raised"),
    (["destinations", "remove", "not-a-uuid"], "ID"),
    (["destinations", "remove", UNKNOWN], "ID: no destination"),
    (["notifications", "retry", "not-a-uuid"], "ID"),
    (["notifications", "retry", UNKNOWN], "ID: no notification"),
    (["notifications", "--limit", "0"], "--limit"),
    (["notifications", "--limit", "lots"], "--limit"),
    (["partitions", "prune", "--keep-months", "-1"], "--keep-months"),
    (["alerts", "--limit", "0"], "--limit"),
])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(cli, populated, argv, named):
    before = state(populated)
    code, out, err = cli(*argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and named in err and "Traceback" not in err
    assert state(populated) == before


def test_notifyd_with_an_unknown_flag_exits_2_with_one_line_and_changes_nothing(populated, capsys):
    before = state(populated)
    with pytest.raises(SystemExit) as exit_:
        daemon.main(["--no-such-flag"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--no-such-flag" in err
    assert state(populated) == before


def test_version_prints_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"notifyctl {version('notify-engine')}"


def insert_alerts(app, count: int) -> None:
    with app.databases.begin("notify") as conn:
        conn.execute(text(
            "INSERT INTO notify.alerts (tenant_id, kind, severity, dedupe_key, first_seen_at, last_seen_at)"
            " SELECT :t, 'PAYMENT_FAILED', 'critical', 'k' || i, :now, :now - i * interval '1 second'"
            " FROM generate_series(1, :n) i"), dict(t=TENANT, now=app.clock.now(), n=count))


def test_alerts_prints_at_most_the_default_limit_and_says_more_match(cli, app):
    insert_alerts(app, 1001)
    code, out, err = cli("alerts", "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed) == 1000
    assert listed[0]["dedupe_key"] == "k1"  # newest activity first: the newest ones are kept
    assert "more match" in err and len(err.strip().splitlines()) == 1


def test_alerts_limit_caps_the_table_and_a_listing_within_it_says_nothing_more(cli, app):
    insert_alerts(app, 3)
    code, out, err = cli("alerts", "--limit", "2")
    assert code == 0 and len(out.strip().splitlines()) == 1 + 2 and "more match" in err
    code, out, err = cli("alerts", "--limit", "3", "--json")
    assert len(json.loads(out)) == 3 and err == ""


TIME_WITH_ZONE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def test_times_in_tables_and_show_carry_their_zone(cli, app):
    insert_alerts(app, 1)
    code, out, _ = cli("alerts")
    assert re.search(TIME_WITH_ZONE, out.splitlines()[1])
    alert_id = json.loads(cli("alerts", "--json")[1])[0]["id"]
    code, out, _ = cli("show", alert_id)
    [first_seen] = [line for line in out.splitlines() if line.startswith("first_seen_at ")]
    assert re.search(TIME_WITH_ZONE + "$", first_seen)


def test_show_prints_context_values_as_json(cli):
    context = {"invoice": "in_42", "amount_cents": 1900, "retry": True, "note": None, "lines": [{"sku": "a"}]}
    assert cli("event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED", "--context", json.dumps(context))[0] == 0
    alert_id = json.loads(cli("alerts", "--json")[1])[0]["id"]
    code, out, _ = cli("show", alert_id)
    [event_line] = [line for line in out.splitlines() if line.startswith("context.event ")]
    assert json.loads(event_line.split(None, 1)[1]) == context
    assert "True" not in out and "None" not in out and "'" not in event_line
