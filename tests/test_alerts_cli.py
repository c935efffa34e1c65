"""notifyctl snapshot/alerts/show/ack/resolve/event/run-once: exit codes, output, audit rows."""

from __future__ import annotations

import json
import uuid

import pytest

from engine.cli import main

TENANT = "6f1c2d3e-0000-4000-8000-000000000001"
BASE = "6f1c2d3e-0000-4000-8000-00000000b001"
PLANS = """
plans:
  default: {runs_used: 1000, storage_gb: 10, wallet_floor_cents: 500}
"""


@pytest.fixture
def cli(config_file, capsys):
    path = str(config_file(PLANS))

    def run(*argv):
        code = main([*argv, "--config", path])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def open_runs_alert(cli, value="900"):
    assert cli("snapshot", "record", "--tenant", TENANT, "--base", BASE, "--metric", "runs_used", "--value", value)[0] == 0
    code, out, _ = cli("run-once")
    assert code == 0, out
    code, out, _ = cli("alerts", "--json")
    return json.loads(out)


def audit_rows(databases):
    with databases.begin("admin_log") as conn:
        return conn.exec_driver_sql(
            "SELECT action, target_type, target_id, tenant_id::text, diff, comment FROM admin_log.admin_events "
            "ORDER BY occurred_at, action").mappings().all()


def test_snapshot_record_then_run_once_lists_the_alert_as_json(cli):
    alerts = open_runs_alert(cli)
    [alert] = alerts
    assert {"id", "tenant_id", "base_id", "kind", "severity", "status", "dedupe_key", "first_seen_at",
            "last_seen_at"} <= set(alert)
    assert (alert["tenant_id"], alert["base_id"], alert["kind"], alert["severity"], alert["status"]) == (
        TENANT, BASE, "RUNS_THRESHOLD", "warn", "open")
    assert alert["dedupe_key"].startswith("runs:80pct:")


def test_alerts_filters_and_readable_table(cli):
    open_runs_alert(cli)
    code, out, _ = cli("alerts", "--status", "open", "--tenant", TENANT, "--kind", "RUNS_THRESHOLD")
    assert code == 0 and "RUNS_THRESHOLD" in out and out.splitlines()[0].startswith("ID")
    assert json.loads(cli("alerts", "--status", "resolved", "--json")[1]) == []
    assert json.loads(cli("alerts", "--kind", "WALLET_LOW", "--json")[1]) == []
    assert len(json.loads(cli("alerts", "--severity", "warn", "--json")[1])) == 1
    assert json.loads(cli("alerts", "--severity", "critical", "--json")[1]) == []


