"""The real clients of Alertmanager's API against notify-engine (issue 16): Prometheus (Debian's
`prometheus`) sends its firing and resolved alerts to the real notifyd as to an Alertmanager, and
amtool (Debian's `prometheus-alertmanager`) lists alerts through GET /api/v2/alerts.
scripts/bootstrap.sh installs both as root; where one is missing its test is skipped, naming it.

Everything listens on 127.0.0.1. Waits poll the database or the API with a generous deadline
(these are real processes on a shared machine); nothing sleeps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import httpx
import pytest
import yaml

from engine.alerts import raise_event
from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.tokens import add_token
from tests.daemon_harness import free_port, start_daemon, wait_for  # noqa: F401 - start_daemon is a fixture
from tests.delivery_support import TENANT, HttpServer, add_dest, webhook_responder

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
needs_prometheus = pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK), reason=(
    "prometheus is not installed (Debian package prometheus; scripts/bootstrap.sh installs it as root)"))
needs_amtool = pytest.mark.skipif(not os.access(AMTOOL, os.X_OK), reason=(
    "amtool is not installed (Debian package prometheus-alertmanager; scripts/bootstrap.sh installs it as root)"))
# Real processes on a machine the suite shares: seconds normally, far more allowed.
DEADLINE = 60.0


def loopback_env(home: Path) -> dict:
    """The environment for a Go client: no proxy from the environment, no user config file."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return {**env, "HOME": str(home), "NO_PROXY": "127.0.0.1,localhost"}


# ------------------------------------------------------------------------------ Prometheus

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "API.md"


def documented_yaml(first_line: str) -> dict:
    """The YAML block of docs/API.md that starts with `first_line`: the tests run what it shows."""
    for block in re.findall(r"```yaml\n(.*?)```", API_DOC.read_text(), re.DOTALL):
        if block.startswith(first_line + "\n"):
            return yaml.safe_load(block)
    raise AssertionError(f"docs/API.md has no YAML block starting {first_line!r}")


def prometheus_config(api_port: int, token_file: Path, rules: Path) -> dict:
    """docs/API.md's prometheus.yml, pointed at this test's API and token; rules evaluated every second."""
    config = documented_yaml("# prometheus.yml")
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["127.0.0.1:9465"]}]
    assert set(manager["authorization"]) == {"credentials_file"}
    manager["static_configs"] = [{"targets": [f"127.0.0.1:{api_port}"]}]
    manager["authorization"]["credentials_file"] = str(token_file)
    return {"global": {"evaluation_interval": "1s"}, "rule_files": [str(rules)], **config}


RULES_YML = """\
groups:
  - name: billing
    rules:
      - alert: PaymentFailed
        expr: {expr}
        for: 0s
        labels: {{tenant_id: "{tenant}", kind: PAYMENT_FAILED, severity: warn}}
        annotations: {{summary: "card declined"}}
"""

DAEMON_YML = """\
api:
  listen: 127.0.0.1:{api_port}
jobs: {{collect: 0, cleanup: 0, maintenance: 1d, detect: 1s, plan: 1s}}
delivery: {{poll_interval: 1s, backoff_base: 1s, reminder_interval: 0}}
channels:
  webhook: {{allow_private_networks: true}}
"""


def alert_rows(databases) -> list[dict]:
    with databases.begin("notify") as conn:
        return [dict(r) for r in conn.exec_driver_sql(
            "SELECT a.id, a.status, a.severity::text AS severity, a.context, "
            "       (SELECT array_agg(n.transition || ':' || n.status ORDER BY n.transition_seq) "
            "        FROM notify.notifications n WHERE n.alert_id = a.id) AS notes "
            "FROM notify.alerts a").mappings()]


@needs_prometheus
def test_prometheus_delivers_firing_and_resolved_alerts_through_notifyd(app, databases, start_daemon, tmp_path):
    receiver = HttpServer(webhook_responder).start()
    prometheus = None
    try:
        with databases.begin("notify") as conn:
            add_dest(conn, app.clock.now(), "webhook", receiver.url("/ok"))
        token_file = tmp_path / "prometheus.token"
        token_file.write_text(add_token(app, "prometheus", ["events"]))
        api_port = free_port()
        daemon = start_daemon(DAEMON_YML.format(api_port=api_port))
        daemon.wait_healthy()

        rules = tmp_path / "rules.yml"
        rules.write_text(RULES_YML.format(expr="vector(1)", tenant=TENANT))
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(api_port, token_file, rules)))
        web_port = free_port()
        with open(tmp_path / "prometheus.log", "wb") as log:
            prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{web_port}", "--web.enable-lifecycle",
                 # Firing alerts are sent again every evaluation: none waits on the default minute if
                 # the first went out before Prometheus knew its Alertmanager.
                 "--rules.alert.resend-delay=1s"],
                stdout=subprocess.DEVNULL, stderr=log, env=loopback_env(tmp_path))

        def delivered(transition):
            rows = alert_rows(databases)
            return rows if rows and f"{transition}:sent" in (rows[0]["notes"] or []) else None

        (alert,) = wait_for(lambda: delivered("opened"), "Prometheus's alert opened and its webhook sent", DEADLINE)
        assert alert["status"] == "open" and alert["severity"] == "warn"
        labels = alert["context"]["event"]["labels"]
        assert labels == {"alertname": "PaymentFailed", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", "severity": "warn"}
        assert alert["context"]["raised_by"] == "prometheus"
        opened = receiver.received[0].json()
        assert opened["type"] == "alert.opened" and opened["data"]["alert"]["id"] == str(alert["id"])

        # The rule stops firing: Prometheus sends the alert once more with endsAt = when it resolved.
        rules.write_text(RULES_YML.format(expr="vector(1) < 0", tenant=TENANT))
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{web_port}/-/reload", method="POST"),
                                    timeout=10) as reload:
            assert reload.status == 200
        (alert,) = wait_for(lambda: delivered("resolved"), "the alert resolved and its webhook sent", DEADLINE)
        assert alert["status"] == "resolved"
        assert [r.json()["type"] for r in receiver.received] == ["alert.opened", "alert.resolved"]
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                prometheus.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait()
        receiver.stop()


