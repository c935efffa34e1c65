"""Alertmanager's GET /api/v2/alerts, in its shape, for `amtool alert query` and the dashboards
that read an Alertmanager (declared with `@route` like every route; routes.py imports this module).

Every open or acked alert is listed, whatever raised it. An alert Prometheus posted shows the
labels and annotations it was posted with (kept in its context); any other alert gets labels
rebuilt from its columns under the names of api.alert_labels, plus `alertname` (its kind) and
`dedupe_key` (which keeps two alerts of one kind and tenant apart). The fingerprint is
Alertmanager's own function of the labels (FNV-1a), so a label set has the fingerprint a real
Alertmanager would give it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from aiohttp import web

from engine.api.matchers import MatcherError, compile_anchored, labels_match, parse_matcher
from engine.api.problems import ApiProblem, invalid
from engine.api.routes import SETTINGS_KEY, TIME, blocking, respond, route
from engine.api.validation import check
from engine.queries import query

# Go's zero time: what an Alertmanager client reads as "no end known". Prometheus' own endsAt is
# not kept; a firing alert ends when an endsAt in the past arrives.
NO_END = "0001-01-01T00:00:00Z"

LABEL_SET = {"type": "object", "additionalProperties": {"type": "string"}}
AM_GETTABLE_ALERT = {
    "type": "object",
    "required": ["labels", "annotations", "receivers", "fingerprint", "startsAt", "updatedAt", "endsAt", "status"],
    "properties": {
        "labels": LABEL_SET,
        "annotations": LABEL_SET,
        "receivers": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                 "properties": {"name": {"type": "string"}}}},
        "fingerprint": {"type": "string"},
        "startsAt": TIME,
        "updatedAt": TIME,
        "endsAt": TIME,
        "generatorURL": {"type": "string"},
        "status": {"type": "object", "required": ["state", "silencedBy", "inhibitedBy"], "properties": {
            "state": {"type": "string", "enum": ["unprocessed", "active", "suppressed"]},
            "silencedBy": {"type": "array", "items": {"type": "string"}},
            "inhibitedBy": {"type": "array", "items": {"type": "string"}},
        }},
    },
}


def _flag(what: str) -> dict:
    return {"type": "boolean", "default": True, "description": what}


MATCHER_PATTERN = r"^\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*(=~|=|!=|!~)"
AM_ALERTS_QUERY = {
    "active": _flag("include active alerts (default true); false leaves only suppressed and unprocessed ones"),
    "silenced": _flag("include silenced alerts (default true)"),
    "inhibited": _flag("include inhibited alerts (default true)"),
    "unprocessed": _flag("include alerts whose current transition is not planned yet (default true)"),
    "filter": {"type": "array", "maxItems": 50,
               "items": {"type": "string", "maxLength": 1000, "pattern": MATCHER_PATTERN},
               "description": "a label matcher, `alertname=\"X\"`, `tenant_id=~\"7a1c.*\"`, `severity!=info`; "
                              "repeat it for several (all must hold)"},
    "receiver": {"type": "string", "maxLength": 1000,
                 "description": "an RE2 regular expression; alerts planned for a receiver it matches whole"},
}
_TRUE, _FALSE = ("true", "1"), ("false", "0")


def read_alerts_query(request: web.Request) -> dict[str, Any]:
    """The query string as Alertmanager's client sends it: booleans, `filter` repeated. Unknown
    or repeated parameters, bad booleans and bad matchers are 400s naming them."""
    errors: list[dict] = []
    values: dict[str, Any] = {name: True for name in ("active", "silenced", "inhibited", "unprocessed")}
    for name in request.query:
        if name not in AM_ALERTS_QUERY:
            errors.append({"field": name, "message": f"unknown query parameter (known: {', '.join(AM_ALERTS_QUERY)})"})
        elif name != "filter" and len(request.query.getall(name)) > 1:
            errors.append({"field": name, "message": "given more than once"})
    for name in ("active", "silenced", "inhibited", "unprocessed"):
        raw = request.query.get(name)
        if raw is None:
            continue
        if raw.lower() in _TRUE + _FALSE:
            values[name] = raw.lower() in _TRUE
        else:
            errors.append({"field": name, "message": f"expected true or false, got {raw[:40]!r}"})
    filters = request.query.getall("filter", [])
    check(AM_ALERTS_QUERY["filter"], filters, "filter", errors)
    values["matchers"] = []
    if not any(e["field"].startswith("filter") for e in errors):
        for index, text in enumerate(filters):
            try:
                values["matchers"].append(parse_matcher(text))
            except MatcherError as exc:
                errors.append({"field": f"filter[{index}]", "message": str(exc)})
    receiver = request.query.get("receiver")
    values["receiver"] = None
    if receiver is not None:
        receiver_errors: list[dict] = []
        check(AM_ALERTS_QUERY["receiver"], receiver, "receiver", receiver_errors)
        errors.extend(receiver_errors)
        if not receiver_errors:
            try:
                values["receiver"] = compile_anchored(receiver)
            except MatcherError as exc:
                errors.append({"field": "receiver", "message": str(exc)})
    if errors:
        raise invalid(errors)
    return values


# ---------------------------------------------------------------------------- the alert's shape

_FNV_OFFSET, _FNV_PRIME, _MASK = 14695981039346656037, 1099511628211, 2**64 - 1


def fingerprint(labels: dict[str, str]) -> str:
    """prometheus/common model.LabelSet.Fingerprint: FNV-1a 64 over the sorted names and values,
    each followed by the byte 0xff; 16 hex digits as Alertmanager prints it."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8") + b"\xff":
                value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return f"{value:016x}"


