"""Acks that lapse (`ack --for`, escalation.ack_timeout) and escalation policies (spaced reminders,
steps taken once), against the suite's PostgreSQL and real HTTP receivers, time moved by the
engine's clock (issue 13, items 6 and 7)."""

from __future__ import annotations

import argparse
import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.alerts import ack_alert, clear_event, get_alert, raise_event
from engine.app import App
from engine.cli.alerts import show_command
from engine.config import (Config, EscalationConfig, EscalationMatchConfig, EscalationPolicyConfig,
                           EscalationStepConfig, EscalationTargetConfig, RouteConfig, load_config)
from engine.dispatcher import deliver_due
from engine.errors import ConfigError
from engine.jobs import plan_job
from engine.planner import plan_notifications
from tests.daemon_harness import start_daemon  # noqa: F401 - a fixture
from tests.delivery_support import TENANT, add_dest, insert_alert, notifications

HOUR = timedelta(hours=1)


@pytest.fixture
def hook_app(app):
    app.config.channels.webhook.allow_private_networks = True   # the receivers are on loopback
    app.config.delivery.reminder_interval = 0
    return app


def alert_row(app, alert_id) -> dict:
    with app.databases.begin("notify") as conn:
        return dict(conn.execute(text("SELECT * FROM notify.alerts WHERE id = :id"), {"id": alert_id}).mappings().one())


def rows(app, **where) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn, **where)


def audits(app, action: str) -> list[dict]:
    with app.databases.begin("admin_log") as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT action, target_type, target_id, diff FROM admin_log.admin_events WHERE action = :a "
            "ORDER BY occurred_at"), {"a": action}).mappings()]


def hook_types(receiver, path: str) -> list[str]:
    """Sorted: the sends of one delivery pass run concurrently, so their arrival order is not theirs."""
    return sorted(r.json()["type"] for r in receiver.received if r.path == path)


def payment_failed(app) -> str:
    """A PAYMENT_FAILED alert (critical), opened through the engine's event path."""
    return str(raise_event(app, TENANT, "PAYMENT_FAILED").alert_id)


def policy(*, severity=None, kind=None, reminders=None, steps=()) -> EscalationPolicyConfig:
    return EscalationPolicyConfig(
        match=EscalationMatchConfig(severity=severity, kind=kind), reminders=reminders,
        steps=[EscalationStepConfig(after=after, notify=EscalationTargetConfig(**target)) for after, target in steps])


# ------------------------------------------------------------------------------- item 6: acks


def test_an_ack_for_lapses_into_an_open_alert_that_is_audited_notified_once_and_reminded_again(hook_app, receiver):
    app = hook_app
    app.config.delivery.reminder_interval = 3600
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "webhook", receiver.url("/tenant"))
    alert_id = payment_failed(app)
    acked_at = app.clock.now()
    result = ack_alert(app, alert_id, actor="oncall", ack_for=4 * 3600)
    assert result.after == "ack" and "until" in result.message
    assert alert_row(app, alert_id)["ack_expires_at"] == acked_at + 4 * HOUR

    app.clock.advance(4 * HOUR - timedelta(seconds=1))
    plan_job(app)
    assert alert_row(app, alert_id)["status"] == "ack"              # no reminder while acked either
    assert rows(app, transition="reminder") == [] and audits(app, "ALERT_ACK_EXPIRED") == []

    app.clock.advance(timedelta(seconds=1))
    plan_job(app)
    plan_job(app)                                                   # a second tick finds nothing left
    alert = alert_row(app, alert_id)
    assert (alert["status"], alert["transition"], alert["transition_seq"]) == ("open", "ack_expired", 3)
    assert alert["acked_at"] is None and alert["ack_expires_at"] is None
    [audit] = audits(app, "ALERT_ACK_EXPIRED")
    assert (audit["target_type"], audit["target_id"]) == ("ALERT", alert_id)
    assert audit["diff"]["actor"] == "notify-engine" and audit["diff"]["before"]["acked_by"] == "oncall"
    [expired] = rows(app, transition="ack_expired")
    assert expired["transition_seq"] == 3
    deliver_due(app)
    assert hook_types(receiver, "/tenant") == sorted(["alert.opened", "alert.ack_expired"])

    # Reminders resume, on the clock of the lapse.
    app.clock.advance(HOUR)
    plan_job(app)
    assert [(r["transition_seq"], r["reminder_no"]) for r in rows(app, transition="reminder")] == [(3, 1)]


