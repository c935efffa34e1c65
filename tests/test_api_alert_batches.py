"""POST /api/v2/alerts as batches (issue 16): one transaction per batch, per-alert errors, any
Prometheus alertname, a default tenant; and the API's token cache, which revocation still beats."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from engine.alerts import get_alert
from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.destinations import add_destination
from engine.messages import Composer
from engine.templating import render
from engine.tokens import TokenCache, add_token, authenticate, revoke_token

TENANT = "7a1c2d3e-0000-4000-8000-000000000001"
OTHER = "7a1c2d3e-0000-4000-8000-000000000002"


@pytest.fixture
def serve(app):
    started = []

    def start(**settings):
        server = ApiServer(app, ApiConfig(listen="127.0.0.1:0", **settings)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def token(app):
    return add_token(app, "prometheus", ["events"])


def post(server, token, alerts):
    return httpx.post(f"{server.url}/api/v2/alerts", json=alerts, headers={"Authorization": f"Bearer {token}"},
                      trust_env=False, timeout=30)


def firing(n, **labels):
    return {"labels": {"alertname": "HighLatency", "tenant_id": TENANT, "instance": f"host-{n}", **labels},
            "annotations": {"summary": f"API p99 above 2 s on host-{n}", "description": "p99 is 3.1 s"},
            "startsAt": "2026-11-25T11:59:00Z", "generatorURL": "http://prometheus.local/graph"}


def rows(app, sql):
    with app.databases.begin("notify") as conn:
        return conn.exec_driver_sql(sql).all()


def with_webhook(app, tenant=TENANT):
    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=tenant, channel="email", target="ops@example.com")


def test_a_bad_alert_in_a_batch_is_named_and_the_good_ones_are_applied_and_planned(app, serve, token):
    with_webhook(app)
    alerts = [firing(n) for n in range(6)]
    alerts[2]["labels"]["tenant_id"] = "not-a-tenant"
    response = post(serve(), token, alerts)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["[2].labels.tenant_id"]
    assert problem["detail"].startswith("5 of 6 alerts applied")
    # Answered after commit: the five alerts and their planned notifications are there already.
    assert rows(app, "SELECT count(*), count(DISTINCT dedupe_key) FROM notify.alerts WHERE status = 'open'"
                     " AND kind = 'HighLatency'") == [(5, 5)]
    assert rows(app, "SELECT count(*) FROM notify.notifications n JOIN notify.alerts a ON a.id = n.alert_id"
                     " WHERE n.transition = 'opened'") == [(5,)]


def test_a_batch_is_idempotent_when_posted_again(app, serve, token, clock):
    with_webhook(app)
    server = serve()
    alerts = [firing(n) for n in range(4)]
    assert post(server, token, alerts).status_code == 200
    first = rows(app, "SELECT id, transition_seq, last_seen_at FROM notify.alerts ORDER BY id")
    clock.advance(timedelta(seconds=30))   # Prometheus resends while the alerts fire
    assert post(server, token, alerts).status_code == 200
    again = rows(app, "SELECT id, transition_seq, last_seen_at FROM notify.alerts ORDER BY id")
    assert [(r[0], r[1]) for r in again] == [(r[0], r[1]) for r in first]
    assert all(a[2] == f[2] + timedelta(seconds=30) for a, f in zip(again, first))
    # One row per alert's transition (a group message of the tenant's email, issue 15, names no alert).
    assert rows(app, "SELECT count(*) FROM notify.notifications WHERE alert_id IS NOT NULL") == [(4,)]


def test_ended_alerts_resolve_and_the_last_change_of_an_alert_in_a_batch_wins(app, serve, token, clock):
    with_webhook(app)
    server = serve()
    assert post(server, token, [firing(1), firing(2)]).status_code == 200
    ended = {**firing(1), "endsAt": "2026-11-25T11:59:30Z"}     # before the clock's now (12:00)
    # host-2 fires and ends in one batch: it ends; host-3 ends before it was ever seen: nothing.
    batch = [ended, firing(2), {**firing(2), "endsAt": "2026-11-25T11:59:30Z"}, {**firing(3), "endsAt": "2026-11-25T11:59:30Z"}]
    assert post(server, token, batch).status_code == 200
    assert rows(app, "SELECT context -> 'event' -> 'labels' ->> 'instance', status FROM notify.alerts ORDER BY 1") == \
        [("host-1", "resolved"), ("host-2", "resolved")]
    assert rows(app, "SELECT count(*) FROM notify.notifications WHERE transition = 'resolved'") == [(2,)]


def test_any_alertname_is_a_kind_with_generic_words_from_its_annotations(app, serve, token):
    assert post(serve(), token, [firing(7, severity="warning")]).status_code == 200
    (alert_id, kind, severity), = rows(app, "SELECT id, kind, severity::text FROM notify.alerts")
    assert (kind, severity) == ("HighLatency", "warn")
    alert = get_alert(app, str(alert_id))
    context = Composer(app.config).context(alert, "opened", "warn", 0)
    text = render("email", kind, "text", context)
    assert "API p99 above 2 s on host-7" in text and "p99 is 3.1 s" in text and "instance: host-7" in text
    assert render("email", kind, "subject", context) == "API p99 above 2 s on host-7"


def test_the_kind_label_wins_over_the_alertname_and_detector_kinds_cannot_be_posted(app, serve, token):
    response = post(serve(), token, [firing(1, kind="PAYMENT_FAILED"), firing(2, alertname="RUNS_THRESHOLD")])
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["[1].labels.alertname"]
    assert rows(app, "SELECT kind, severity::text FROM notify.alerts") == [("PAYMENT_FAILED", "critical")]


def test_a_plain_prometheus_alert_without_a_tenant_goes_to_the_default_tenant(app, serve, token):
    plain = firing(1)
    del plain["labels"]["tenant_id"]
    refused = post(serve(), token, [plain])
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "[0].labels.tenant_id"
    server = serve(alert_default_tenant=OTHER)
    assert post(server, token, [plain, firing(2)]).status_code == 200
    assert sorted(rows(app, "SELECT tenant_id::text FROM notify.alerts")) == [(TENANT,), (OTHER,)]
    bad = post(server, token, [firing(3, tenant_id="acme")])   # a tenant label that names no tenant id
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "[0].labels.tenant_id"


def test_a_cached_token_is_refused_once_revoked_elsewhere_and_at_once_when_revoked_here(app):
    secret = add_token(app, "cached", ["events"])
    now = [0.0]
    cache = TokenCache(5, monotonic=lambda: now[0])
    assert authenticate(app, secret, now=app.clock.now(), cache=cache).name == "cached"
    # Revoked by another process (notifyctl): this server still holds the entry, for at most 5 s.
    with app.databases.begin("notify") as conn:
        conn.exec_driver_sql("UPDATE notify.api_tokens SET revoked_at = now() WHERE name = 'cached'")
    now[0] = 4.9
    assert authenticate(app, secret, now=app.clock.now(), cache=cache) is not None
    now[0] = 5.0
    assert authenticate(app, secret, now=app.clock.now(), cache=cache) is None

    other = add_token(app, "cached-2", ["events"])
    assert authenticate(app, other, now=app.clock.now(), cache=cache) is not None
    revoke_token(app, "cached-2")   # in this process: dropped from every cache at once
    assert authenticate(app, other, now=app.clock.now(), cache=cache) is None


def test_the_api_server_keeps_an_active_token_cached(app, serve, token):
    server = serve(token_cache=60)
    assert post(server, token, [firing(1)]).status_code == 200
    with app.databases.begin("notify") as conn:   # the stored hash no longer matches anything
        conn.exec_driver_sql("UPDATE notify.api_tokens SET token_sha256 = sha256('other'::bytea) WHERE name = 'prometheus'")
    assert post(server, token, [firing(2)]).status_code == 200
    assert post(serve(token_cache=0), token, [firing(3)]).status_code == 401


def test_concurrent_events_share_transactions_yet_a_repeated_key_is_a_duplicate(app, serve):
    from concurrent.futures import ThreadPoolExecutor

    from engine.clock import ManualClock

    class TickingClock(ManualClock):   # each transaction its own instant, as on a real clock
        def now(self):
            self.advance(timedelta(milliseconds=1))
            return super().now()

    app.clock = TickingClock(app.clock.now())
    with_webhook(app)
    server = serve()
    secret = add_token(app, "billing", ["events"])

    def trigger(key):
        body = {"action": "trigger", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", "dedup_key": key}
        return httpx.post(f"{server.url}/v1/events", json=body, headers={"Authorization": f"Bearer {secret}"},
                          trust_env=False, timeout=30)

    keys = [f"invoice-{n}" for n in range(20)] + ["invoice-0"] * 4
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(trigger, keys))
    repeated = sorted(a.status_code for a, k in zip(answers, keys) if k == "invoice-0")
    assert repeated == [200, 200, 200, 200, 202]   # one opened it; the others found it open
    assert all(a.status_code == 202 for a, k in zip(answers, keys) if k != "invoice-0")
    assert {a.json()["alert_id"] for a, k in zip(answers, keys) if k == "invoice-0"} == \
        {answers[0].json()["alert_id"]}
    assert rows(app, "SELECT count(*) FROM notify.alerts") == [(20,)]
    assert rows(app, "SELECT count(*), count(DISTINCT alert_id) FROM notify.notifications "
                     "WHERE alert_id IS NOT NULL") == [(20, 20)]
    assert rows(app, "SELECT DISTINCT context ->> 'raised_by' FROM notify.alerts") == [("billing",)]


def test_a_context_orjson_cannot_encode_is_still_stored_whole(app):
    from engine.alerts import raise_event

    huge = 2 ** 70    # past 64 bits: orjson refuses it, json writes it
    result = raise_event(app, TENANT, "PAYMENT_FAILED", context={"invoice_cents": huge, "note": "große Rechnung"})
    stored = get_alert(app, str(result.alert_id))["context"]["event"]
    assert stored == {"invoice_cents": huge, "note": "große Rechnung"}


def test_a_posted_kind_is_a_filter_of_the_listings(app, serve, token, capsys, config_file):
    from engine.cli import main

    server = serve()
    assert post(server, token, [firing(7), firing(8, kind="PAYMENT_FAILED")]).status_code == 200
    listed = httpx.get(f"{server.url}/v1/alerts", params={"kind": "HighLatency"}, trust_env=False,
                       headers={"Authorization": f"Bearer {add_token(app, 'reader', ['read'])}"}).json()["items"]
    assert [a["kind"] for a in listed] == ["HighLatency"]
    assert main(["alerts", "--kind", "HighLatency", "--json", "--config", str(config_file())]) == 0
    assert [a["kind"] for a in json.loads(capsys.readouterr().out)] == ["HighLatency"]
    assert main(["alerts", "--kind", "NoSuchAlert", "--json", "--config", str(config_file())]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("labels, annotations, field, message", [
    ({"alertname": 5}, {}, "[1].labels.alertname", "expected string, got integer"),
    ({"alertname": "HighLatency", "tenant_id": None}, {}, "[1].labels.tenant_id", "expected string, got null"),
    ({"alertname": "HighLatency"}, {"summary": ["a"]}, "[1].annotations.summary", "expected string, got array"),
])
def test_a_label_or_annotation_that_is_not_a_string_is_a_400_naming_it_and_nothing_is_written(
        app, serve, token, labels, annotations, field, message):
    response = post(serve(), token, [firing(1), {"labels": {"tenant_id": TENANT, **labels}, "annotations": annotations}])
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"field": field, "message": message}]
    assert rows(app, "SELECT count(*) FROM notify.alerts") == [(0,)]   # a bad body writes nothing
