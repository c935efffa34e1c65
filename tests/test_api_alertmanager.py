"""Alertmanager's GET /api/v2/alerts (issue 16): a real API server on loopback over the real
database; alerts raised through POST /api/v2/alerts (as Prometheus does) and through the engine."""

from __future__ import annotations

import uuid

import httpx
import pytest

from engine.alerts import ack_alert, raise_event
from engine.api.alertmanager import fingerprint
from engine.api.matchers import MatcherError, labels_match, parse_matcher
from engine.api.server import ApiServer
from engine.config import ApiConfig
from engine.destinations import add_destination
from engine.tokens import add_token

TENANT = "7a1c2d3e-0000-4000-8000-000000000001"
OTHER = "9b2c2d3e-0000-4000-8000-000000000002"
BASE = "7a1c2d3e-0000-4000-8000-00000000b001"


@pytest.fixture
def client(app):
    server = ApiServer(app, ApiConfig(listen="127.0.0.1:0", auth_failure_burst=100)).start()
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as c:
        yield c
    server.stop()


@pytest.fixture
def tokens(app):
    return {scope: {"Authorization": f"Bearer {add_token(app, f'am-{scope}', [scope])}"} for scope in ("events", "read")}


def prometheus_alert(name="PaymentFailed", **labels):
    return {"labels": {"alertname": name, "tenant_id": TENANT, "kind": "PAYMENT_FAILED", **labels},
            "annotations": {"summary": "card declined"}, "startsAt": "2026-11-25T11:59:00.123456789Z",
            "generatorURL": "http://prometheus.local/graph?g0.expr=vector%281%29"}


def post(client, tokens, *alerts):
    response = client.post("/api/v2/alerts", json=list(alerts), headers=tokens["events"])
    assert response.status_code == 200, response.text


def listing(client, tokens, **params):
    response = client.get("/api/v2/alerts", params=params, headers=tokens["read"])
    assert response.status_code == 200, response.text
    return response.json()