def test_a_resolve_while_acked_is_still_notified_and_a_lapse_after_it_changes_nothing(hook_app, receiver):
    app = hook_app
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "webhook", receiver.url("/tenant"))
    alert_id = payment_failed(app)
    ack_alert(app, alert_id, actor="oncall", ack_for=3600)
    assert clear_event(app, TENANT, "PAYMENT_FAILED").changed      # the payment went through while acked
    app.clock.advance(2 * HOUR)
    plan_job(app)
    deliver_due(app)
    assert alert_row(app, alert_id)["status"] == "resolved"
    assert hook_types(receiver, "/tenant") == sorted(["alert.opened", "alert.resolved"])
    assert audits(app, "ALERT_ACK_EXPIRED") == []


def test_the_default_ack_timeout_applies_per_severity_and_none_unless_set(hook_app):
    app = hook_app
    app.config.escalation = EscalationConfig(ack_timeout={"critical": 1800})
    with app.databases.begin("notify") as conn:
        warn = insert_alert(conn, app.clock.now(), severity="warn")
    critical = payment_failed(app)
    ack_alert(app, warn, actor="oncall")
    ack_alert(app, critical, actor="oncall")
    assert alert_row(app, warn)["ack_expires_at"] is None
    assert alert_row(app, critical)["ack_expires_at"] == app.clock.now() + timedelta(minutes=30)
    [audit] = [a for a in audits(app, "ALERT_ACK") if a["target_id"] == critical]
    assert audit["diff"]["after"]["ack_expires_at"] == (app.clock.now() + timedelta(minutes=30)).isoformat()
    app.clock.advance(HOUR)
    plan_job(app)
    assert (alert_row(app, warn)["status"], alert_row(app, critical)["status"]) == ("ack", "open")


def test_an_ack_that_lapses_while_postgresql_is_down_reopens_once_when_it_is_back(hook_app, pg_server, database_urls):
    app = hook_app
    alert_id = payment_failed(app)
    ack_alert(app, alert_id, actor="oncall", ack_for=3600)
    app.clock.advance(2 * HOUR)                 # the ack runs out during the outage
    cluster = pg_server.cluster
    if cluster is not None:
        cluster.stop()
        try:
            with pytest.raises(Exception):
                plan_job(app)                   # the tick during the outage fails and changes nothing
        finally:
            if not cluster.is_running():
                cluster._start()
    else:
        # An external server is not ours to restart: cut every session of the test's database.
        import psycopg

        with psycopg.connect(database_urls["notify"], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    plan_job(app)
    plan_job(app)
    assert alert_row(app, alert_id)["transition"] == "ack_expired"
    assert len(audits(app, "ALERT_ACK_EXPIRED")) == 1


# ---------------------------------------------------------------------- item 7: reminders


def test_reminders_space_out_per_the_policy_and_a_late_tick_plans_only_the_latest(hook_app):
    app = hook_app
    app.config.delivery.reminder_interval = 3600
    app.config.escalation = EscalationConfig(policies=[policy(severity=["critical"], reminders=[3600, 4 * 3600, 86400])])
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "webhook", "https://hooks.example.com/a")
        warn = insert_alert(conn, app.clock.now(), severity="warn")   # no policy: every hour
    critical = payment_failed(app)
    due = []
    for hours in (1, 4, 5, 28, 29, 53, 77):
        app.clock.advance(timedelta(hours=hours) - (app.clock.now() - alert_row(app, critical)["transition_at"]))
        plan_job(app)
        due.append([r["reminder_no"] for r in rows(app, transition="reminder") if str(r["alert_id"]) == critical])
    # 1h, then 4h later (5h), then 24h later (29h), then daily (53h, 77h).
    assert due == [[1], [1], [1, 2], [1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 5]]
    assert [r["reminder_no"] for r in rows(app, transition="reminder") if str(r["alert_id"]) == warn][-1] == 77

    # A daemon down from 77h to 200h plans one reminder (the latest due), not five.
    app.clock.advance(timedelta(hours=123))
    plan_job(app)
    assert [r["reminder_no"] for r in rows(app, transition="reminder") if str(r["alert_id"]) == critical][-2:] == [5, 10]


# -------------------------------------------------------------------------- item 7: steps


