"""Silence routes of the HTTP API (issue 16; backed by engine/silences.py, one implementation with
`notifyctl silence`): /v1/silences, and Alertmanager's /api/v2/silences and /api/v2/silence/{id}
in Alertmanager's JSON shapes, so amtool and Grafana manage silences here. Declared with
`@route(...)` like the rest (engine/api/routes.py); imported by engine/api/server.py.

Matcher names: /v1 speaks the engine's labels (tenant, kind, severity, base); /api/v2 the
labels of api.alert_labels (tenant_id, kind, severity, base_id by default), mapped both ways, and
any other label name as it is (matched against the labels of alerts posted to /api/v2/alerts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from aiohttp import web

from engine import silences as engine_silences
from engine.api.problems import ApiProblem, invalid
from engine.api.routes import (NULLABLE_TIME, SETTINGS_KEY, TIME, UUID, _page_query, actor,
                               blocking, log, one_page, parse_rfc3339, path_uuid, read_body,
                               read_query, respond, route)
from engine.errors import BadInput, NotFound
from engine.silences import MAX_COMMENT, MAX_MATCHERS, Matcher

# The CLI's flags in engine messages, as this API's fields.
_V1_FIELDS = {"--match": "matchers", "--comment": "comment", "--for": "duration", "--until": "ends_at",
              "--starts-at": "starts_at", "ID": "id"}
_AM_FIELDS = {"--match": "matchers", "--comment": "comment", "--for": "endsAt", "--until": "endsAt",
              "--starts-at": "startsAt", "ID": "silenceID"}


def _problem(exc: BadInput, fields: dict[str, str]) -> ApiProblem:
    head, sep, rest = str(exc).partition(": ")
    field, message = (fields[head], rest) if sep and head in fields else ("body", str(exc))
    if isinstance(exc, NotFound):
        return ApiProblem(404, "not-found", "Not found", message, errors=[{"field": field, "message": message}])
    return invalid([{"field": field, "message": message}])


def _time(value: Optional[str], field: str) -> Optional[datetime]:
    if value is None:
        return None
    parsed = parse_rfc3339(value)
    if parsed is None or parsed.year < 1970 or parsed.year > 9000:
        raise invalid([{"field": field, "message": f"not an RFC 3339 time (1970-9000): {value[:40]!r}"}])
    return parsed


# ------------------------------------------------------------------------------------ /v1

V1_MATCHER = {
    "type": "object", "additionalProperties": False, "required": ["name", "value"],
    "properties": {"name": {"type": "string", "enum": list(engine_silences.LABELS)},
                   "value": {"type": "string", "maxLength": 1000},
                   "isRegex": {"type": "boolean", "default": False},
                   "isEqual": {"type": "boolean", "default": True}},
}
V1_SILENCE_BODY = {
    "type": "object", "additionalProperties": False, "required": ["matchers", "comment"],
    "properties": {
        "matchers": {"type": "array", "minItems": 1, "maxItems": MAX_MATCHERS, "items": V1_MATCHER},
        "starts_at": {"type": "string", "format": "date-time", "description": "default now; later: a maintenance window"},
        "ends_at": {"type": "string", "format": "date-time", "description": "give ends_at or duration"},
        "duration": {"type": "string", "maxLength": 40, "description": "from starts_at: 2h, 30m, 1d"},
        "comment": {"type": "string", "minLength": 1, "maxLength": MAX_COMMENT},
    },
}
SILENCE = {
    "type": "object",
    "required": ["id", "state", "matchers", "match", "starts_at", "ends_at", "created_at", "created_by", "comment",
                 "expired_at", "expired_by", "suppressed"],
    "properties": {
        "id": UUID, "state": {"type": "string", "enum": list(engine_silences.STATES)},
        "matchers": {"type": "array", "items": {"type": "object"}}, "match": {"type": "string"},
        "starts_at": TIME, "ends_at": TIME, "ended_at": TIME, "created_at": TIME, "created_by": {"type": "string"},
        "comment": {"type": "string"}, "expired_at": NULLABLE_TIME, "expired_by": {"type": ["string", "null"]},
        "suppressed": {"type": "integer", "description": "notifications this silence suppressed"},
    },
}
SILENCES_QUERY = {"state": {"type": "string", "enum": list(engine_silences.STATES)}, **_page_query(500)}


def silences_query(page_max: int) -> dict[str, dict]:
    return {**SILENCES_QUERY, "limit": {**SILENCES_QUERY["limit"], "maximum": page_max}}


@route("GET", "/v1/silences", scope="read", tag="silences", query=SILENCES_QUERY,
       summary="List silences, newest first, one page at a time (as `notifyctl silence list --all`)",
       responses={200: ("One page of silences", {"type": "object", "required": ["items", "next_cursor"],
                                                 "properties": {"items": {"type": "array", "items": SILENCE},
                                                                "next_cursor": {"type": ["string", "null"]}}})})
async def list_silences(request: web.Request) -> web.Response:
    params = read_query(request, silences_query(request.app[SETTINGS_KEY].page_max))
    states = (params["state"],) if "state" in params else engine_silences.STATES
    return await one_page(request, params, engine_silences.list_silences, states=states)


@route("GET", "/v1/silences/{id}", scope="read", tag="silences", summary="One silence",
       responses={200: ("The silence", SILENCE)})
async def get_silence(request: web.Request) -> web.Response:
    read_query(request, {})
    ident = path_uuid(request)
    try:
        return respond(await blocking(request, engine_silences.get_silence, ident))
    except BadInput as exc:
        raise _problem(exc, _V1_FIELDS) from None


@route("POST", "/v1/silences", scope="operate", tag="silences", body=V1_SILENCE_BODY,
       summary="Add a silence (as `notifyctl silence add`; audited, created_by = the token's name)",
       responses={201: ("Added", {"type": "object", "required": ["id"], "properties": {"id": UUID}})})
async def add_silence(request: web.Request) -> web.Response:
    body = await read_body(request, V1_SILENCE_BODY)
    if ("ends_at" in body) == ("duration" in body):
        raise invalid([{"field": "ends_at", "message": "give exactly one of ends_at or duration"}])
    matchers = [Matcher(m["name"], m["value"], m.get("isRegex", False), m.get("isEqual", True))
                for m in body["matchers"]]
    try:
        duration = engine_silences.parse_for(body["duration"]) if "duration" in body else None
        ident = await blocking(request, engine_silences.add_silence, matchers,
                               starts_at=_time(body.get("starts_at"), "starts_at"),
                               ends_at=_time(body.get("ends_at"), "ends_at"), duration=duration,
                               comment=body["comment"], actor=actor(request))
    except BadInput as exc:
        raise _problem(exc, _V1_FIELDS) from None
    log.info("api: %s added silence %s", actor(request), ident)
    return respond({"id": ident}, status=201)


@route("DELETE", "/v1/silences/{id}", scope="operate", tag="silences",
       summary="Expire a silence now (as `notifyctl silence expire`; audited)",
       responses={200: ("Expired, or had already ended (changed: false)", {
           "type": "object", "required": ["id", "changed"],
           "properties": {"id": UUID, "changed": {"type": "boolean"}}})})
async def expire_silence(request: web.Request) -> web.Response:
    read_query(request, {})
    ident = path_uuid(request)
    try:
        changed = await blocking(request, engine_silences.expire_silence, ident, actor=actor(request))
    except BadInput as exc:
        raise _problem(exc, _V1_FIELDS) from None
    if changed:
        log.info("api: %s expired silence %s", actor(request), ident)
    return respond({"id": ident, "changed": changed})


# ----------------------------------------------------------------- Alertmanager's /api/v2

AM_MATCHER = {
    "type": "object", "required": ["name", "value", "isRegex"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                   "value": {"type": "string", "maxLength": 1000},
                   "isRegex": {"type": "boolean"}, "isEqual": {"type": "boolean", "default": True}},
}
AM_POSTABLE_SILENCE = {
    "type": "object", "required": ["matchers", "startsAt", "endsAt", "createdBy", "comment"],
    "properties": {
        "id": {"type": "string", "maxLength": 100},
        "matchers": {"type": "array", "minItems": 1, "maxItems": MAX_MATCHERS, "items": AM_MATCHER},
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string", "format": "date-time"},
        "createdBy": {"type": "string", "maxLength": 200},
        "comment": {"type": "string", "maxLength": MAX_COMMENT},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
AM_GETTABLE_SILENCE = {
    "type": "object", "required": ["id", "status", "updatedAt", "matchers", "startsAt", "endsAt", "createdBy",
                                   "comment"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "object", "required": ["state"],
                   "properties": {"state": {"type": "string", "enum": ["expired", "active", "pending"]}}},
        "updatedAt": TIME,
        "matchers": {"type": "array", "items": AM_MATCHER},
        "startsAt": TIME, "endsAt": TIME, "createdBy": {"type": "string"}, "comment": {"type": "string"},
        "annotations": {"type": "object"},
    },
}
AM_BOOL = {"type": "string", "enum": ["true", "false"]}
AM_SILENCES_QUERY = {
    "filter": {"type": "string", "maxLength": 1000,
               "description": "a matcher such as kind=\"PAYMENT_FAILED\" (may repeat): silences with a matcher of "
                              "that label whose value it accepts"},
    "active": AM_BOOL, "pending": AM_BOOL, "expired": AM_BOOL,
}


def _label_names(request: web.Request) -> tuple[dict[str, str], dict[str, str]]:
    """(engine name -> label, label -> engine name) from api.alert_labels."""
    labels = request.app[SETTINGS_KEY].alert_labels
    to_label = {"tenant": labels["tenant_id"], "kind": labels["kind"], "severity": labels["severity"],
                "base": labels["base_id"]}
    return to_label, {label: name for name, label in to_label.items()}


def _am_silence(row: dict, to_label: dict[str, str]) -> dict:
    matchers = [{"name": to_label.get(m["name"], m["name"]), "value": m["value"], "isRegex": m.get("isRegex", False),
                 "isEqual": m.get("isEqual", True)} for m in row["matchers"]]
    return {"id": str(row["id"]), "status": {"state": row["state"]},
            "updatedAt": (row["expired_at"] or row["created_at"]).isoformat(), "matchers": matchers,
            "startsAt": row["starts_at"].isoformat(),
            # Alertmanager shows an expired-early silence as ending when it was expired.
            "endsAt": row["ended_at"].isoformat(), "createdBy": row["created_by"], "comment": row["comment"],
            "annotations": {}}


def _am_filters(request: web.Request) -> list:
    """The `filter` matchers, parsed as Alertmanager parses them (engine/api/matchers.py: RE2, so a
    client's expression cannot make the server backtrack)."""
    from engine.api.matchers import MatcherError, parse_matcher

    errors, filters = [], []
    for name in request.query:
        if name not in AM_SILENCES_QUERY:
            errors.append({"field": name, "message": f"unknown query parameter (known: {', '.join(AM_SILENCES_QUERY)})"})
    for raw in request.query.getall("filter", []):
        try:
            if "\x00" in raw:
                raise MatcherError("NUL characters are not allowed")
            filters.append(parse_matcher(raw))
        except MatcherError as exc:
            errors.append({"field": "filter", "message": str(exc)})
    for flag in ("active", "pending", "expired"):
        values = request.query.getall(flag, [])
        if len(values) > 1 or (values and values[0] not in ("true", "false")):
            errors.append({"field": flag, "message": "expected true or false, once"})
    if errors:
        raise invalid(errors)
    return filters


def _passes(silence: dict, filters: list) -> bool:
    # Alertmanager's rule: every filter names a label one of the silence's matchers is on, and
    # accepts that matcher's value.
    for f in filters:
        values = [m["value"] for m in silence["matchers"] if m["name"] == f.name]
        if not any(f.matches(value) for value in values):
            return False
    return True


@route("GET", "/api/v2/silences", scope="read", tag="alertmanager", query=AM_SILENCES_QUERY,
       summary="Alertmanager's GET /api/v2/silences (amtool silence query)",
       responses={200: ("Every silence that passes the filters", {"type": "array", "items": AM_GETTABLE_SILENCE})})
async def alertmanager_silences(request: web.Request) -> web.Response:
    filters = _am_filters(request)
    states = tuple(s for s in engine_silences.STATES if request.query.get(s, "true") == "true")
    to_label, _ = _label_names(request)
    rows = await blocking(request, engine_silences.list_silences, states=states) if states else []
    shown = [_am_silence(r, to_label) for r in rows]
    return respond([s for s in shown if _passes(s, filters)])


@route("GET", "/api/v2/silence/{id}", scope="read", tag="alertmanager",
       summary="Alertmanager's GET /api/v2/silence/{silenceID}",
       responses={200: ("The silence", AM_GETTABLE_SILENCE)})
async def alertmanager_silence(request: web.Request) -> web.Response:
    read_query(request, {})
    ident = path_uuid(request)
    to_label, _ = _label_names(request)
    try:
        return respond(_am_silence(await blocking(request, engine_silences.get_silence, ident), to_label))
    except BadInput as exc:
        raise _problem(exc, _AM_FIELDS) from None


@route("POST", "/api/v2/silences", scope="operate", tag="alertmanager", body=AM_POSTABLE_SILENCE,
       summary="Alertmanager's POST /api/v2/silences (amtool silence add): create, or replace the silence `id`",
       description="With an `id`, that silence is expired and the new one takes its place (its id is answered), "
                   "as Alertmanager does when a silence's matchers change. createdBy is kept; the audit row names "
                   "the token.",
       responses={200: ("Created", {"type": "object", "required": ["silenceID"],
                                    "properties": {"silenceID": {"type": "string"}}}),
                  404: ("No silence with the given id", None)})
async def alertmanager_add_silence(request: web.Request) -> web.Response:
    body = await read_body(request, AM_POSTABLE_SILENCE)
    _, to_engine = _label_names(request)
    matchers = [Matcher(to_engine.get(m["name"], m["name"]), m["value"], m["isRegex"], m.get("isEqual", True))
                for m in body["matchers"]]
    starts = _time(body["startsAt"], "startsAt")
    ends = _time(body["endsAt"], "endsAt")
    replaced = body.get("id") or None

    def create(engine_app) -> Any:
        if replaced is not None:
            engine_silences.get_silence(engine_app, replaced, where="id")   # NotFound: 404
        now = engine_app.clock.now()
        ident = engine_silences.add_silence(
            engine_app, matchers, starts_at=max(starts, now), ends_at=ends, comment=body["comment"],
            actor=actor(request), created_by=body["createdBy"] or actor(request))
        if replaced is not None:
            engine_silences.expire_silence(engine_app, replaced, actor=actor(request), where="id")
        return ident

    try:
        ident = await blocking(request, create)
    except BadInput as exc:
        raise _problem(exc, {**_AM_FIELDS, "id": "id"}) from None
    log.info("api: %s added silence %s%s", actor(request), ident, f" replacing {replaced}" if replaced else "")
    return respond({"silenceID": str(ident)})


@route("DELETE", "/api/v2/silence/{id}", scope="operate", tag="alertmanager",
       summary="Alertmanager's DELETE /api/v2/silence/{silenceID} (amtool silence expire)",
       responses={200: ("Expired (or had already ended)", None)})
async def alertmanager_expire_silence(request: web.Request) -> web.Response:
    read_query(request, {})
    ident = path_uuid(request)
    try:
        await blocking(request, engine_silences.expire_silence, ident, actor=actor(request))
    except BadInput as exc:
        raise _problem(exc, _AM_FIELDS) from None
    return web.Response(status=200)