def test_open_and_acked_alerts_are_listed_in_alertmanagers_shape(app, client, tokens):
    with app.databases.begin("notify") as conn:
        destination = add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email",
                                      target="ops@example.com")
    post(client, tokens, prometheus_alert(severity="warn"))
    event = raise_event(app, OTHER, "PAYMENT_FAILED", base_id=BASE, dedup_key="invoice-1")
    acked = raise_event(app, OTHER, "PAYMENT_FAILED", dedup_key="invoice-2")
    ack_alert(app, str(acked.alert_id), actor="ops")
    post(client, tokens, {**prometheus_alert(instance="gone"), "endsAt": "2026-11-25T11:59:30Z"})   # resolved

    alerts = listing(client, tokens)
    assert [a["fingerprint"] for a in alerts] == sorted(a["fingerprint"] for a in alerts)
    by_name = {a["labels"].get("dedupe_key", a["labels"]["alertname"]): a for a in alerts}
    assert set(by_name) == {"PaymentFailed", event.dedupe_key, acked.dedupe_key}   # not the resolved one

    posted = by_name["PaymentFailed"]
    assert posted["labels"] == {"alertname": "PaymentFailed", "tenant_id": TENANT, "kind": "PAYMENT_FAILED",
                                "severity": "warn"}   # as Prometheus posted them
    assert posted["annotations"] == {"summary": "card declined"}
    assert posted["generatorURL"] == "http://prometheus.local/graph?g0.expr=vector%281%29"
    assert posted["startsAt"] == "2026-11-25T11:59:00.123456+00:00"
    assert posted["fingerprint"] == fingerprint(posted["labels"])
    assert posted["receivers"] == [{"name": f"dest:{destination}"}]
    assert posted["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
    assert posted["endsAt"] == "0001-01-01T00:00:00Z" and posted["updatedAt"].startswith("2026-11-25T12:00:00")

    rebuilt = by_name[event.dedupe_key]
    assert rebuilt["labels"] == {"alertname": "PAYMENT_FAILED", "tenant_id": OTHER, "kind": "PAYMENT_FAILED",
                                 "severity": "critical", "base_id": BASE, "dedupe_key": event.dedupe_key}
    assert rebuilt["annotations"] == {} and rebuilt["receivers"] == [] and "generatorURL" not in rebuilt
    assert by_name[acked.dedupe_key]["status"]["state"] == "active"   # acked is still firing


def test_rebuilt_labels_follow_api_alert_labels(app, tokens):
    settings = ApiConfig(listen="127.0.0.1:0", alert_labels={"tenant_id": "customer", "kind": "alertname",
                                                              "severity": "priority", "base_id": "base_id"})
    server = ApiServer(app, settings).start()
    try:
        raise_event(app, TENANT, "PAYMENT_FAILED")
        response = httpx.get(f"{server.url}/api/v2/alerts", headers=tokens["read"], trust_env=False, timeout=10)
    finally:
        server.stop()
    (alert,) = response.json()
    assert alert["labels"] == {"alertname": "PAYMENT_FAILED", "customer": TENANT, "priority": "critical",
                               "dedupe_key": "payment_failed:base=-"}


def test_filter_matchers_select_as_alertmanagers_do(client, tokens):
    post(client, tokens, prometheus_alert(severity="warn"), prometheus_alert("CardExpired"),
         prometheus_alert("PaymentFailed", tenant_id=OTHER, team="billing"))

    def names(*filters, **params):
        return sorted((a["labels"]["alertname"], a["labels"]["tenant_id"][:2])
                      for a in listing(client, tokens, filter=list(filters), **params))

    assert names('alertname="PaymentFailed"') == [("PaymentFailed", "7a"), ("PaymentFailed", "9b")]
    assert names("alertname=PaymentFailed", 'tenant_id=~"7a1c.*"') == [("PaymentFailed", "7a")]
    assert names("alertname!~Pay.*") == [("CardExpired", "7a")]
    assert names('severity!="warn"') == [("CardExpired", "7a"), ("PaymentFailed", "9b")]
    assert names('team=""') == [("CardExpired", "7a"), ("PaymentFailed", "7a")]   # no such label: matches ""
    assert names('tenant_id=~"7a1c"') == []   # regexes match the whole value


@pytest.mark.parametrize("params, field", [
    ({"filter": "alertname"}, "filter[0]"),
    ({"filter": ["alertname=X", 'tenant_id=~"("']}, "filter[1]"),
    ({"filter": 'alertname=~"(?=x)"'}, "filter[0]"),      # look-ahead: not RE2, as in Go
    ({"filter": 'alertname="X'}, "filter[0]"),
    ({"filter": "{alertname=X}"}, "filter[0]"),           # one matcher per filter, no braces (as Alertmanager)
    ({"receiver": "dest:("}, "receiver"),
    ({"active": "maybe"}, "active"),
    ({"silenced": ["true", "false"]}, "silenced"),
    ({"colour": "red"}, "colour"),
])
def test_bad_parameters_are_400s_naming_them(client, tokens, params, field):
    response = client.get("/api/v2/alerts", params=params, headers=tokens["read"])
    assert response.status_code == 400, response.text
    # Alertmanager's error body, a JSON string (amtool shows it), naming the parameter first.
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json().startswith(f"{field}: ")


def test_only_a_read_token_lists(client, tokens):
    assert client.get("/api/v2/alerts", headers=tokens["events"]).status_code == 403
    assert client.get("/api/v2/alerts").status_code == 401


@pytest.mark.parametrize("accept, media_type", [(None, "application/problem+json"), ("*/*", "application/problem+json"),
                                                ("application/json", "application/json"),
                                                ("application/problem+json, application/json", "application/problem+json")])
def test_a_problem_is_labelled_json_for_a_client_that_accepts_only_json(client, tokens, accept, media_type):
    # Go's go-openapi clients (amtool) send Accept: application/json and read nothing else.
    headers = {**tokens["events"], **({"Accept": accept} if accept else {})}
    response = client.get("/api/v2/alerts", headers=headers)
    assert response.status_code == 403
    assert response.headers["Content-Type"].split(";")[0] == media_type
    assert response.json()["type"] == "urn:notify-engine:problem:forbidden"


def test_suppressed_alerts_name_their_silence_or_inhibitor_and_the_state_flags_filter(app, client, tokens, databases):
    with app.databases.begin("notify") as conn:
        add_destination(conn, app.config, app.clock.now(), tenant_id=TENANT, channel="email", target="ops@example.com")
    post(client, tokens, prometheus_alert("Silenced"), prometheus_alert("Inhibited"), prometheus_alert("Loud"))
    by_name = {a["labels"]["alertname"]: a for a in listing(client, tokens)}
    silence = str(uuid.uuid4())
    # What noise control records on a notification it keeps from being sent (ddl/notify/0015).
    with databases.begin("notify") as conn:
        ids = {name: conn.exec_driver_sql(
            "SELECT id FROM notify.alerts WHERE context->'event'->'labels'->>'alertname' = %s", (name,)).scalar()
            for name in by_name}
        conn.exec_driver_sql("UPDATE notify.notifications SET status = 'suppressed', suppressed_by = %s "
                             "WHERE alert_id = %s", (f"silence:{silence}", ids["Silenced"]))
        conn.exec_driver_sql("UPDATE notify.notifications SET status = 'suppressed', suppressed_by = %s "
                             "WHERE alert_id = %s", (f"inhibition:payment-outage:{ids['Loud']}", ids["Inhibited"]))
    by_name = {a["labels"]["alertname"]: a for a in listing(client, tokens)}
    assert by_name["Silenced"]["status"] == {"state": "suppressed", "silencedBy": [silence], "inhibitedBy": []}
    assert by_name["Inhibited"]["status"] == {"state": "suppressed", "silencedBy": [],
                                              "inhibitedBy": [by_name["Loud"]["fingerprint"]]}
    assert by_name["Loud"]["status"]["state"] == "active"

    def names(**params):
        return sorted(a["labels"]["alertname"] for a in listing(client, tokens, **params))

    # amtool's default: active=true and the other three false.
    assert names(active="true", silenced="false", inhibited="false", unprocessed="false") == ["Loud"]
    assert names(active="false") == ["Inhibited", "Silenced"]
    assert names(active="false", inhibited="false") == ["Silenced"]
    assert names(receiver="dest:.*") == ["Inhibited", "Loud", "Silenced"]
    assert names(receiver="route:.*") == []


@pytest.mark.parametrize("text, expected", [
    ('alertname="Disk full"', ("alertname", "=", "Disk full")),
    ("  severity != info  ", ("severity", "!=", "info")),
    ('job=~"api|web"', ("job", "=~", "api|web")),
    (r'msg="say \"hi\"\nbye"', ("msg", "=", 'say "hi"\nbye')),
    (r'path="C:\temp"', ("path", "=", r"C:\temp")),      # a spurious escape stays literal
    ("name=", ("name", "=", "")),
])
def test_matchers_parse_as_alertmanagers_parser(text, expected):
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.operator, matcher.value) == expected