@pytest.mark.parametrize("argv, named", [
    (["alerts", "--status", "closed"], "--status"),
    (["alerts", "--kind", "DISK\tFULL"], "--kind"),       # a kind is printable; an unknown one matches none
    (["alerts", "--severity", "loud"], "--severity"),
    (["alerts", "--tenant", "acme"], "--tenant"),
    (["snapshot", "record", "--tenant", "acme", "--metric", "runs_used", "--value", "1"], "--tenant"),
    (["snapshot", "record", "--tenant", TENANT, "--metric", "cpu", "--value", "1"], "--metric"),
    (["snapshot", "record", "--tenant", TENANT, "--metric", "runs_used", "--value", "-3"], "--value"),
    (["snapshot", "record", "--tenant", TENANT, "--metric", "runs_used", "--value", "NaN"], "--value"),
    (["snapshot", "record", "--tenant", TENANT, "--metric", "runs_used", "--value", "many"], "--value"),
    (["snapshot", "record", "--tenant", TENANT, "--base", "b1", "--metric", "runs_used", "--value", "1"], "--base"),
    (["show", "not-an-id"], "ALERT_ID"),
    (["show", str(uuid.uuid4())], "ALERT_ID: no alert"),
    (["ack", str(uuid.uuid4())], "ALERT_ID: no alert"),
    (["resolve", str(uuid.uuid4())], "ALERT_ID: no alert"),
    (["event", "raise", "--tenant", TENANT, "--kind", "RUNS_THRESHOLD"], "--kind"),
    (["event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED", "--context", "{oops"], "--context"),
    (["event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED", "--context", "[1]"], "--context"),
])
def test_bad_input_exits_2_with_one_line_naming_it(cli, databases, argv, named):
    code, out, err = cli(*argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and named in err and "Traceback" not in err
    with databases.begin("notify") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM notify.quota_snapshots").scalar_one() == 0


def test_ack_writes_one_audit_row_with_actor_and_comment(cli, databases):
    [alert] = open_runs_alert(cli)
    code, out, _ = cli("ack", alert["id"], "--actor", "alice", "--comment", "looking into it")
    assert code == 0 and "open -> ack" in out
    [row] = audit_rows(databases)
    assert (row["action"], row["target_type"], row["target_id"], row["tenant_id"]) == (
        "ALERT_ACK", "ALERT", alert["id"], TENANT)
    assert row["diff"] == {"before": {"status": "open"}, "after": {"status": "ack"}, "actor": "alice"}
    assert row["comment"] == "looking into it"
    shown = json.loads(cli("show", alert["id"], "--json")[1])
    assert (shown["status"], shown["acked_by"], shown["transition"], shown["transition_seq"]) == (
        "ack", "alice", "acked", 2)
    assert shown["notifications"] == []


def test_ack_twice_is_a_no_op_that_says_so(cli, databases):
    [alert] = open_runs_alert(cli)
    cli("ack", alert["id"], "--actor", "alice")
    code, out, _ = cli("ack", alert["id"], "--actor", "alice")
    assert code == 0 and "already ack" in out
    assert len(audit_rows(databases)) == 1


def test_resolve_audits_with_os_user_by_default_and_resolving_again_is_a_no_op(cli, databases, monkeypatch):
    monkeypatch.setenv("USER", "opsuser")
    monkeypatch.setenv("LOGNAME", "opsuser")
    [alert] = open_runs_alert(cli)
    code, out, _ = cli("resolve", alert["id"], "--comment", "fixed by upgrade")
    assert code == 0 and "open -> resolved" in out
    code, out, err = cli("resolve", alert["id"])
    assert code == 0 and "already resolved" in out and err == ""
    [row] = audit_rows(databases)
    assert row["action"] == "ALERT_RESOLVE" and row["diff"]["actor"] == "opsuser"
    assert row["diff"]["before"] == {"status": "open"} and row["diff"]["after"] == {"status": "resolved"}
    code, out, _ = cli("ack", alert["id"])
    assert code == 0 and "resolved; nothing to ack" in out


@pytest.mark.four_databases
def test_audit_row_lands_in_the_admin_log_database(cli, databases):
    [alert] = open_runs_alert(cli)
    assert cli("ack", alert["id"], "--actor", "bob")[0] == 0
    [row] = audit_rows(databases)
    assert row["action"] == "ALERT_ACK"
    with databases.begin("notify") as conn:
        assert conn.exec_driver_sql("SELECT to_regclass('admin_log.admin_events') IS NULL").scalar_one()


def test_show_prints_the_alert_and_its_context(cli):
    [alert] = open_runs_alert(cli)
    code, out, _ = cli("show", alert["id"])
    assert code == 0
    assert "RUNS_THRESHOLD" in out and "context.limit" in out and "no notifications" in out


def test_event_raise_and_clear_payment_failed(cli):
    code, out, _ = cli("event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED",
                       "--context", json.dumps({"invoice": "in_42", "amount_cents": 1900, "card_last4": "4242",
                                                "api_key": "sk_live_x"}))
    assert code == 0 and "opened" in out
    [alert] = json.loads(cli("alerts", "--kind", "PAYMENT_FAILED", "--json")[1])
    assert (alert["severity"], alert["status"], alert["dedupe_key"]) == ("critical", "open", "payment_failed:base=-")
    shown = json.loads(cli("show", alert["id"], "--json")[1])
    assert shown["context"]["event"]["invoice"] == "in_42"
    assert shown["context"]["event"]["api_key"] == "[REDACTED]"
    assert "sk_live_x" not in json.dumps(shown) and "4242" not in json.dumps(shown)
    # Raised again while open: same alert, nothing new.
    assert cli("event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED")[0] == 0
    assert len(json.loads(cli("alerts", "--json")[1])) == 1
    code, out, _ = cli("event", "clear", "--tenant", TENANT, "--kind", "PAYMENT_FAILED")
    assert code == 0 and "resolved" in out
    assert json.loads(cli("alerts", "--status", "resolved", "--json")[1])[0]["id"] == alert["id"]
    code, out, _ = cli("event", "clear", "--tenant", TENANT, "--kind", "PAYMENT_FAILED")
    assert code == 0 and "nothing to clear" in out
    code, out, _ = cli("event", "raise", "--tenant", TENANT, "--kind", "PAYMENT_FAILED")
    shown = json.loads(cli("show", alert["id"], "--json")[1])
    assert (shown["status"], shown["transition"], shown["context"]["reopen_count"]) == ("open", "reopened", 1)


def test_run_once_exits_1_when_a_source_failed_but_still_detects(config_file, capsys):
    path = config_file(PLANS + """
collect:
  http:
    - {name: down, url: "http://127.0.0.1:9/", timeout: 2s}
""")
    assert main(["snapshot", "record", "--tenant", TENANT, "--metric", "runs_used", "--value", "5000",
                 "--config", str(path)]) == 0
    code = main(["run-once", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 1 and "http:down: request failed" in out and "detect: 2 opened" in out


def test_an_audit_comment_is_redacted_like_every_admin_log_write(cli, databases):
    [alert] = open_runs_alert(cli)
    code, _, _ = cli("ack", alert["id"], "--comment", "customer jane@example.com sent Bearer abc.def.ghi")
    assert code == 0
    (row,) = audit_rows(databases)
    assert "jane@example.com" not in row["comment"] and "abc.def.ghi" not in row["comment"]
    assert row["comment"].startswith("customer ")