@pytest.fixture
def escalating(hook_app, receiver):
    """Critical alerts escalate: after 30m to the ops route (reached by nothing else), after 2h to
    the tenant's destinations tagged `management`; the tenant's own destination gets the rest."""
    app = hook_app
    app.config.routes = [RouteConfig(name="ops-oncall", channel="webhook", target=receiver.url("/ops"),
                                     escalation_only=True)]
    app.config.escalation = EscalationConfig(policies=[
        policy(severity="critical", reminders=[], steps=[(1800, {"route": "ops-oncall"}), (7200, {"tag": "management"})])])
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "webhook", receiver.url("/tenant"))
        management = add_dest(conn, app.clock.now(), "webhook", receiver.url("/management"), min_severity="critical")
        conn.execute(text("UPDATE notify.destinations SET tags = '{management}' WHERE id = :id"), {"id": management})
    return app


def steps_taken(app) -> list[tuple]:
    with app.databases.begin("notify") as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT step_no, target FROM notify.alert_escalations ORDER BY step_no"))]


def test_steps_notify_their_route_then_the_tagged_destinations_each_once(escalating, receiver):
    app = escalating
    alert_id = payment_failed(app)
    deliver_due(app)
    # The management destination takes critical alerts too: it hears the opening; ops does not.
    assert (hook_types(receiver, "/tenant"), hook_types(receiver, "/ops")) == (["alert.opened"], [])

    app.clock.advance(timedelta(minutes=29))
    plan_job(app)
    assert steps_taken(app) == []
    app.clock.advance(timedelta(minutes=1))
    plan_job(app)
    plan_job(app)
    deliver_due(app)
    assert steps_taken(app) == [(1, "route:ops-oncall")]
    [step] = rows(app, transition="escalation")
    assert (step["route_key"], step["reminder_no"], step["status"]) == ("route:ops-oncall", -1, "sent")
    [hook] = [r for r in receiver.received if r.path == "/ops"]
    assert (hook.json()["type"], hook.json()["data"]["alert"]["id"]) == ("alert.escalation", alert_id)

    app.clock.advance(timedelta(minutes=90))
    plan_job(app)
    deliver_due(app)
    assert steps_taken(app) == [(1, "route:ops-oncall"), (2, "tag:management")]
    assert hook_types(receiver, "/management") == sorted(["alert.opened", "alert.escalation"])
    assert hook_types(receiver, "/tenant") == ["alert.opened"]      # untagged: no escalation
    app.clock.advance(timedelta(days=3))
    plan_job(app)
    assert len(rows(app, transition="escalation")) == 2


def test_an_ack_stops_escalation_and_a_lapsed_ack_resumes_it_without_repeating_steps(escalating):
    app = escalating
    alert_id = payment_failed(app)
    app.clock.advance(timedelta(minutes=30))
    plan_job(app)                                                   # step 1 taken
    ack_alert(app, alert_id, actor="oncall", ack_for=3 * 3600)
    app.clock.advance(timedelta(hours=2, minutes=59))
    plan_job(app)
    assert steps_taken(app) == [(1, "route:ops-oncall")]            # acked: no step 2
    app.clock.advance(timedelta(minutes=1))
    plan_job(app)                                                   # the ack lapses: open again
    assert alert_row(app, alert_id)["transition"] == "ack_expired"
    app.clock.advance(timedelta(hours=2))
    plan_job(app)
    assert steps_taken(app) == [(1, "route:ops-oncall"), (2, "tag:management")]
    assert [r["reminder_no"] for r in rows(app, transition="escalation")] == [-1, -2]


def test_two_planners_racing_take_each_step_once(escalating):
    app = escalating
    with app.databases.begin("notify") as conn:
        alerts = [insert_alert(conn, app.clock.now(), kind="PAYMENT_FAILED", severity="critical") for _ in range(20)]
        plan_notifications(conn, app.config, app.clock.now())
    app.clock.advance(3 * HOUR)
    barrier = threading.Barrier(2)
    errors = []

    def tick():
        try:
            with app.databases.begin("notify") as conn:
                barrier.wait(10)
                plan_notifications(conn, app.config, app.clock.now())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    escalations = rows(app, transition="escalation")
    # Per alert: step 1 to the ops route, step 2 to the one management destination.
    assert len(escalations) == 2 * len(alerts)
    assert len({(r["alert_id"], r["reminder_no"]) for r in escalations}) == 2 * len(alerts)
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.alert_escalations")).scalar_one() == 2 * len(alerts)