# ---------------------------------------------------------------------------------- amtool


@pytest.fixture
def amtool(app, tmp_path):
    """Runs amtool against an API server on loopback, authenticated by --http.config.file."""
    server = ApiServer(app, ApiConfig(listen="127.0.0.1:0")).start()
    http_config = tmp_path / "amtool-http.yml"
    documented = documented_yaml("# amtool-http.yml")   # docs/API.md's, with this test's token file
    assert documented["authorization"]["type"] == "Bearer"
    documented["authorization"]["credentials_file"] = str(tmp_path / "amtool.token")
    http_config.write_text(yaml.safe_dump(documented))
    (tmp_path / "amtool.token").write_text(add_token(app, "amtool", ["read"]))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([AMTOOL, f"--alertmanager.url={server.url}", f"--http.config.file={http_config}", *args],
                              capture_output=True, text=True, timeout=DEADLINE, env=loopback_env(tmp_path))
        if check:
            assert done.returncode == 0, done.stderr
        return done

    yield server, run
    server.stop()


@needs_amtool
def test_amtool_lists_the_open_alerts_and_filters_them(app, amtool):
    server, run = amtool
    events = add_token(app, "prom", ["events"])
    posted = [{"labels": {"alertname": name, "tenant_id": TENANT, "kind": "PAYMENT_FAILED", "team": team},
               "annotations": {"summary": f"{name} for the billing team"}, "startsAt": "2026-11-25T11:58:00Z"}
              for name, team in (("PaymentFailed", "billing"), ("CardExpired", "cards"))]
    response = httpx.post(f"{server.url}/api/v2/alerts", json=posted, headers={"Authorization": f"Bearer {events}"},
                          trust_env=False, timeout=10)
    assert response.status_code == 200, response.text
    raise_event(app, TENANT, "PAYMENT_FAILED", dedup_key="invoice-7")   # raised by the engine, not Prometheus

    listed = json.loads(run("alert", "query", "-o", "json").stdout)
    assert sorted(a["labels"]["alertname"] for a in listed) == ["CardExpired", "PAYMENT_FAILED", "PaymentFailed"]
    assert all(a["status"]["state"] == "active" for a in listed)
    read = {"Authorization": f"Bearer {add_token(app, 'reader', ['read'])}"}
    served = httpx.get(f"{server.url}/api/v2/alerts", headers=read, trust_env=False, timeout=10).json()
    assert [(a["fingerprint"], a["labels"]) for a in listed] == [(a["fingerprint"], a["labels"]) for a in served]

    simple = run("alert", "query").stdout   # the table: alertname, starts at, summary
    assert "CardExpired" in simple and "PaymentFailed for the billing team" in simple
    extended = run("alert", "query", "-o", "extended").stdout   # labels, annotations, times, state
    assert 'team="billing"' in extended and "0001-01-01" in extended and "active" in extended

    by_label = json.loads(run("alert", "query", "-o", "json", "team=~bill.*").stdout)
    assert [a["labels"]["alertname"] for a in by_label] == ["PaymentFailed"]
    by_name = json.loads(run("alert", "query", "-o", "json", "CardExpired").stdout)   # amtool's alertname= shorthand
    assert [a["labels"]["team"] for a in by_name] == ["cards"]
    assert json.loads(run("alert", "query", "-o", "json", 'alertname="NoSuchAlert"').stdout) == []


@needs_amtool
def test_amtool_with_a_token_lacking_read_is_refused(app, amtool, tmp_path):
    _, run = amtool
    (tmp_path / "amtool.token").write_text(add_token(app, "poster", ["events"]))
    refused = run("alert", "query", check=False)
    assert refused.returncode != 0
    assert "403" in refused.stderr or "forbidden" in refused.stderr.lower()


@needs_amtool
def test_amtool_shows_why_a_filter_is_refused(amtool):
    _, run = amtool
    refused = run("alert", "query", "PaymentFailed", 'team=~"("', check=False)
    assert refused.returncode != 0 and 'filter[1]: not a valid regular expression (RE2): missing )' in refused.stderr