@pytest.mark.parametrize("text", ["alertname", "9name=x", 'a="b', 'a=b"c', 'a=~"["', "=x"])
def test_malformed_matchers_are_refused(text):
    with pytest.raises(MatcherError):
        parse_matcher(text)


def test_regex_matchers_are_anchored_and_linear():
    matcher = parse_matcher('x=~"(a+)+b"')   # catastrophic for a backtracking engine
    assert not labels_match([matcher], {"x": "a" * 50_000})
    assert labels_match([parse_matcher("x=~a.c")], {"x": "abc"}) and not labels_match([parse_matcher("x=~b")], {"x": "abc"})


def test_fingerprints_are_prometheus_label_set_fingerprints():
    # prometheus/common model's own test vectors (signature_test.go).
    assert fingerprint({}) == f"{14695981039346656037:016x}"
    assert fingerprint({"name": "garland, briggs", "fear": "love is not enough"}) == f"{5799056148416392346:016x}"


def test_an_alert_whose_transition_is_not_planned_yet_is_unprocessed(client, tokens, databases):
    post(client, tokens, prometheus_alert("Planned"), prometheus_alert("Pending"))
    with databases.begin("notify") as conn:   # as a row written by something other than the engine's statements
        conn.exec_driver_sql("UPDATE notify.alerts SET planned_seq = transition_seq - 1 "
                             "WHERE context->'event'->'labels'->>'alertname' = 'Pending'")
    states = {a["labels"]["alertname"]: a["status"]["state"] for a in listing(client, tokens)}
    assert states == {"Planned": "active", "Pending": "unprocessed"}
    assert [a["labels"]["alertname"] for a in listing(client, tokens, unprocessed="false")] == ["Planned"]
    assert [a["labels"]["alertname"] for a in listing(client, tokens, active="false")] == ["Pending"]