def test_a_step_due_while_notifyd_was_stopped_happens_once_after_the_start(escalating, receiver, clock):
    app = escalating
    alert_id = payment_failed(app)
    deliver_due(app)
    # notifyd stops before step 1 (30m) is due and starts again after step 2 (2h) is due.
    clock.advance(timedelta(hours=5))
    for _ in range(2):                          # the restarted daemon, and a second copy next to it
        with App(app.config, clock) as started:
            plan_job(started)
            deliver_due(started)
    assert steps_taken(app) == [(1, "route:ops-oncall"), (2, "tag:management")]
    assert hook_types(receiver, "/ops") == ["alert.escalation"]
    assert hook_types(receiver, "/management") == sorted(["alert.opened", "alert.escalation"])
    assert str(rows(app, transition="escalation")[0]["alert_id"]) == alert_id


def test_a_resolved_alert_that_reopens_escalates_again(escalating):
    app = escalating
    payment_failed(app)
    app.clock.advance(timedelta(minutes=30))
    plan_job(app)
    clear_event(app, TENANT, "PAYMENT_FAILED")
    payment_failed(app)                         # re-opened: a new episode
    app.clock.advance(timedelta(minutes=30))
    plan_job(app)
    assert [r["reminder_no"] for r in rows(app, transition="escalation")] == [-1, -1]


def test_an_escalation_queued_before_an_ack_is_not_sent_after_it(escalating, receiver):
    app = escalating
    alert_id = payment_failed(app)
    app.clock.advance(timedelta(minutes=30))
    plan_job(app)
    ack_alert(app, alert_id, actor="oncall")
    deliver_due(app)
    [step] = rows(app, transition="escalation")
    assert (step["status"], step["error"]) == ("skipped", "alert is ack; escalation dropped")
    assert hook_types(receiver, "/ops") == []


def test_show_lists_steps_taken_the_next_step_and_the_next_reminder(escalating, capsys):
    app = escalating
    app.config.escalation.policies[0].reminders = [3600, 4 * 3600]
    alert_id = payment_failed(app)
    opened = app.clock.now()
    app.clock.advance(timedelta(minutes=45))
    plan_job(app)
    escalation = get_alert(app, alert_id)["escalation"]
    assert escalation["steps_taken"] == [{"step_no": 1, "taken_at": opened + timedelta(minutes=45),
                                          "target": "route:ops-oncall", "notifications": 1}]
    assert escalation["next_step"] == {"step": 2, "due_at": opened + 2 * HOUR, "target": "tag:management"}
    assert escalation["next_reminder"] == {"reminder_no": 1, "due_at": opened + HOUR}

    assert show_command(app, argparse.Namespace(alert_id=alert_id, json=True)) == 0
    shown = json.loads(capsys.readouterr().out)["escalation"]
    assert shown["steps_taken"][0]["target"] == "route:ops-oncall" and shown["next_step"]["step"] == 2
    assert show_command(app, argparse.Namespace(alert_id=alert_id, json=False)) == 0
    out = capsys.readouterr().out
    assert "escalation step 1 taken 2026-11-25 12:45:00 UTC: route:ops-oncall (1 notifications)" in out
    assert "next escalation step: 2 due 2026-11-25 14:00:00 UTC: tag:management" in out
    assert "next reminder: 1 due 2026-11-25 13:00:00 UTC" in out

    ack_alert(app, alert_id, actor="oncall")
    escalation = get_alert(app, alert_id)["escalation"]
    assert (escalation["next_step"], escalation["next_reminder"]) == (None, None)   # acked: nothing due


# -------------------------------------------------------------------------------- config


@pytest.mark.parametrize("yaml_text, message", [
    ("escalation:\n  ack_timeout: {urgent: 4h}\n", "escalation.ack_timeout.urgent: expected a severity"),
    ("escalation:\n  ack_timeout: {critical: 0}\n", "escalation.ack_timeout.critical: must be longer than 0s"),
    ("escalation:\n  policies:\n    - steps: [{after: 30m, notify: {route: nowhere}}]\n",
     "escalation.policies[0].steps[0].notify.route: no route 'nowhere' in routes"),
    ("escalation:\n  policies:\n    - steps: [{after: 30m, notify: {}}]\n",
     "escalation.policies[0].steps[0].notify: expected exactly one of route or tag"),
    ("escalation:\n  policies:\n    - steps: [{after: 2h, notify: {tag: a}}, {after: 1h, notify: {tag: b}}]\n",
     "escalation.policies[0].steps[1].after: steps must come later one after another"),
    ("escalation:\n  policies:\n    - {match: {kind: NOPE}}\n", "escalation.policies[0].match.kind: unknown kind 'NOPE'"),
    ("escalation:\n  policies:\n    - {reminders: [1h, 0s]}\n", "escalation.policies[0].reminders[1]: must be longer than 0s"),
])
def test_a_bad_escalation_setting_names_the_file_and_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_the_documented_escalation_example_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("""
routes:
  - {name: ops-oncall, channel: webhook, target: "https://ops.example.com/page", escalation_only: true}
escalation:
  ack_timeout: {critical: 4h}
  policies:
    - match: {severity: critical, kind: [PAYMENT_FAILED, WALLET_LOW]}
      reminders: [1h, 4h, 24h]
      steps:
        - {after: 30m, notify: {route: ops-oncall}}
        - {after: 2h, notify: {tag: management}}
""")
    config: Config = load_config(path)
    [p] = config.escalation.policies
    assert (p.match.severity, p.match.kind, p.reminders) == (["critical"], ["PAYMENT_FAILED", "WALLET_LOW"],
                                                             [3600, 14400, 86400])
    assert config.escalation.ack_timeout == {"critical": 14400}


