"""Silences and inhibition (issue 15, items 4, 5 and 7): what the planner records while a silence
is in force or an inhibiting alert is open, the notice when a silence ends, the CLI and the
accounting in `show` / `notifications`. Real PostgreSQL, the engine's clock."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from engine import metrics
from engine.alerts import ack_alert, clear_event, raise_event
from engine.cli import main
from engine.collectors.push import record_snapshots
from engine.config import InhibitRuleConfig, load_config
from engine.detect import run_detection
from engine.errors import BadInput, ConfigError
from engine.jobs import plan_job
from engine.silences import add_silence, expire_silence, list_silences, parse_match
from tests.delivery_support import TENANT, notifications
from tests.noise_support import with_mail_destinations

OTHER = "6f1c2d3e-0000-4000-8000-000000000002"
BASE = "6f1c2d3e-0000-4000-8000-00000000b001"
HOUR = timedelta(hours=1)


@pytest.fixture
def silence_app(app):
    return with_mail_destinations(app, OTHER)


def rows(app, **where) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return notifications(conn, **where)


def silence(app, match: str, *, hours: float = 2, starts_in: timedelta = timedelta(0), comment="maintenance"):
    return add_silence(app, parse_match([match]), duration=hours * 3600, comment=comment, actor="oncall",
                       starts_at=app.clock.now() + starts_in if starts_in else None)


def payment_failed(app, tenant=TENANT):
    return str(raise_event(app, tenant, "PAYMENT_FAILED").alert_id)


def suppressed_count(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("notify_notifications_suppressed_total", {"reason": reason}) or 0


# ------------------------------------------------------------------------------ silences


def test_a_silence_suppresses_the_transitions_of_the_alerts_it_matches_and_records_its_id(silence_app, clock):
    app = silence_app
    ident = silence(app, f"tenant={TENANT},kind=PAYMENT_FAILED")
    before = suppressed_count("silence")
    alert = payment_failed(app)
    other = payment_failed(app, tenant=OTHER)
    mine = rows(app, alert_id=__import__("uuid").UUID(alert))
    assert [(r["transition"], r["status"], r["suppressed_by"]) for r in mine] == [
        ("opened", "suppressed", f"silence:{ident}")]
    assert [r["status"] for r in rows(app) if str(r["alert_id"]) == other] == ["queued"]   # not matched
    # Alerts keep opening and resolving while silenced: the resolve is recorded too.
    clock.advance(timedelta(minutes=5))
    clear_event(app, TENANT, "PAYMENT_FAILED")
    assert [(r["transition"], r["status"]) for r in rows(app) if str(r["alert_id"]) == alert] == [
        ("opened", "suppressed"), ("resolved", "suppressed")]
    assert suppressed_count("silence") - before == 2


def test_a_pending_silence_suppresses_nothing_until_it_starts(silence_app, clock):
    app = silence_app
    ident = silence(app, f"tenant={TENANT}", starts_in=HOUR)
    assert list_silences(app)[0]["state"] == "pending"
    payment_failed(app)
    assert [r["status"] for r in rows(app)] == ["queued"]
    clock.advance(HOUR)
    clear_event(app, TENANT, "PAYMENT_FAILED")   # now in force
    assert [(r["transition"], r["status"], r["suppressed_by"]) for r in rows(app)] == [
        ("opened", "queued", None), ("resolved", "suppressed", f"silence:{ident}")]


def test_a_regex_matcher_is_anchored(silence_app):
    app = silence_app
    ident = silence(app, f"tenant={TENANT},kind=~PAYMENT")   # not PAYMENT_FAILED: anchored
    payment_failed(app)
    assert [r["status"] for r in rows(app)] == ["queued"]
    expire_silence(app, str(ident), actor="oncall")
    second = silence(app, f"tenant={TENANT},kind=~PAYMENT_.*")
    clear_event(app, TENANT, "PAYMENT_FAILED")
    # The queued row too: a silence in force suppresses what is still queued.
    assert [(r["status"], r["suppressed_by"]) for r in rows(app)] == [("suppressed", f"silence:{second}")] * 2


def test_a_silence_in_force_suppresses_rows_already_queued(silence_app):
    app = silence_app
    payment_failed(app)
    ident = silence(app, f"tenant={TENANT}")
    assert [(r["status"], r["suppressed_by"]) for r in rows(app)] == [("suppressed", f"silence:{ident}")]


def test_a_silence_in_force_suppresses_rows_held_for_their_group(silence_app):
    from engine.config import RouteConfig

    app = silence_app
    # An ops route's default group_wait (30s) holds its row; a silence added meanwhile wins.
    app.config.routes = [RouteConfig(name="ops", channel="email", target="noc@example.com")]
    payment_failed(app)
    assert sorted(r["status"] for r in rows(app)) == ["held", "queued"]
    ident = silence(app, f"tenant={TENANT}")
    assert [(r["status"], r["suppressed_by"]) for r in rows(app)] == [("suppressed", f"silence:{ident}")] * 2


def test_a_silence_that_begins_while_a_row_is_held_suppresses_it_at_its_release(silence_app, clock):
    from engine.config import RouteConfig
    from engine.noise import release_job

    app = silence_app
    app.config.routes = [RouteConfig(name="ops", channel="email", target="noc@example.com")]   # group_wait 30s
    payment_failed(app)
    ident = silence(app, f"tenant={TENANT}", starts_in=timedelta(seconds=10))   # a maintenance window
    assert sorted(r["status"] for r in rows(app)) == ["held", "queued"]
    clock.advance(timedelta(seconds=31))
    release_job(app)
    assert sorted((r["status"], r["suppressed_by"]) for r in rows(app)) == [
        ("queued", None), ("suppressed", f"silence:{ident}")]


def test_reminders_and_escalation_steps_planned_while_silenced_are_suppressed(silence_app, clock):
    from engine.config import (EscalationConfig, EscalationPolicyConfig, EscalationStepConfig,
                               EscalationTargetConfig, RouteConfig)

    app = silence_app
    app.config.routes = [RouteConfig(name="oncall", channel="email", target="oncall@example.com",
                                     escalation_only=True)]
    app.config.escalation = EscalationConfig(policies=[EscalationPolicyConfig(reminders=[3600], steps=[
        EscalationStepConfig(after=1800, notify=EscalationTargetConfig(route="oncall"))])])
    ident = silence(app, f"tenant={TENANT}", hours=5)
    payment_failed(app)
    clock.advance(HOUR)
    plan_job(app)
    assert sorted((r["transition"], r["route_key"].split(":")[0], r["status"], r["suppressed_by"])
                  for r in rows(app)) == [
        ("escalation", "route", "suppressed", f"silence:{ident}"), ("opened", "dest", "suppressed", f"silence:{ident}"),
        ("reminder", "dest", "suppressed", f"silence:{ident}")]
    with app.databases.begin("notify") as conn:   # the step counts as taken: not taken again after the silence
        assert conn.execute(text("SELECT count(*) FROM notify.alert_escalations")).scalar() == 1


def test_when_a_silence_ends_the_still_open_alert_is_notified_once(silence_app, clock):
    app = silence_app
    ident = silence(app, f"tenant={TENANT}", hours=2)
    still_open = payment_failed(app)
    resolved = str(raise_event(app, TENANT, "PAYMENT_FAILED", base_id=BASE).alert_id)
    clear_event(app, TENANT, "PAYMENT_FAILED", base_id=BASE)
    clock.advance(HOUR)
    assert plan_job(app) == 0   # still in force: nothing yet
    clock.advance(HOUR)         # the silence runs out
    assert plan_job(app) == 1
    notices = rows(app, transition="silence_ended")
    assert [(str(n["alert_id"]), n["status"]) for n in notices] == [(still_open, "queued")]
    assert not [r for r in rows(app) if str(r["alert_id"]) == resolved and r["status"] != "suppressed"]
    clock.advance(timedelta(minutes=1))
    assert plan_job(app) == 0   # once
    assert len(rows(app, transition="silence_ended")) == 1
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.silence_notices WHERE silence_id = :s"),
                            {"s": ident}).scalar() == 1


def test_an_expired_silence_notifies_open_alerts_but_not_acked_ones(silence_app, clock):
    app = silence_app
    ident = silence(app, f"tenant={TENANT}")
    open_alert = payment_failed(app)
    acked = str(raise_event(app, TENANT, "PAYMENT_FAILED", base_id=BASE).alert_id)
    ack_alert(app, acked, actor="oncall")
    assert expire_silence(app, str(ident), actor="oncall") is True
    assert expire_silence(app, str(ident), actor="oncall") is False
    plan_job(app)
    assert [str(n["alert_id"]) for n in rows(app, transition="silence_ended")] == [open_alert]


def test_two_planners_racing_after_a_silence_ends_notify_once(silence_app, clock):
    app = silence_app
    silence(app, f"tenant={TENANT}", hours=1)
    for base in (None, BASE):
        raise_event(app, TENANT, "PAYMENT_FAILED", base_id=base)
    clock.advance(HOUR)
    barrier = threading.Barrier(2)
    planned, errors = [], []

    def tick():
        try:
            barrier.wait(timeout=30)
            planned.append(plan_job(app))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(planned) == [0, 2]
    assert len(rows(app, transition="silence_ended")) == 2


def test_a_notice_is_itself_suppressed_while_another_silence_holds_the_alert(silence_app, clock):
    app = silence_app
    first = silence(app, f"tenant={TENANT}", hours=1)
    clock.advance(timedelta(minutes=1))
    second = silence(app, "kind=PAYMENT_FAILED", hours=3)
    payment_failed(app)
    assert rows(app)[0]["suppressed_by"] == f"silence:{first}"   # the earliest
    clock.advance(HOUR)
    plan_job(app)
    assert [(n["status"], n["suppressed_by"]) for n in rows(app, transition="silence_ended")] == [
        ("suppressed", f"silence:{second}")]
    clock.advance(2 * HOUR)
    plan_job(app)
    assert [n["status"] for n in rows(app, transition="silence_ended")] == ["suppressed", "queued"]


# ---------------------------------------------------------------------------- inhibition


def record(app, value, base=BASE):
    assert record_snapshots(app, [{"tenant_id": TENANT, "base_id": base, "metric": "runs_used",
                                   "value": value}]).written == 1


def statuses_by_severity(app) -> dict:
    with app.databases.begin("notify") as conn:
        found = conn.execute(text(
            "SELECT a.severity::text AS severity, n.transition, n.status, n.suppressed_by FROM notify.notifications n "
            "JOIN notify.alerts a ON a.tenant_id = n.tenant_id AND a.id = n.alert_id ORDER BY n.created_at")).all()
    return [(r.severity, r.transition, r.status, r.suppressed_by) for r in found]


def alert_id_of(app, severity):
    with app.databases.begin("notify") as conn:
        return conn.execute(text("SELECT id FROM notify.alerts WHERE severity = CAST(:s AS public.sev_level)"),
                            {"s": severity}).scalar_one()


def test_an_open_critical_quota_alert_suppresses_the_warn_alert_of_the_same_metric_and_base(silence_app):
    app = silence_app
    before = suppressed_count("inhibition")
    record(app, 1200)           # 80 % and 100 % in one pass
    run_detection(app)
    critical = alert_id_of(app, "critical")
    assert sorted(statuses_by_severity(app)) == [
        ("critical", "opened", "queued", None),
        ("warn", "opened", "suppressed", f"inhibition:quota-critical-mutes-warn:{critical}")]
    assert suppressed_count("inhibition") - before == 1


def test_the_warn_alert_is_notified_when_no_critical_alert_is_open(silence_app, clock):
    app = silence_app
    record(app, 850)
    run_detection(app)
    assert statuses_by_severity(app) == [("warn", "opened", "queued", None)]
    other_base = "6f1c2d3e-0000-4000-8000-00000000b002"
    record(app, 1200, base=other_base)   # another base's critical holds down only that base's warn
    run_detection(app)
    with app.databases.begin("notify") as conn:
        critical = conn.execute(text("SELECT id FROM notify.alerts WHERE severity = 'critical'")).scalar_one()
    assert sorted(statuses_by_severity(app), key=str) == sorted([
        ("warn", "opened", "queued", None), ("critical", "opened", "queued", None),
        ("warn", "opened", "suppressed", f"inhibition:quota-critical-mutes-warn:{critical}")], key=str)


def test_inhibit_rules_are_configurable_and_an_empty_list_turns_them_off(silence_app, tmp_path, database_urls):
    app = silence_app
    app.config.inhibit_rules = []
    record(app, 1200)
    run_detection(app)
    # Neither suppressed: both sent, in one message (same tenant and kind: one group, issue 15).
    assert [s for _, _, s, _ in statuses_by_severity(app)] == ["grouped", "grouped"]
    path = tmp_path / "c.yaml"
    path.write_text("inhibit_rules:\n  - name: pay\n    source_matchers: {kind: PAYMENT_FAILED}\n"
                    "    target_matchers: {severity: [warn, info]}\n")
    rules = load_config(path).inhibit_rules
    assert rules == [InhibitRuleConfig(name="pay", source_matchers={"kind": ["PAYMENT_FAILED"]},
                                       target_matchers={"severity": ["warn", "info"]}, equal=[])]
    path.write_text("inhibit_rules:\n  - name: x\n    target_matchers: {tenant: abc}\n")
    with pytest.raises(ConfigError, match=r"inhibit_rules\[0\].target_matchers.tenant: unknown label"):
        load_config(path)
    (tmp_path / "d.yaml").write_text("{}\n")
    assert load_config(tmp_path / "d.yaml").inhibit_rules[0].name == "quota-critical-mutes-warn"


# ------------------------------------------------------------------------------------ CLI


def run_cli(config_file, capsys, *argv):
    from freezegun import freeze_time

    with freeze_time("2026-11-25 12:00:00"):   # the app fixture's clock: the CLI reads the system's
        code = main(["--config", str(config_file()), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_silence_add_list_expire_from_the_cli_are_audited(silence_app, config_file, capsys, database_urls):
    app = silence_app
    payment_failed(app)
    code, out, err = run_cli(config_file, capsys, "silence", "add", "--match", f"tenant={TENANT},kind=PAYMENT_FAILED",
                             "--for", "2h", "--comment", "db upgrade", "--actor", "alice")
    assert (code, err) == (0, "")
    ident = out.strip()
    code, out, _ = run_cli(config_file, capsys, "silence", "list")
    assert code == 0 and ident in out and "active" in out and "db upgrade" in out
    assert out.splitlines()[0].split()[:3] == ["ID", "STATE", "MATCH"]
    code, out, _ = run_cli(config_file, capsys, "silence", "list", "--json")
    listed = json.loads(out)
    assert [(s["id"], s["state"], s["created_by"], s["comment"]) for s in listed] == [
        (ident, "active", "alice", "db upgrade")]
    assert listed[0]["matchers"] == [{"name": "tenant", "value": TENANT, "isRegex": False, "isEqual": True},
                                     {"name": "kind", "value": "PAYMENT_FAILED", "isRegex": False, "isEqual": True}]
    assert listed[0]["suppressed"] == 1   # the alert's queued row
    code, out, _ = run_cli(config_file, capsys, "silence", "expire", ident, "--actor", "bob")
    assert (code, out.strip()) == (0, f"silence {ident} expired")
    code, out, _ = run_cli(config_file, capsys, "silence", "list", "--json")
    assert json.loads(out) == []
    code, out, _ = run_cli(config_file, capsys, "silence", "list", "--all", "--json")
    assert [(s["state"], s["expired_by"]) for s in json.loads(out)] == [("expired", "bob")]
    with app.databases.begin("admin_log") as conn:
        audits = conn.execute(text("SELECT action, target_type, target_id, tenant_id::text, comment, diff "
                                   "FROM admin_log.admin_events ORDER BY occurred_at, action")).all()
    assert [(a.action, a.target_type, a.target_id, a.tenant_id) for a in audits] == [
        ("SILENCE_ADD", "SILENCE", ident, TENANT), ("SILENCE_EXPIRE", "SILENCE", ident, TENANT)]
    assert audits[0].comment == "db upgrade" and audits[0].diff["actor"] == "alice"
    assert audits[1].diff["actor"] == "bob"


def test_a_kind_that_an_alert_has_had_is_silenced_by_name_and_a_typo_is_refused(silence_app, config_file, capsys):
    """A Prometheus alertname is a kind once one of its alerts was posted (POST /api/v2/alerts)."""
    from engine.alerts import EventChange, apply_events

    app = silence_app
    apply_events(app, [EventChange(tenant_id=TENANT, kind="DiskFillingUp", dedupe_key="disk:db-1",
                                   base_id=None, severity="warn", context={}, resolve=False)])
    code, _, err = run_cli(config_file, capsys, "silence", "add", "--match", "kind=DiskFillingUp", "--for", "2h")
    assert (code, err) == (0, "")
    code, _, err = run_cli(config_file, capsys, "silence", "add", "--match", "kind=DiskFilingUp", "--for", "2h")
    assert code == 2 and "--match: kind: unknown alert kind 'DiskFilingUp': no alert has had it" in err
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.silences")).scalar() == 1


@pytest.mark.parametrize("args, message", [
    (["--match", "tenant=6f1c2d3e-0000-4000-8000-0000000000ff", "--for", "2h", "--comment", "x"],
     "--match: tenant: unknown tenant"),
    (["--match", "colour=red", "--for", "2h", "--comment", "x"], "--match: unknown key 'colour'"),
    (["--match", "kind=NOPE", "--for", "2h", "--comment", "x"], "--match: kind: unknown alert kind"),
    (["--match", "kind=~(", "--for", "2h", "--comment", "x"], "--match: kind: not a valid regular expression"),
    (["--match", "kind=~.*", "--for", "2h", "--comment", "x"], "--match: every matcher also matches an empty"),
    (["--match", f"tenant={TENANT}", "--for", "0s", "--comment", "x"], "--for: must be longer than 0s"),
    (["--match", f"tenant={TENANT}", "--for", "soon", "--comment", "x"], "--for: expected a duration"),
    (["--match", f"tenant={TENANT}", "--for", "2h", "--comment", "x", "--starts-at", "tomorrow"],
     "--starts-at: expected a time"),
])
def test_silence_add_refuses_bad_input_with_one_line_naming_the_flag(app, config_file, capsys, args, message):
    payment_failed(app)
    code, out, err = run_cli(config_file, capsys, "silence", "add", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.silences")).scalar() == 0


def test_silence_expire_of_an_unknown_id_is_exit_2(app, config_file, capsys):
    code, _, err = run_cli(config_file, capsys, "silence", "expire", "6f1c2d3e-0000-4000-8000-0000000000aa")
    assert code == 2 and "ID: no silence with id" in err
    code, _, err = run_cli(config_file, capsys, "silence", "expire", "nope")
    assert code == 2 and "ID: not a silence id" in err


def test_a_maintenance_window_starts_later_and_lists_as_pending(app, config_file, capsys):
    payment_failed(app)
    code, out, _ = run_cli(config_file, capsys, "silence", "add", "--match", f"tenant={TENANT}", "--for", "1h",
                           "--starts-at", "2026-11-26T02:00:00Z", "--comment", "window")
    assert code == 0
    listed = json.loads(run_cli(config_file, capsys, "silence", "list", "--json")[1])
    assert [(s["state"], s["starts_at"], s["ends_at"]) for s in listed] == [
        ("pending", "2026-11-26T02:00:00+00:00", "2026-11-26T03:00:00+00:00")]


def test_the_comment_is_optional_as_the_contract_says(silence_app, capsys, config_file):
    ident = add_silence(silence_app, parse_match([f"tenant={TENANT}"]), duration=60, comment="  ", actor="oncall")
    (listed,) = list_silences(silence_app)
    assert (str(listed["id"]), listed["comment"]) == (str(ident), "")
    assert main(["silence", "add", "--match", f"tenant={TENANT}", "--for", "1h", "--config", str(config_file())]) == 0
    assert uuid.UUID(capsys.readouterr().out.strip())


# ----------------------------------------------------------------- accounting (item 7)


def test_show_and_notifications_say_what_happened_to_each_notification(silence_app, config_file, capsys, clock):
    app = silence_app
    ident = silence(app, f"tenant={TENANT},kind=RUNS_THRESHOLD", comment="plan migration")
    record(app, 1200)
    run_detection(app)                          # both levels: each row suppressed by the silence
    expire_silence(app, str(ident), actor="oncall")
    clock.advance(timedelta(minutes=1))
    record(app, 1300)
    with app.databases.begin("notify") as conn:   # the warn alert resolves by hand and re-opens: inhibited
        warn = conn.execute(text("SELECT id FROM notify.alerts WHERE severity = 'warn'")).scalar_one()
        critical = conn.execute(text("SELECT id FROM notify.alerts WHERE severity = 'critical'")).scalar_one()
    from engine.alerts import resolve_alert
    resolve_alert(app, str(warn), actor="oncall")
    clock.advance(timedelta(minutes=1))
    run_detection(app)
    # Rows the grouping work fills (held, grouped), written here as it will write them.
    with app.databases.begin("notify") as conn:
        conn.execute(text(
            "INSERT INTO notify.notifications (tenant_id, alert_id, created_at, channel, recipient, status, transition,"
            " transition_seq, reminder_no, route_key, next_attempt_at, held_reason, release_at)"
            " VALUES (:t, :a, :now, 'email', 'x@example.com', 'held', 'reminder', 9, 1, 'dest:held', :now,"
            " 'quiet_hours', :release)"), dict(t=TENANT, a=critical, now=clock.now(),
                                               release=clock.now() + timedelta(hours=7)))
        message = conn.execute(text(
            "INSERT INTO notify.notifications (tenant_id, alert_id, created_at, channel, recipient, status, transition,"
            " route_key, next_attempt_at, sent_at) VALUES (:t, NULL, :now, 'email', 'x@example.com', 'sent', 'group',"
            " 'dest:group', :now, :now) RETURNING id"), dict(t=TENANT, now=clock.now())).scalar_one()
        conn.execute(text(
            "INSERT INTO notify.notifications (tenant_id, alert_id, created_at, channel, recipient, status, transition,"
            " transition_seq, reminder_no, route_key, next_attempt_at, message_id)"
            " VALUES (:t, :a, :now, 'email', 'x@example.com', 'grouped', 'reminder', 9, 2, 'dest:grouped', :now, :m)"),
            dict(t=TENANT, a=critical, now=clock.now(), m=message))
    code, out, _ = run_cli(config_file, capsys, "show", str(warn), "--json")
    shown = json.loads(out)["notifications"]
    assert [(n["transition"], n["disposition"], n["reason"]) for n in shown] == [
        ("opened", "suppressed", str(ident)), ("resolved", "suppressed", "inhibited"),
        ("reopened", "suppressed", "inhibited")]
    assert shown[0]["what_happened"] == f'suppressed by silence {ident} ("plan migration", by oncall)'
    assert (shown[2]["inhibit_rule"], shown[2]["inhibited_by"]) == ("quota-critical-mutes-warn", str(critical))
    code, out, _ = run_cli(config_file, capsys, "show", str(warn))
    assert code == 0 and "WHAT_HAPPENED" in out and '("plan migration", by oncall)' in out
    assert f"suppressed by inhibition rule quota-critical-mutes-warn: alert {critical} was open" in out
    code, out, _ = run_cli(config_file, capsys, "notifications", "--alert", str(critical), "--json")
    listed = {n["transition"] + str(n["reminder_no"]): n for n in json.loads(out)}
    assert (listed["reminder1"]["disposition"], listed["reminder1"]["reason"]) == ("waiting", "quiet_hours")
    assert listed["reminder1"]["what_happened"] == \
        "waiting for the destination's quiet hours to end until 2026-11-25 19:02:00 UTC"
    assert (listed["reminder2"]["disposition"], listed["reminder2"]["message_id"]) == ("grouped", str(message))
    assert listed["reminder2"]["what_happened"] == f"grouped into message {message}, sent 2026-11-25 12:02:00 UTC"
    assert listed["opened0"]["disposition"] == "suppressed"
    code, out, _ = run_cli(config_file, capsys, "notifications", "--status", "suppressed")
    assert code == 0 and out.count("suppressed by") == 4 and "WHAT_HAPPENED" in out.splitlines()[0]
    sent_id = listed["opened0"]["id"]
    code, out, _ = run_cli(config_file, capsys, "notifications", "show", sent_id, "--json")
    assert json.loads(out)["disposition"] == "suppressed"
