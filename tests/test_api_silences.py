"""Silences over the HTTP API (issue 16): /v1/silences, Alertmanager's /api/v2/silences and
/api/v2/silence/{id}, and amtool against the running API (issue 15, item 4). Real server on
loopback, real database, the engine's clock."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.alerts import raise_event
from tests.test_api import assert_problem, auth, client, server, tokens  # noqa: F401 - fixtures

TENANT = "7a1c2d3e-0000-4000-8000-000000000001"
AMTOOL = shutil.which("amtool") or ("/usr/bin/amtool" if shutil.os.path.exists("/usr/bin/amtool") else None)


@pytest.fixture
def known_tenant(app):
    raise_event(app, TENANT, "PAYMENT_FAILED")   # a tenant the engine has seen
    return TENANT


def audit_actions(app):
    with app.databases.begin("admin_log") as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT action, target_id, diff->>'actor' FROM admin_log.admin_events WHERE target_type = 'SILENCE' "
            "ORDER BY occurred_at, action"))]


def test_v1_silences_create_list_page_and_expire_with_scopes(app, client, tokens, known_tenant, clock):
    body = {"matchers": [{"name": "tenant", "value": TENANT}, {"name": "kind", "value": "PAYMENT_FAILED"}],
            "duration": "2h", "comment": "db upgrade"}
    assert_problem(client.post("/v1/silences", json=body, headers=auth(tokens["read"])), 403)
    created = client.post("/v1/silences", json=body, headers=auth(tokens["operate"]))
    assert created.status_code == 201, created.text
    first = created.json()["id"]
    clock.advance(timedelta(seconds=1))
    second = client.post("/v1/silences", json={**body, "starts_at": "2026-11-26T00:00:00Z"},
                         headers=auth(tokens["operate"])).json()["id"]
    page = client.get("/v1/silences?limit=1", headers=auth(tokens["read"])).json()
    assert [s["id"] for s in page["items"]] == [second] and page["items"][0]["state"] == "pending"
    rest = client.get(f"/v1/silences?limit=1&cursor={page['next_cursor']}", headers=auth(tokens["read"])).json()
    assert [s["id"] for s in rest["items"]] == [first] and rest["next_cursor"] is None
    assert rest["items"][0]["created_by"] == "svc-operate" and rest["items"][0]["suppressed"] == 0
    assert_problem(client.delete(f"/v1/silences/{first}", headers=auth(tokens["read"])), 403)
    expired = client.delete(f"/v1/silences/{first}", headers=auth(tokens["operate"]))
    assert expired.json() == {"id": first, "changed": True}
    assert client.delete(f"/v1/silences/{first}", headers=auth(tokens["operate"])).json()["changed"] is False
    assert [s["id"] for s in client.get("/v1/silences?state=expired", headers=auth(tokens["read"])).json()["items"]] \
        == [first]
    assert client.get(f"/v1/silences/{first}", headers=auth(tokens["read"])).json()["expired_by"] == "svc-operate"
    assert_problem(client.delete(f"/v1/silences/{uuid.uuid4()}", headers=auth(tokens["operate"])), 404)
    assert audit_actions(app) == sorted([("SILENCE_ADD", first, "svc-operate"), ("SILENCE_ADD", second, "svc-operate"),
                                         ("SILENCE_EXPIRE", first, "svc-operate")],
                                        key=lambda a: (a[0] != "SILENCE_ADD" or a[1] != first, a[0]))


@pytest.mark.parametrize("change, field", [
    ({"matchers": [{"name": "tenant", "value": "not-a-uuid"}]}, "matchers"),
    ({"matchers": [{"name": "colour", "value": "red"}]}, "matchers[0].name"),
    ({"matchers": [{"name": "kind", "value": "(", "isRegex": True}]}, "matchers"),
    ({"duration": "0s"}, "duration"),
    ({"comment": ""}, "comment"),
    ({"ends_at": "2026-11-25T13:00:00Z"}, "ends_at"),                 # with duration too
    ({"duration": None, "ends_at": "2026-11-25T11:00:00Z"}, "ends_at"),   # in the past
    ({"matchers": [{"name": "tenant", "value": "7a1c2d3e-0000-4000-8000-0000000000ff"}]}, "matchers"),  # unknown
])
def test_v1_bad_silences_are_400_naming_the_field_and_write_nothing(app, client, tokens, known_tenant, change, field):
    body = {"matchers": [{"name": "tenant", "value": TENANT}], "duration": "2h", "comment": "x", **change}
    body = {k: v for k, v in body.items() if v is not None}
    assert_problem(client.post("/v1/silences", json=body, headers=auth(tokens["operate"])), 400, field)
    with app.databases.begin("notify") as conn:
        assert conn.execute(text("SELECT count(*) FROM notify.silences")).scalar() == 0


def test_alertmanager_silences_round_trip_in_its_shapes_with_label_names_mapped(app, client, tokens, known_tenant):
    posted = {"matchers": [{"name": "tenant_id", "value": TENANT, "isRegex": False, "isEqual": True},
                           {"name": "alertname", "value": "Disk.*", "isRegex": True}],
              "startsAt": "2026-11-25T11:00:00Z", "endsAt": "2026-11-25T14:00:00.123456789Z",
              "createdBy": "alice", "comment": "disk swap"}
    created = client.post("/api/v2/silences", json=posted, headers=auth(tokens["operate"]))
    assert created.status_code == 200, created.text
    ident = created.json()["silenceID"]
    with app.databases.begin("notify") as conn:   # stored under the engine's label names
        stored = conn.execute(text("SELECT matchers, created_by FROM notify.silences")).one()
    assert stored.matchers[0]["name"] == "tenant" and stored.created_by == "alice"
    got = client.get(f"/api/v2/silence/{ident}", headers=auth(tokens["read"])).json()
    assert got["matchers"] == [{"name": "tenant_id", "value": TENANT, "isRegex": False, "isEqual": True},
                               {"name": "alertname", "value": "Disk.*", "isRegex": True, "isEqual": True}]
    assert (got["status"], got["createdBy"], got["comment"]) == ({"state": "active"}, "alice", "disk swap")
    assert got["startsAt"] == "2026-11-25T12:00:00+00:00"    # a start in the past is now
    listed = client.get("/api/v2/silences", headers=auth(tokens["read"])).json()
    assert [s["id"] for s in listed] == [ident]
    assert client.get("/api/v2/silences", params={"filter": 'alertname="Disk.*"'},
                      headers=auth(tokens["read"])).json()[0]["id"] == ident
    assert client.get("/api/v2/silences", params={"filter": 'alertname="Net"'}, headers=auth(tokens["read"])).json() == []
    assert client.delete(f"/api/v2/silence/{ident}", headers=auth(tokens["operate"])).status_code == 200
    assert client.get(f"/api/v2/silence/{ident}", headers=auth(tokens["read"])).json()["status"]["state"] == "expired"
    assert client.get("/api/v2/silences?expired=false", headers=auth(tokens["read"])).json() == []
    assert_problem(client.get(f"/api/v2/silence/{uuid.uuid4()}", headers=auth(tokens["read"])), 404)
    assert_problem(client.delete(f"/api/v2/silence/{uuid.uuid4()}", headers=auth(tokens["operate"])), 404)
    assert_problem(client.post("/api/v2/silences", json=posted, headers=auth(tokens["read"])), 403)
    assert_problem(client.post("/api/v2/silences", json={**posted, "matchers": []}, headers=auth(tokens["operate"])),
                   400, "matchers")


def test_alertmanager_post_with_an_id_replaces_that_silence(app, client, tokens, known_tenant):
    posted = {"matchers": [{"name": "kind", "value": "PAYMENT_FAILED", "isRegex": False}],
              "startsAt": "2026-11-25T12:00:00Z", "endsAt": "2026-11-25T14:00:00Z", "createdBy": "a", "comment": "c"}
    first = client.post("/api/v2/silences", json=posted, headers=auth(tokens["operate"])).json()["silenceID"]
    second = client.post("/api/v2/silences", json={**posted, "id": first, "endsAt": "2026-11-25T16:00:00Z"},
                         headers=auth(tokens["operate"])).json()["silenceID"]
    states = {s["id"]: s["status"]["state"] for s in client.get("/api/v2/silences", headers=auth(tokens["read"])).json()}
    assert states == {first: "expired", second: "active"}
    assert_problem(client.post("/api/v2/silences", json={**posted, "id": str(uuid.uuid4())},
                               headers=auth(tokens["operate"])), 404)


def test_a_silence_posted_through_the_api_suppresses_prometheus_alerts_by_their_labels(app, client, tokens):
    from engine.destinations import add_destination

    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email", target="o@example.com")
    raise_event(app, TENANT, "PAYMENT_FAILED", base_id="7a1c2d3e-0000-4000-8000-00000000b009")
    silence = {"matchers": [{"name": "alertname", "value": "BillingDown", "isRegex": False}],
               "startsAt": "2026-11-25T12:00:00Z", "endsAt": "2026-11-25T14:00:00Z", "createdBy": "a", "comment": "c"}
    ident = client.post("/api/v2/silences", json=silence, headers=auth(tokens["operate"])).json()["silenceID"]
    alert = {"labels": {"tenant_id": TENANT, "kind": "PAYMENT_FAILED", "alertname": "BillingDown"},
             "startsAt": "2026-11-25T11:59:00Z"}
    assert client.post("/api/v2/alerts", json=[alert], headers=auth(tokens["events"])).status_code == 200
    with app.databases.begin("notify") as conn:
        found = conn.execute(text("SELECT a.context->'event'->'labels'->>'alertname' AS name, n.status, n.suppressed_by "
                                  "FROM notify.notifications n JOIN notify.alerts a ON a.id = n.alert_id "
                                  "ORDER BY n.created_at, n.status")).all()
    assert sorted(((r.name, r.status, r.suppressed_by) for r in found), key=str) == sorted([
        (None, "queued", None), ("BillingDown", "suppressed", f"silence:{ident}")], key=str)


# ---------------------------------------------------------------------------------- amtool


@pytest.fixture
def amtool(server, tokens, tmp_path):
    if AMTOOL is None:
        pytest.skip("amtool is not installed (Debian package prometheus-alertmanager; scripts/bootstrap.sh "
                    "installs it as root)")
    token = __import__("engine.tokens", fromlist=["add_token"]).add_token(server._engine_app, "amtool",
                                                                           ["read", "operate"])
    http_config = tmp_path / "http.yml"
    http_config.write_text(f"authorization:\n  type: Bearer\n  credentials: {token}\n")

    def run(*args):
        done = subprocess.run([AMTOOL, f"--alertmanager.url={server.url}", f"--http.config.file={http_config}",
                               *args], capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_PROXY": "*"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def test_amtool_adds_queries_and_expires_silences(app, amtool, known_tenant, clock, monkeypatch):
    # amtool stamps startsAt and judges endsAt by the system clock: the engine reads the same one here.
    from datetime import datetime, timezone

    monkeypatch.setattr(clock, "now", lambda: datetime.now(timezone.utc))
    ident = amtool("silence", "add", f"tenant_id={TENANT}", "kind=PAYMENT_FAILED", "--duration=2h",
                   "--comment=amtool maintenance", "--author=bob").strip()
    assert uuid.UUID(ident)
    with app.databases.begin("notify") as conn:
        row = conn.execute(text("SELECT matchers, created_by, comment FROM notify.silences WHERE id = :i"),
                           {"i": ident}).one()
    assert [m["name"] for m in row.matchers] == ["tenant", "kind"]
    assert (row.created_by, row.comment) == ("bob", "amtool maintenance")
    queried = json.loads(amtool("silence", "query", "-o", "json"))
    assert [(s["id"], s["status"]["state"], s["createdBy"]) for s in queried] == [(ident, "active", "bob")]
    assert ident in amtool("silence", "query", "kind=PAYMENT_FAILED", "-q")
    amtool("silence", "expire", ident)
    assert json.loads(amtool("silence", "query", "-o", "json")) == []
    expired = json.loads(amtool("silence", "query", "--expired", "-o", "json"))
    assert [(s["id"], s["status"]["state"]) for s in expired] == [(ident, "expired")]