# ----------------------------------------------------------------------------------- notifyctl


@pytest.fixture
def cli(config_file, capsys):
    from engine.cli import main

    path = str(config_file("delivery: {reminder_interval: 0}\n"))

    def run(*argv):
        code = main([*argv, "--config", path])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_notifyctl_ack_for_lapses_on_the_next_run_once_and_show_says_so(cli, databases):
    from freezegun import freeze_time

    with freeze_time("2026-11-25 12:00:00"):
        assert cli("event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED")[0] == 0
        [alert] = json.loads(cli("alerts", "--json")[1])
        code, out, _ = cli("ack", alert["id"], "--for", "4h", "--actor", "alice")
        assert code == 0 and "open -> ack until 2026-11-25T16:00:00+00:00" in out
        assert json.loads(cli("show", alert["id"], "--json")[1])["ack_expires_at"] == "2026-11-25T16:00:00+00:00"
    with freeze_time("2026-11-25 16:00:01"):
        assert cli("run-once")[0] == 0
        shown = json.loads(cli("show", alert["id"], "--json")[1])
    assert (shown["status"], shown["transition"], shown["acked_by"]) == ("open", "ack_expired", None)
    with databases.begin("admin_log") as conn:
        actions = [r[0] for r in conn.execute(text(
            "SELECT action FROM admin_log.admin_events WHERE target_id = :id ORDER BY occurred_at"), {"id": alert["id"]})]
    assert actions == ["ALERT_ACK", "ALERT_ACK_EXPIRED"]


@pytest.mark.parametrize("value, reason", [("soon", "--for: expected a duration such as 30s"),
                                           ("0", "--for: must be longer than 0s")])
def test_notifyctl_ack_for_refuses_a_bad_duration_with_exit_2(cli, value, reason):
    assert cli("event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED")[0] == 0
    [alert] = json.loads(cli("alerts", "--json")[1])
    code, out, err = cli("ack", alert["id"], "--for", value)
    assert code == 2 and reason in err and len(err.strip().splitlines()) == 1
    assert json.loads(cli("show", alert["id"], "--json")[1])["status"] == "open"


def test_notifyctl_destinations_add_takes_tags_repeated_or_comma_separated(cli):
    code, out, _ = cli("destinations", "add", "--tenant", TENANT, "--channel", "email", "--target", "boss@example.com",
                       "--tag", "management", "--tag", "finance,management")
    assert code == 0
    [dest] = json.loads(cli("destinations", "list", "--json")[1])
    assert dest["tags"] == ["management", "finance"]
    code, _, err = cli("destinations", "add", "--tenant", TENANT, "--channel", "email", "--target", "x@example.com",
                       "--tag", "no spaces")
    assert code == 2 and "--tag:" in err


@pytest.mark.four_databases
def test_a_lapse_is_audited_in_admin_log_when_it_is_its_own_database(hook_app):
    app = hook_app
    alert_id = payment_failed(app)
    ack_alert(app, alert_id, actor="oncall", ack_for=60)
    app.clock.advance(HOUR)
    plan_job(app)
    assert [a["target_id"] for a in audits(app, "ALERT_ACK_EXPIRED")] == [alert_id]
    assert alert_row(app, alert_id)["status"] == "open"


# ------------------------------------------------------------------------- the real notifyd