def _string_map(value: Any) -> Optional[dict[str, str]]:
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return value
    return None


def _posted(context: dict) -> dict:
    """What Prometheus posted, as POST /api/v2/alerts keeps it: context.event (older rows: the top)."""
    event = context.get("event")
    return event if isinstance(event, dict) and "labels" in event else context


def alert_labels(row: dict, names: dict[str, str]) -> dict[str, str]:
    posted = _string_map(_posted(row["context"] or {}).get("labels"))
    if posted:
        return dict(posted)
    labels = {"alertname": row["kind"], names["tenant_id"]: str(row["tenant_id"]), names["kind"]: row["kind"],
              names["severity"]: row["severity"], "dedupe_key": row["dedupe_key"]}
    if row["base_id"] is not None:
        labels[names["base_id"]] = str(row["base_id"])
    return labels


def _time(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return None
    try:   # Go writes nanoseconds; 3.11's fromisoformat keeps the microseconds
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.isoformat() if parsed.tzinfo is not None else None


def gettable_alert(row: dict, labels: dict[str, str], fingerprints: dict) -> dict:
    posted = _posted(row["context"] or {})
    silenced_by, inhibited_by = [], []
    for reason in row["suppressed_by"]:
        source, _, rest = reason.partition(":")
        if source == "silence":
            silenced_by.append(rest)
        elif source == "inhibition":   # inhibition:<rule>:<alert id>: Alertmanager names the alert's fingerprint
            inhibitor = rest.rpartition(":")[2]
            inhibited_by.append(fingerprints.get(inhibitor, inhibitor))
    if row["unplanned"]:
        state = "unprocessed"
    elif row["latest_total"] and row["latest_suppressed"] == row["latest_total"]:
        state = "suppressed"
    else:
        state = "active"
    alert = {
        "labels": labels,
        "annotations": dict(_string_map(posted.get("annotations")) or {}),
        "receivers": [{"name": name} for name in row["receivers"]],
        "fingerprint": fingerprints[str(row["id"])],
        "startsAt": _time(posted.get("starts_at")) or row["first_seen_at"].isoformat(),
        "updatedAt": row["last_seen_at"].isoformat(),
        "endsAt": NO_END,
        "status": {"state": state, "silencedBy": silenced_by if state == "suppressed" else [],
                   "inhibitedBy": inhibited_by if state == "suppressed" else []},
    }
    if isinstance(posted.get("generator_url"), str):
        alert["generatorURL"] = posted["generator_url"]
    return alert


def _wanted(alert: dict, params: dict) -> bool:
    """Alertmanager's alertFilter and receiver filter."""
    status = alert["status"]
    if not params["active"] and status["state"] == "active":
        return False
    if not params["unprocessed"] and status["state"] == "unprocessed":
        return False
    if not params["silenced"] and status["silencedBy"]:
        return False
    if not params["inhibited"] and status["inhibitedBy"]:
        return False
    if params["receiver"] is not None and not any(params["receiver"].search(r["name"]) for r in alert["receivers"]):
        return False
    return labels_match(params["matchers"], alert["labels"])


def unresolved_alerts(engine_app) -> list[dict]:
    with engine_app.databases.begin("notify") as conn:
        return [dict(r) for r in conn.execute(query("alertmanager", "unresolved_alerts")).mappings()]


@route("GET", "/api/v2/alerts", scope="read", tag="alertmanager", query=AM_ALERTS_QUERY,
       summary="Alertmanager's GET /api/v2/alerts: every open or acked alert (`amtool alert query`)",
       description="Alertmanager's gettableAlerts, sorted by fingerprint. Labels: as Prometheus posted them, "
                   "else rebuilt (api.alert_labels, alertname, dedupe_key). status.state is `suppressed` while "
                   "every one of the alert's latest notifications was suppressed (silencedBy: silence ids, "
                   "inhibitedBy: the inhibiting alerts' fingerprints), `unprocessed` while its current transition "
                   "is not planned yet, else `active`. receivers: the route keys it was planned for "
                   "(`dest:<destination id>`, `route:<name>`). endsAt is Go's zero time (no end known).",
       responses={200: ("The alerts", {"type": "array", "items": AM_GETTABLE_ALERT}),
                  400: ("A bad parameter or matcher, named: a JSON string, as Alertmanager answers", {"type": "string"})})
async def get_alertmanager_alerts(request: web.Request) -> web.Response:
    try:
        params = read_alerts_query(request)
    except ApiProblem as problem:
        # Alertmanager answers a JSON string, the one error body its clients (amtool) decode and show.
        return web.json_response(problem.detail, status=problem.status)
    names = request.app[SETTINGS_KEY].alert_labels
    rows = await blocking(request, unresolved_alerts)
    labelled = [(row, alert_labels(row, names)) for row in rows]
    fingerprints = {str(row["id"]): fingerprint(labels) for row, labels in labelled}
    alerts = [gettable_alert(row, labels, fingerprints) for row, labels in labelled]
    return respond(sorted((a for a in alerts if _wanted(a, params)), key=lambda a: a["fingerprint"]))
