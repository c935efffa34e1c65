"""The HTTP API (issue 16): a real server on loopback, a real HTTP client, the real database."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import uuid
from datetime import timedelta

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.destinations import add_destination
from engine.tokens import add_token, revoke_token

TENANT = "7a1c2d3e-0000-4000-8000-000000000001"
BASE = "7a1c2d3e-0000-4000-8000-00000000b001"
MAX_BODY = 64 * 1024


@pytest.fixture
def server(app):
    running = ApiServer(app, ApiConfig(listen="127.0.0.1:0", max_body_bytes=MAX_BODY, page_max=50,
                                       auth_failure_burst=3, auth_failure_interval=3600)).start()
    yield running
    running.stop()


@pytest.fixture
def tokens(app):
    return {scope: add_token(app, f"svc-{scope}", [scope]) for scope in ("events", "snapshots", "read", "operate", "admin")}


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as c:
        yield c


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def scalar(databases, sql, section="notify", **params):
    with databases.begin(section) as conn:
        return conn.exec_driver_sql(sql, params).scalar() if not params else conn.execute(
            __import__("sqlalchemy").text(sql), params).scalar()


def trigger(client, token, **fields):
    body = {"action": "trigger", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", **fields}
    return client.post("/v1/events", json=body, headers=auth(token))


def assert_problem(response, status, field=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("urn:notify-engine:problem:")
    assert problem["title"] and problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    return problem


# ---------------------------------------------------------------------------------- events


def test_trigger_opens_an_alert_and_plans_its_notifications_before_answering(app, client, tokens, databases):
    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email", target="ops@example.com")
    response = trigger(client, tokens["events"], base_id=BASE, context={"invoice": "in_1"})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["status"], answer["alert_status"], answer["transition"]) == ("success", "open", "opened")
    assert answer["dedup_key"] == f"payment_failed:base={BASE}"
    assert scalar(databases, f"SELECT status FROM notify.alerts WHERE id = '{answer['alert_id']}'") == "open"
    assert scalar(databases, f"SELECT count(*) FROM notify.notifications WHERE alert_id = '{answer['alert_id']}'") == 1
    context = scalar(databases, f"SELECT context FROM notify.alerts WHERE id = '{answer['alert_id']}'")
    assert context["raised_by"] == "svc-events" and context["event"] == {"invoice": "in_1"}


def test_the_same_dedup_key_again_is_a_duplicate_not_a_new_alert(client, tokens, databases, clock):
    first = trigger(client, tokens["events"], dedup_key="charge-42")
    clock.advance(timedelta(seconds=5))
    again = trigger(client, tokens["events"], dedup_key="charge-42")
    other = trigger(client, tokens["events"], dedup_key="charge-43")
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["alert_id"] == first.json()["alert_id"] and again.json()["transition"] == "refreshed"
    assert again.json()["dedup_key"] == "charge-42"
    assert other.json()["alert_id"] != first.json()["alert_id"]
    assert scalar(databases, "SELECT count(*) FROM notify.alerts") == 2


def test_resolve_with_the_key_the_trigger_answered_resolves_that_alert(client, tokens, databases):
    opened = trigger(client, tokens["events"]).json()
    resolve = {"action": "resolve", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", "dedup_key": opened["dedup_key"]}
    response = client.post("/v1/events", json=resolve, headers=auth(tokens["events"]))
    assert response.status_code == 202
    assert (response.json()["alert_status"], response.json()["transition"]) == ("resolved", "resolved")
    assert scalar(databases, f"SELECT status FROM notify.alerts WHERE id = '{opened['alert_id']}'") == "resolved"
    assert scalar(databases, f"SELECT context->>'cleared_by' FROM notify.alerts WHERE id = '{opened['alert_id']}'") \
        == "svc-events"
    again = client.post("/v1/events", json=resolve, headers=auth(tokens["events"]))
    assert again.status_code == 200 and again.json()["transition"] is None


def test_resolve_of_an_event_never_raised_changes_nothing(client, tokens, databases):
    response = client.post("/v1/events", json={"action": "resolve", "tenant_id": TENANT, "kind": "PAYMENT_FAILED"},
                           headers=auth(tokens["events"]))
    assert response.status_code == 200
    assert (response.json()["alert_id"], response.json()["alert_status"]) == (None, None)
    assert scalar(databases, "SELECT count(*) FROM notify.alerts") == 0


# ------------------------------------------------------------------------------- snapshots


def test_a_snapshot_batch_keeps_good_rows_and_names_each_bad_one(client, tokens, databases):
    rows = [
        {"tenant_id": TENANT, "base_id": BASE, "metric": "runs_used", "value": 10},
        {"tenant_id": TENANT, "metric": "runs_used", "value": "lots"},          # wrong type (schema)
        {"tenant_id": TENANT, "metric": "storage_gb", "value": 1.5},
        {"tenant_id": TENANT, "metric": "runs_used", "value": -1},              # engine rule: no negative count
        {"tenant_id": TENANT, "metric": "runs_used", "value": 3, "colour": "red"},  # unknown field
    ]
    response = client.post("/v1/snapshots", json={"snapshots": rows}, headers=auth(tokens["snapshots"]))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["written"], answer["rejected"]) == (2, 3)
    named = {(e["index"], e["field"]) for e in answer["errors"]}
    assert named == {(1, "snapshots[1].value"), (3, "snapshots[3]"), (4, "snapshots[4].colour")}
    assert "negative" in next(e["message"] for e in answer["errors"] if e["index"] == 3)
    assert scalar(databases, "SELECT count(*) FROM notify.quota_snapshots") == 2


def test_a_snapshot_batch_with_no_good_row_is_a_400_and_writes_nothing(client, tokens, databases):
    response = client.post("/v1/snapshots", json={"snapshots": [{"tenant_id": "nope", "metric": "runs_used", "value": 1}]},
                           headers=auth(tokens["snapshots"]))
    assert_problem(response, 400, "snapshots[0].tenant_id")
    assert scalar(databases, "SELECT count(*) FROM notify.quota_snapshots") == 0


# ---------------------------------------------------------------------------------- alerts


def test_ack_with_an_operate_token_is_audited_with_the_token_name_as_actor(client, tokens, databases):
    alert_id = trigger(client, tokens["events"]).json()["alert_id"]
    response = client.post(f"/v1/alerts/{alert_id}/ack", json={"comment": "on it"}, headers=auth(tokens["operate"]))
    assert response.status_code == 200, response.text
    assert (response.json()["changed"], response.json()["status"]) == (True, "ack")
    assert scalar(databases, f"SELECT acked_by FROM notify.alerts WHERE id = '{alert_id}'") == "svc-operate"
    with databases.begin("admin_log") as conn:
        row = conn.exec_driver_sql("SELECT action, target_id, diff->>'actor' AS actor, comment "
                                   "FROM admin_log.admin_events").mappings().one()
    assert dict(row) == {"action": "ALERT_ACK", "target_id": alert_id, "actor": "svc-operate", "comment": "on it"}
    again = client.post(f"/v1/alerts/{alert_id}/ack", headers=auth(tokens["operate"]))
    assert again.status_code == 200 and again.json()["changed"] is False


def test_resolve_without_a_body_is_audited_too(client, tokens, databases):
    alert_id = trigger(client, tokens["events"]).json()["alert_id"]
    response = client.post(f"/v1/alerts/{alert_id}/resolve", headers=auth(tokens["admin"]))
    assert response.status_code == 200 and response.json()["status"] == "resolved"
    with databases.begin("admin_log") as conn:
        assert conn.exec_driver_sql("SELECT action, diff->>'actor' FROM admin_log.admin_events").one() == \
            ("ALERT_RESOLVE", "svc-admin")


def test_a_read_token_cannot_ack(client, tokens, databases):
    alert_id = trigger(client, tokens["events"]).json()["alert_id"]
    assert_problem(client.post(f"/v1/alerts/{alert_id}/ack", headers=auth(tokens["read"])), 403)
    assert_problem(client.post("/v1/events", json={}, headers=auth(tokens["snapshots"])), 403)
    assert scalar(databases, f"SELECT status FROM notify.alerts WHERE id = '{alert_id}'") == "open"
    assert client.get(f"/v1/alerts/{alert_id}", headers=auth(tokens["operate"])).status_code == 200  # operate reads


def test_one_alert_comes_with_its_context_and_notifications(app, client, tokens):
    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email", target="ops@example.com")
    alert_id = trigger(client, tokens["events"], context={"amount": 12}).json()["alert_id"]
    alert = client.get(f"/v1/alerts/{alert_id}", headers=auth(tokens["read"])).json()
    assert alert["id"] == alert_id and alert["context"]["event"] == {"amount": 12}
    assert [(n["channel"], n["recipient"], n["status"]) for n in alert["notifications"]] == \
        [("email", "ops@example.com", "queued")]


def test_an_unknown_alert_id_is_a_404_problem_and_a_malformed_one_a_400(client, tokens, databases):
    missing = uuid.uuid4()
    assert_problem(client.get(f"/v1/alerts/{missing}", headers=auth(tokens["read"])), 404, "id")
    assert_problem(client.post(f"/v1/alerts/{missing}/ack", headers=auth(tokens["operate"])), 404, "id")
    assert_problem(client.get("/v1/alerts/not-a-uuid", headers=auth(tokens["read"])), 400, "id")
    assert scalar(databases, "SELECT count(*) FROM admin_log.admin_events", "admin_log") == 0


def test_pagination_walks_every_alert_exactly_once(app, client, tokens, clock):
    created = set()
    for n in range(7):
        clock.advance(timedelta(seconds=1)) if n % 2 else None   # some share a created_at: the id breaks ties
        created.add(trigger(client, tokens["events"], dedup_key=f"k{n}").json()["alert_id"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/alerts", params=params, headers=auth(tokens["read"])).json()
        pages += 1
        seen += [a["id"] for a in page["items"]]
        if pages == 1:   # an alert created mid-walk lands before the walk, never inside it
            trigger(client, tokens["events"], dedup_key="late")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == created


def test_listing_filters_and_bad_parameters(client, tokens):
    trigger(client, tokens["events"])
    read = auth(tokens["read"])
    assert len(client.get("/v1/alerts", params={"status": "open", "tenant_id": TENANT}, headers=read).json()["items"]) == 1
    assert client.get("/v1/alerts", params={"status": "resolved"}, headers=read).json()["items"] == []
    assert_problem(client.get("/v1/alerts", params={"status": "closed"}, headers=read), 400, "status")
    assert_problem(client.get("/v1/alerts", params={"limit": 51}, headers=read), 400, "limit")
    assert_problem(client.get("/v1/alerts", params={"limit": "ten"}, headers=read), 400, "limit")
    assert_problem(client.get("/v1/alerts", params={"cursor": "garbage!"}, headers=read), 400, "cursor")
    assert_problem(client.get("/v1/alerts", params={"colour": "red"}, headers=read), 400, "colour")


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("body, field", [
    (b'{"action": "trigger", "tenant_id": ', "body"),                                       # malformed JSON
    (b'{"action": "trigger", "tenant_id": "%s", "kind": "PAYMENT_FAILED", "context": {"x": NaN}}' % TENANT.encode(),
     "body"),                                                                                  # not JSON either
    (json.dumps({"action": "trigger", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", "severity": "critical"}).encode(),
     "severity"),                                                                              # unknown field
    (json.dumps({"action": "trigger", "tenant_id": 42, "kind": "PAYMENT_FAILED"}).encode(), "tenant_id"),  # wrong type
    (json.dumps({"action": "trigger", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", "context": ["a"]}).encode(),
     "context"),                                                                               # wrong type
    (json.dumps({"action": "page", "tenant_id": TENANT, "kind": "PAYMENT_FAILED"}).encode(), "action"),
    (json.dumps({"action": "trigger", "tenant_id": "t-1", "kind": "PAYMENT_FAILED"}).encode(), "tenant_id"),
    (json.dumps({"action": "trigger", "tenant_id": TENANT, "kind": "RUNS_THRESHOLD"}).encode(), "kind"),
    (json.dumps({"action": "trigger", "tenant_id": TENANT}).encode(), "kind"),                # missing field
    (json.dumps({"action": "trigger", "tenant_id": TENANT, "kind": "PAYMENT_FAILED",
                 "context": {"note": "a\u0000b"}}).encode(), "context.note"),                  # NUL: jsonb refuses it
    (b'{"action": "trigger", "tenant_id": "%s", "kind": "PAYMENT_FAILED", "context": {"note": "\\ud800"}}'
     % TENANT.encode(), "context.note"),                                                       # a lone surrogate
    (b'{"action": "trigger", "tenant_id": "%s", "kind": "PAYMENT_FAILED", "context": %s}'
     % (TENANT.encode(), b'{"a": ' * 40 + b'1' + b'}' * 40), "context.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"),
    (json.dumps(["trigger"]).encode(), "body"),
    (b"[" * 30_000 + b"]" * 30_000, "body"),                                                  # past Python's recursion
])
def test_bad_event_bodies_are_named_400s_and_write_nothing(client, tokens, databases, body, field):
    response = client.post("/v1/events", content=body, headers={**auth(tokens["events"]),
                                                                 "Content-Type": "application/json"})
    assert_problem(response, 400, field)
    assert scalar(databases, "SELECT count(*) FROM notify.alerts") == 0


def test_an_oversized_body_is_a_413_and_writes_nothing(client, tokens, databases):
    rows = [{"tenant_id": TENANT, "metric": "runs_used", "value": n} for n in range(MAX_BODY // 50)]
    body = json.dumps({"snapshots": rows}).encode()
    assert len(body) > MAX_BODY
    response = client.post("/v1/snapshots", content=body, headers={**auth(tokens["snapshots"]),
                                                                    "Content-Type": "application/json"})
    assert_problem(response, 413, "body")
    assert scalar(databases, "SELECT count(*) FROM notify.quota_snapshots") == 0


def test_a_body_that_is_not_json_by_media_type_is_a_415(client, tokens, databases):
    response = client.post("/v1/events", content=b"action=trigger", headers={
        **auth(tokens["events"]), "Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 415, "Content-Type")
    assert scalar(databases, "SELECT count(*) FROM notify.alerts") == 0


def test_unknown_paths_and_methods_answer_problems(client, tokens):
    assert_problem(client.get("/v1/nothing", headers=auth(tokens["read"])), 404)
    response = client.delete("/v1/events", headers=auth(tokens["admin"]))
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer ne_wrong"}, {"Authorization": "Basic dXNlcjpwdw=="},
                                     {"Authorization": "Bearer"}])
def test_requests_without_a_valid_token_are_401(client, headers):
    response = client.get("/v1/alerts", headers=headers)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_401_from_the_next_request_on(app, client, tokens):
    assert client.get("/v1/alerts", headers=auth(tokens["read"])).status_code == 200
    revoke_token(app, "svc-read")
    assert_problem(client.get("/v1/alerts", headers=auth(tokens["read"])), 401)


def test_failed_authentication_is_rate_limited_per_address_and_logged_without_the_token(client, tokens, caplog):
    guess = "ne_" + "x" * 43
    with caplog.at_level(logging.WARNING, logger="engine.api"):
        for _ in range(3):   # api.auth_failure_burst in the fixture
            assert client.get("/v1/alerts", headers=auth(guess)).status_code == 401
        limited = client.get("/v1/alerts", headers=auth(guess))
        assert_problem(limited, 429)
        assert int(limited.headers["Retry-After"]) > 0
        # While limited, even a right token is refused: a guess that hits learns nothing.
        assert client.get("/v1/alerts", headers=auth(tokens["read"])).status_code == 429
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "authentication failed from 127.0.0.1" in logged
    assert guess not in logged and tokens["read"] not in logged


def test_tokens_are_stored_hashed(app, tokens, databases):
    with databases.begin("notify") as conn:
        rows = conn.exec_driver_sql("SELECT name, token_sha256, scopes FROM notify.api_tokens ORDER BY name").all()
        dump = conn.exec_driver_sql("SELECT string_agg(t::text, ' ') FROM notify.api_tokens t").scalar()
    by_name = {r.name: r for r in rows}
    assert bytes(by_name["svc-read"].token_sha256) == hashlib.sha256(tokens["read"].encode()).digest()
    assert all(t not in dump for t in tokens.values())


# ------------------------------------------------------------------------------ destinations


def test_destinations_add_list_remove_with_scopes(client, tokens, databases):
    body = {"tenant_id": TENANT, "channel": "email", "target": "billing@example.com"}
    assert_problem(client.post("/v1/destinations", json=body, headers=auth(tokens["operate"])), 403)
    added = client.post("/v1/destinations", json=body, headers=auth(tokens["admin"]))
    assert added.status_code == 201, added.text
    listed = client.get("/v1/destinations", params={"tenant_id": TENANT}, headers=auth(tokens["read"])).json()["items"]
    assert [(d["id"], d["target"]) for d in listed] == [(added.json()["id"], "billing@example.com")]
    assert_problem(client.post("/v1/destinations", json={**body, "target": "not an address"},
                               headers=auth(tokens["admin"])), 400, "target")
    assert_problem(client.delete(f"/v1/destinations/{uuid.uuid4()}", headers=auth(tokens["admin"])), 404, "id")
    removed = client.delete(f"/v1/destinations/{added.json()['id']}", headers=auth(tokens["admin"]))
    assert removed.status_code == 200
    assert scalar(databases, "SELECT count(*) FROM notify.destinations") == 0


def test_a_destination_test_send_over_http_reaches_the_receiver_and_answers_its_outcome(app, client, tokens,
                                                                                     databases, receiver):
    app.config.channels.webhook.allow_private_networks = True
    with databases.begin("notify") as conn:
        destination = str(add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="webhook",
                                          target=receiver.url("/hook")))
    path = f"/v1/destinations/{destination}/test"
    assert_problem(client.post(path, headers=auth(tokens["read"])), 403)
    answer = client.post(path, headers=auth(tokens["operate"]))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["outcome"], result["error"], result["destination_id"]) == ("sent", None, destination)
    (request,) = receiver.received
    assert request.json()["type"] == "destination.test"
    assert scalar(databases, "SELECT status FROM notify.notifications WHERE id = :id",
                  id=result["notification_id"]) == "sent"
    assert_problem(client.post(f"/v1/destinations/{uuid.uuid4()}/test", headers=auth(tokens["operate"])), 404, "id")


# ------------------------------------------------------------------------- openapi, unsubscribe


def test_the_openapi_document_is_valid_openapi_3_1_and_lists_every_route(client):
    response = client.get("/v1/openapi.json")   # public: no token
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    OpenAPIV31SpecValidator(document).validate()   # raises, naming the first problem
    from engine.api.routes import ROUTES

    assert {(r.path, r.method.lower()) for r in ROUTES} == {
        (path, method) for path, item in document["paths"].items() for method in item}


def test_unsubscribe_answers_501_until_its_module_exists(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "engine.unsubscribe", None)   # import fails, as before the merge
    assert_problem(client.get("/v1/unsubscribe/some-token"), 501)
    assert_problem(client.post("/v1/unsubscribe/some-token", data={"List-Unsubscribe": "One-Click"}), 501)


# ---------------------------------------------------------------------------------- config


def test_the_shipped_config_serves_the_api_on_loopback_and_bad_api_keys_are_named():
    from pathlib import Path

    from engine.config import load_config, parse_config
    from engine.errors import ConfigError

    shipped = load_config(Path(__file__).resolve().parent.parent / "config.yaml", environ={})
    assert shipped.api.listen == "127.0.0.1:9465" and shipped.api.max_body_bytes == 1024 * 1024
    assert parse_config({}, environ={}).api.listen is None   # left out: the API is off
    for raw, where in [({"api": {"listen": "nowhere"}}, "api.listen"), ({"api": {"max_body_bytes": 0}}, "api.max_body_bytes"),
                       ({"api": {"page_max": 0}}, "api.page_max"), ({"api": {"auth_failure_interval": "0s"}},
                                                                   "api.auth_failure_interval"),
                       ({"api": {"tokens": []}}, "api.tokens")]:
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            parse_config(raw, environ={})


# ------------------------------------------------------------------ Alertmanager's API v2


def prometheus_alert(**labels):
    return {"labels": {"alertname": "PaymentFailed", "tenant_id": TENANT, "kind": "PAYMENT_FAILED", **labels},
            "annotations": {"summary": "card declined"}, "startsAt": "2026-11-25T11:59:00.123456789Z",
            "endsAt": "2026-11-25T12:04:00Z", "generatorURL": "http://prometheus.local/graph"}


def test_prometheus_alerts_open_once_per_label_set_and_resolve_when_ended(client, tokens, databases, clock):
    post = lambda alerts: client.post("/api/v2/alerts", json=alerts, headers=auth(tokens["events"]))  # noqa: E731
    assert post([prometheus_alert(severity="warn"), prometheus_alert(instance="b")]).status_code == 200
    clock.advance(timedelta(seconds=30))
    assert post([prometheus_alert(severity="warn")]).status_code == 200   # Prometheus resends while firing
    with databases.begin("notify") as conn:
        rows = conn.exec_driver_sql("SELECT severity::text, status, context FROM notify.alerts ORDER BY severity").all()
    assert [(r[0], r[1]) for r in rows] == [("critical", "open"), ("warn", "open")]   # the kind's own, the label's
    assert rows[1][2]["event"]["labels"]["alertname"] == "PaymentFailed" and rows[1][2]["raised_by"] == "svc-events"
    ended = {**prometheus_alert(severity="warn"), "endsAt": "2026-11-25T12:00:10Z"}   # before the clock's now
    assert post([ended]).status_code == 200
    with databases.begin("notify") as conn:
        assert conn.exec_driver_sql("SELECT severity::text, status FROM notify.alerts ORDER BY severity").all() == \
            [("critical", "open"), ("warn", "resolved")]


def test_a_bad_alert_in_a_batch_is_named_and_the_others_are_applied(client, tokens, databases):
    no_tenant = prometheus_alert()
    del no_tenant["labels"]["tenant_id"]
    alerts = [prometheus_alert(), no_tenant, prometheus_alert(kind="HighLatency"), {**prometheus_alert(), "endsAt": "soon"}]
    response = client.post("/api/v2/alerts", json=alerts, headers=auth(tokens["events"]))
    problem = assert_problem(response, 400)
    assert [e["field"] for e in problem["errors"]] == ["[1].labels.tenant_id", "[2].labels.kind", "[3].endsAt"]
    assert scalar(databases, "SELECT count(*) FROM notify.alerts") == 1


def test_alert_labels_are_configurable(app, tokens):
    settings = ApiConfig(listen="127.0.0.1:0", alert_labels={"tenant_id": "customer", "kind": "alertname",
                                                              "severity": "severity", "base_id": "base_id"})
    server = ApiServer(app, settings).start()
    try:
        alert = {"labels": {"customer": TENANT, "alertname": "PAYMENT_FAILED"}}
        response = httpx.post(f"{server.url}/api/v2/alerts", json=[alert], headers=auth(tokens["events"]),
                              trust_env=False, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        server.stop()
    with app.databases.begin("notify") as conn:
        assert conn.exec_driver_sql("SELECT tenant_id::text, kind FROM notify.alerts").one() == (TENANT, "PAYMENT_FAILED")


def test_alertmanager_status_and_scopes(client, tokens):
    status = client.get("/api/v2/status", headers=auth(tokens["read"]))
    assert status.status_code == 200
    body = status.json()
    assert body["cluster"]["status"] == "disabled" and body["config"]["original"].startswith("#")
    assert set(body["versionInfo"]) == {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    assert_problem(client.get("/api/v2/status", headers=auth(tokens["events"])), 403)
    assert_problem(client.post("/api/v2/alerts", json=[prometheus_alert()], headers=auth(tokens["read"])), 403)


# ---------------------------------------------------------------------------- notifications


def test_notifications_are_paged_and_a_failed_one_is_retried_by_an_operate_token(app, client, tokens, databases):
    with app.databases.begin("notify") as conn:
        for n in range(5):
            add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email",
                            target=f"ops{n}@example.com")
    alert_id = trigger(client, tokens["events"]).json()["alert_id"]
    seen, cursor = [], None
    while True:
        page = client.get("/v1/notifications", params={"alert_id": alert_id, "limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=auth(tokens["read"])).json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    with databases.begin("notify") as conn:
        conn.exec_driver_sql(f"UPDATE notify.notifications SET status = 'failed', error = 'gave up' WHERE id = '{seen[0]}'")
    assert_problem(client.post(f"/v1/notifications/{seen[0]}/retry", headers=auth(tokens["read"])), 403)
    retried = client.post(f"/v1/notifications/{seen[0]}/retry", headers=auth(tokens["operate"]))
    assert retried.status_code == 200 and retried.json() == {"id": seen[0], "status": "queued"}
    assert scalar(databases, f"SELECT status FROM notify.notifications WHERE id = '{seen[0]}'") == "queued"
    assert_problem(client.post(f"/v1/notifications/{seen[0]}/retry", headers=auth(tokens["operate"])), 409)
    assert_problem(client.post(f"/v1/notifications/{uuid.uuid4()}/retry", headers=auth(tokens["operate"])), 404, "id")
    assert_problem(client.get("/v1/notifications", params={"status": "lost"}, headers=auth(tokens["read"])), 400, "status")


def test_one_click_unsubscribe_over_http_opts_the_destination_out_and_a_bad_token_is_a_400(app, client, databases):
    from cryptography.fernet import Fernet

    from engine.unsubscribe import make_unsubscribe_token

    app.config.channels.webhook.secret_key = Fernet.generate_key().decode()
    with app.databases.begin("notify") as conn:
        destination = add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email",
                                      target="owner@example.com")
    token = make_unsubscribe_token(app.config, destination, "RUNS_THRESHOLD", app.clock.now())
    page = client.get(f"/v1/unsubscribe/{token}")   # no token header: the signed link is the authority
    assert page.status_code == 200 and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert scalar(databases, "SELECT cardinality(opted_out_kinds) FROM notify.destinations") in (0, None)  # GET changes nothing
    done = client.post(f"/v1/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    assert scalar(databases, "SELECT opted_out_kinds FROM notify.destinations") == ["RUNS_THRESHOLD"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_problem(client.post(f"/v1/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}), 400, "token")
    assert_problem(client.post(f"/v1/unsubscribe/{token}", data={"other": "x"}), 400, "List-Unsubscribe")