def test_a_step_due_while_notifyd_is_stopped_is_taken_once_by_the_daemons_started_after(
        start_daemon, database_urls, receiver):
    import psycopg
    from cryptography.fernet import Fernet

    from tests.daemon_harness import wait_for
    from tests.test_end_to_end import all_sent, daemon_yaml, raise_events

    yaml = daemon_yaml(Fernet.generate_key().decode(), routes=f"""\
routes:
  - {{name: ops-oncall, channel: webhook, target: '{receiver.url("/ops")}', escalation_only: true}}
escalation:
  policies:
    - match: {{severity: critical}}
      reminders: []
      steps:
        - {{after: 30m, notify: {{route: ops-oncall}}}}
""")
    first = start_daemon(yaml)
    first.wait_healthy()
    raise_events(first.config_path, [TENANT])          # critical; only the escalation route would hear it
    assert first.stop() == 0
    # Time goes by while notifyd is stopped: by the next start, the alert has been open for 31 minutes.
    with psycopg.connect(database_urls["notify"]) as conn:
        conn.execute("UPDATE notify.alerts SET transition_at = transition_at - interval '31 minutes'")
    copies = [start_daemon(yaml, name=f"notifyd-{i}") for i in (2, 3)]   # two copies race for the step
    [sent] = wait_for(lambda: all_sent(database_urls, 1, "n.transition = 'escalation'"), "the step's webhook sent")

    def plan_ticks_since_sent() -> bool:
        with psycopg.connect(database_urls["notify"]) as conn:
            return conn.execute("SELECT count(*) FROM notify.job_runs WHERE job_name = 'plan' AND status = 'ok'"
                                " AND started_at > %s", (sent["created_at"],)).fetchone()[0] >= 3

    wait_for(plan_ticks_since_sent, "three more plan ticks")
    assert [d.stop() for d in copies] == [0, 0]
    assert [r.json()["type"] for r in receiver.received if r.path == "/ops"] == ["alert.escalation"]
    with psycopg.connect(database_urls["notify"]) as conn:
        assert conn.execute("SELECT count(*) FROM notify.notifications").fetchone()[0] == 1
        assert conn.execute("SELECT step_no, target FROM notify.alert_escalations").fetchall() == [(1, "route:ops-oncall")]


def test_two_ticks_racing_expire_each_lapsed_ack_once(hook_app):
    from engine.alerts import expire_acks

    app = hook_app
    alerts = [payment_failed(app)]
    with app.databases.begin("notify") as conn:
        alerts += [insert_alert(conn, app.clock.now(), severity="critical") for _ in range(30)]
    for alert_id in alerts:
        ack_alert(app, alert_id, actor="oncall", ack_for=60)
    app.clock.advance(HOUR)
    counts, errors = [], []

    def tick():
        try:
            counts.append(expire_acks(app))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sum(counts) == len(alerts)
    assert len(audits(app, "ALERT_ACK_EXPIRED")) == len(alerts)
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.alerts WHERE transition_seq <> 3")).scalar_one() == 0


def test_the_first_matching_policy_wins_and_a_kind_not_known_here_matches_policies_naming_no_kind(hook_app):
    app = hook_app
    app.config.delivery.reminder_interval = 0
    app.config.escalation = EscalationConfig(policies=[
        policy(kind=["PAYMENT_FAILED"], reminders=[7200]),             # PAYMENT_FAILED: every 2h
        policy(severity=["critical"], reminders=[3600])])               # other critical alerts: hourly
    with app.databases.begin("notify") as conn:
        add_dest(conn, app.clock.now(), "webhook", "https://hooks.example.com/a")
        custom = insert_alert(conn, app.clock.now(), kind="CUSTOM_KIND", severity="critical")
        warn = insert_alert(conn, app.clock.now(), severity="warn")    # no policy, no fixed interval
    payment = payment_failed(app)
    app.clock.advance(HOUR)
    plan_job(app)
    assert {str(r["alert_id"]) for r in rows(app, transition="reminder")} == {custom}
    app.clock.advance(HOUR)
    plan_job(app)
    reminded = [str(r["alert_id"]) for r in rows(app, transition="reminder")]
    assert sorted(reminded) == sorted([custom, custom, payment]) and warn not in reminded


def test_a_lost_step_cursor_takes_no_step_twice(escalating):
    app = escalating
    payment_failed(app)
    app.clock.advance(3 * HOUR)
    plan_job(app)
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT steps_taken FROM notify.alert_delivery_plans")).scalar_one() == 2
        conn.execute(text("DELETE FROM notify.alert_delivery_plans"))   # the cursor is only a shortcut
    app.clock.advance(HOUR)
    plan_job(app)
    plan_job(app)
    assert len(rows(app, transition="escalation")) == 2
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT steps_taken FROM notify.alert_delivery_plans")).scalar_one() == 2
