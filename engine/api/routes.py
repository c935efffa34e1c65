"""Every route of the HTTP API, in one place, each thin over the engine function the CLI calls.

A route is declared with `@route(...)`: method, path, the scope its token needs (None: public),
and the JSON Schema of its body and query parameters. The same declaration feeds request
validation (engine/api/validation.py) and the OpenAPI document (engine/api/openapi.py), so the
document cannot drift from what the server checks. Engine calls are blocking (SQLAlchemy): they
run in the API's thread pool, and each answers after its transaction committed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import html
import importlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable, Optional

import orjson
from aiohttp import web

from engine import alerts as engine_alerts
from engine import destinations as engine_destinations
from engine.api.problems import ApiProblem, from_engine_message, invalid
from engine.api.validation import check, parse_json, validated
from engine.config import CHANNELS, SEVERITIES
from engine.errors import BadInput, NotFound
from engine.snapshots import KNOWN_METRICS, WINDOWS
from engine.tokens import ApiToken

log = logging.getLogger("engine.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    scope: Optional[str]                 # None: no token needed
    summary: str
    description: str = ""
    body: Optional[dict] = None          # JSON Schema of the request body
    body_required: bool = True
    query: dict[str, dict] = field(default_factory=dict)   # name -> JSON Schema
    responses: dict[int, tuple[str, Optional[dict]]] = field(default_factory=dict)
    content_type: str = "application/json"   # of the success answers
    tag: str = "alerts"
    form: Optional[dict] = None          # JSON Schema of a form body (application/x-www-form-urlencoded)


ROUTES: list[Route] = []
_BY_HANDLER: dict = {}


def route(method: str, path: str, *, scope: Optional[str], summary: str, **spec):
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, path, handler, scope, summary, **spec))
        _BY_HANDLER[handler] = ROUTES[-1]
        return handler
    return register


def route_of(handler) -> Optional[Route]:
    """The declaration of a matched handler; None for aiohttp's own (404, 405) handlers."""
    return _BY_HANDLER.get(handler)


# ------------------------------------------------------------------------- shared machinery

# web.RequestKey is aiohttp 3.12+; a plain string key works on older versions.
TOKEN_KEY = web.RequestKey("api_token", ApiToken) if hasattr(web, "RequestKey") else "api_token"
APP_KEY = web.AppKey("engine_app", object)
SETTINGS_KEY = web.AppKey("api_settings", object)
RUN_KEY = web.AppKey("run_blocking", object)
ALERTS_QUERY_KEY = web.AppKey("alerts_query", dict)
OPENAPI_KEY = web.AppKey("openapi", dict)
STARTED_KEY = web.AppKey("started_at", datetime)
NOTIFICATIONS_QUERY_KEY = web.AppKey("notifications_query", dict)
EVENT_BATCHES_KEY = web.AppKey("event_batches", object)   # engine.api.event_batches.EventBatches


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def respond(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=_json_default), content_type="application/json")


async def blocking(request: web.Request, fn, *args, **kwargs):
    """Runs an engine call in the API's thread pool."""
    return await request.app[RUN_KEY](functools.partial(fn, request.app[APP_KEY], *args, **kwargs))


def actor(request: web.Request) -> str:
    token: ApiToken = request[TOKEN_KEY]
    return token.name


def engine_problem(exc: BadInput, *, default_field: str = "body") -> ApiProblem:
    item = from_engine_message(str(exc), default_field=default_field)
    if isinstance(exc, NotFound):
        return ApiProblem(404, "not-found", "Not found", item["message"], errors=[item])
    return invalid([item])


async def read_body(request: web.Request, schema: dict, *, required: bool = True,
                    well_formed: Optional[Callable[[bytes], Any]] = None) -> Any:
    """The JSON body, checked against `schema`: 415 for another media type, 413 past
    api.max_body_bytes, 400 for malformed JSON or bad fields (each named). `well_formed`, a fast
    path for the common case, returns the parsed body when `schema` certainly holds and None
    otherwise; then the full parse and check name what is wrong."""
    limit = request.app[SETTINGS_KEY].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    if not body and not required:
        return {}
    media = request.content_type
    if media != "application/json" and not media.endswith("+json"):
        raise ApiProblem(415, "unsupported-media-type", "Unsupported media type",
                         f"send the body as application/json, not {media or 'no Content-Type'}",
                         errors=[{"field": "Content-Type", "message": f"expected application/json, got {media!r}"}],
                         headers={"Accept-Post": "application/json"})
    if well_formed is not None:
        value = well_formed(body)
        if value is not None:
            return value
    return validated(schema, parse_json(body))


def too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "body-too-large", "Request body too large",
                      f"the body is larger than {limit} bytes (api.max_body_bytes); send smaller batches",
                      errors=[{"field": "body", "message": f"larger than {limit} bytes"}])


def read_query(request: web.Request, params: dict[str, dict]) -> dict[str, Any]:
    """Query parameters checked against their schemas; unknown or repeated ones are refused."""
    errors: list[dict] = []
    values: dict[str, Any] = {}
    for name in request.query:
        if name not in params:
            errors.append({"field": name, "message": "unknown query parameter"
                           + (f" (known: {', '.join(params)})" if params else "")})
        elif len(request.query.getall(name)) > 1:
            errors.append({"field": name, "message": "given more than once"})
    for name, schema in params.items():
        if name not in request.query:
            continue
        raw = request.query[name]
        if schema.get("type") == "integer":
            try:
                value: Any = int(raw)
            except ValueError:
                errors.append({"field": name, "message": f"expected a whole number, got {raw[:40]!r}"})
                continue
        else:
            value = raw
        value_errors: list[dict] = []
        check(schema, value, name, value_errors)
        errors.extend(value_errors)
        if not value_errors:
            values[name] = value
    if errors:
        raise invalid(errors)
    return values


def path_uuid(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid([{"field": name, "message": f"must be a UUID, got {value[:60]!r}"}]) from None


# ------------------------------------------------------------------------------- schemas

UUID = {"type": "string", "format": "uuid"}
NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _event_kinds() -> list[str]:
    from detectors import EVENT_KINDS
    return list(EVENT_KINDS)


def _all_kinds() -> list[str]:
    from detectors import ALL_KINDS
    return list(ALL_KINDS)


EVENT_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action", "tenant_id", "kind"],
    "properties": {
        "action": {"type": "string", "enum": ["trigger", "resolve"]},
        "tenant_id": UUID,
        "kind": {"type": "string", "enum": _event_kinds()},
        "base_id": NULLABLE_UUID,
        "dedup_key": {"type": ["string", "null"], "minLength": 1, "maxLength": engine_alerts.MAX_DEDUP_KEY,
                      "description": "names the alert within the tenant; leave out for the kind's own "
                                     "(the alert `notifyctl event raise` names)"},
        "context": {"type": ["object", "null"], "description": "kept with the alert (redacted) on trigger"},
    },
}
EVENT_ANSWER = {
    "type": "object",
    "required": ["status", "message", "dedup_key", "alert_id", "alert_status", "transition"],
    "properties": {
        "status": {"type": "string", "enum": ["success"]},
        "message": {"type": "string"},
        "dedup_key": {"type": "string"},
        "alert_id": NULLABLE_UUID,
        "alert_status": {"type": ["string", "null"], "enum": ["open", "ack", "resolved", None]},
        "transition": {"type": ["string", "null"], "enum": ["opened", "reopened", "refreshed", "resolved", None]},
    },
}

SNAPSHOT_ROW = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tenant_id", "metric", "value"],
    "properties": {
        "tenant_id": UUID,
        "base_id": NULLABLE_UUID,
        "metric": {"type": "string", "enum": list(KNOWN_METRICS)},
        "value": {"type": "number"},
        "window": {"type": "string", "enum": list(WINDOWS)},
    },
}
MAX_SNAPSHOT_ROWS = 10_000
SNAPSHOTS_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["snapshots"],
    "properties": {"snapshots": {"type": "array", "minItems": 1, "maxItems": MAX_SNAPSHOT_ROWS, "items": SNAPSHOT_ROW}},
}
ROW_ERROR = {"type": "object", "required": ["index", "field", "message"],
             "properties": {"index": {"type": "integer"}, "field": {"type": "string"}, "message": {"type": "string"}}}
SNAPSHOTS_ANSWER = {
    "type": "object",
    "required": ["written", "rejected", "errors"],
    "properties": {"written": {"type": "integer"}, "rejected": {"type": "integer"},
                   "errors": {"type": "array", "items": ROW_ERROR}},
}

ALERT = {
    "type": "object",
    "required": ["id", "tenant_id", "base_id", "kind", "severity", "status", "dedupe_key", "first_seen_at",
                 "last_seen_at", "context"],
    "properties": {
        "id": UUID, "tenant_id": UUID, "base_id": NULLABLE_UUID, "kind": {"type": "string"},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "status": {"type": "string", "enum": list(engine_alerts.ALERT_STATUSES)},
        "dedupe_key": {"type": "string"}, "first_seen_at": TIME, "last_seen_at": TIME, "last_evidence_at": TIME,
        "created_at": TIME, "transition": {"type": "string"}, "transition_seq": {"type": "integer"},
        "transition_at": TIME, "acked_at": NULLABLE_TIME, "acked_by": {"type": ["string", "null"]},
        "resolved_at": NULLABLE_TIME, "context": {"type": "object"},
    },
}
NOTIFICATION = {
    "type": "object",
    "required": ["id", "alert_id", "channel", "recipient", "status", "send_attempts", "last_attempt_at", "error"],
    "properties": {
        "id": UUID, "alert_id": NULLABLE_UUID, "channel": {"type": "string"}, "recipient": {"type": ["string", "null"]},
        "status": {"type": "string"}, "send_attempts": {"type": "integer"}, "last_attempt_at": NULLABLE_TIME,
        "error": {"type": ["string", "null"]},
    },
}
ALERT_DETAIL = {**ALERT, "required": ALERT["required"] + ["notifications"],
                "properties": {**ALERT["properties"], "notifications": {"type": "array", "items": NOTIFICATION}}}
ALERT_PAGE = {"type": "object", "required": ["items", "next_cursor"],
              "properties": {"items": {"type": "array", "items": ALERT}, "next_cursor": {"type": ["string", "null"]}}}
OPERATOR_BODY = {"type": "object", "additionalProperties": False,
                 "properties": {"comment": {"type": ["string", "null"], "maxLength": 2000,
                                            "description": "why; kept in the audit row (redacted)"}}}
OPERATOR_ANSWER = {"type": "object", "required": ["alert_id", "changed", "status", "message"],
                   "properties": {"alert_id": UUID, "changed": {"type": "boolean"},
                                  "status": {"type": "string", "enum": list(engine_alerts.ALERT_STATUSES)},
                                  "message": {"type": "string"}}}
DEFAULT_LIMIT = 100


def _page_query(page_max: int) -> dict[str, dict]:
    return {
        "limit": {"type": "integer", "minimum": 1, "maximum": page_max,
                  "description": f"items per page (default {DEFAULT_LIMIT}, at most api.page_max)"},
        "cursor": {"type": "string", "maxLength": 200, "description": "next_cursor of the previous page"},
    }


ALERTS_QUERY = {
    "status": {"type": "string", "enum": list(engine_alerts.ALERT_STATUSES)},
    "tenant_id": UUID,
    "kind": {"type": "string", "minLength": 1, "maxLength": engine_alerts.MAX_KIND,
             "description": "an engine kind or any posted one (a Prometheus alertname)"},
    **_page_query(500),  # the maximum is replaced by api.page_max in make_api_app
}


def encode_cursor(created_at: datetime, ident: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(ident)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def one_page(request: web.Request, params: dict, fetch, **filters) -> web.Response:
    """A listing's page: `fetch(app, **filters, limit=, after=)` (newest first) asked for one row more
    than the page holds, so the answer knows whether a next page exists without counting."""
    limit = params.get("limit", DEFAULT_LIMIT)
    after = decode_cursor(params["cursor"]) if "cursor" in params else None
    try:
        rows = await blocking(request, fetch, **filters, limit=limit + 1, after=after)
    except BadInput as exc:
        raise engine_problem(exc) from None
    next_cursor = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return respond({"items": rows[:limit], "next_cursor": next_cursor})


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:
            raise ValueError("naive time")
        return at, uuid.UUID(ident)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise invalid([{"field": "cursor", "message": "not a cursor this API gave out (use next_cursor as it came)"}]) from None


# ------------------------------------------------------------------------------- events


@route("POST", "/v1/events", scope="events", tag="events", body=EVENT_BODY,
       summary="Trigger or resolve an event alert (PagerDuty Events API v2 style)",
       description="Idempotent on the dedup key: a trigger of an alert already open (or acked) refreshes it "
                   "and answers 200; a trigger that opens or re-opens it, or a resolve that resolves it, "
                   "answers 202. The answer comes after the change (and its planned notifications) committed.",
       responses={202: ("The alert changed: opened, re-opened or resolved", EVENT_ANSWER),
                  200: ("Nothing changed: a duplicate trigger, or a resolve with no unresolved alert", EVENT_ANSWER)})
async def post_event(request: web.Request) -> web.Response:
    body = await read_body(request, EVENT_BODY)
    try:
        change = engine_alerts.event_change(body["tenant_id"], body["kind"], base_id=body.get("base_id"),
                                            dedup_key=body.get("dedup_key"), actor=actor(request),
                                            context=body.get("context"), resolve=body["action"] == "resolve")
    except BadInput as exc:
        raise engine_problem(exc) from None
    # Concurrent requests share a transaction (engine/api/event_batches.py); answered after its commit.
    result = engine_alerts.event_result(change, await request.app[EVENT_BATCHES_KEY].apply(change))
    changed = result.transition not in (None, "refreshed")
    known = result.after is not None
    return respond({"status": "success", "message": result.message, "dedup_key": _answer_key(body, result),
                    "alert_id": result.alert_id if known else None, "alert_status": result.after,
                    "transition": result.transition}, status=202 if changed else 200)


def _answer_key(body: dict, result) -> str:
    # The key to send again to name the same alert: the caller's, else the kind's own.
    return body.get("dedup_key") or result.dedupe_key


# ---------------------------------------------------------------------------- snapshots


@route("POST", "/v1/snapshots", scope="snapshots", tag="snapshots", body=SNAPSHOTS_BODY,
       summary="Record a batch of quota snapshots (as `notifyctl snapshot record`)",
       description="Each row is checked on its own: good rows are written (one COPY, committed before the "
                   "answer), each bad row is named by its index and field. 400 when no row could be written.",
       responses={200: ("Rows written; rejected rows named", SNAPSHOTS_ANSWER)})
async def post_snapshots(request: web.Request) -> web.Response:
    body = await read_body(request, {**SNAPSHOTS_BODY, "properties": {"snapshots": {
        "type": "array", "minItems": 1, "maxItems": MAX_SNAPSHOT_ROWS}}})
    rows = body["snapshots"]
    errors: list[dict] = []
    passed: list[tuple[int, dict]] = []
    for index, row in enumerate(rows):
        row_errors: list[dict] = []
        check(SNAPSHOT_ROW, row, f"snapshots[{index}]", row_errors)
        if row_errors:
            errors.extend({"index": index, **e} for e in row_errors)
        else:
            passed.append((index, row))
    written = 0
    if passed:
        from engine.collectors.push import record_snapshots

        result = await blocking(request, record_snapshots, [row for _, row in passed], source="api")
        written = result.written
        for rejection in result.rejected:   # "row N", 1-based among the rows handed in
            index = passed[int(rejection.row.split()[-1]) - 1][0]
            errors.append({"index": index, "field": f"snapshots[{index}]", "message": rejection.reason})
        if written:
            log.info("api: %s recorded %d snapshots", actor(request), written)
    errors.sort(key=lambda e: e["index"])
    rejected = len({e["index"] for e in errors})
    if not written and errors:
        raise ApiProblem(400, "invalid-request", "Invalid request",
                         f"no snapshot written: all {rejected} rows were rejected",
                         errors=[{"field": e["field"], "message": e["message"]} for e in errors[:100]])
    return respond({"written": written, "rejected": rejected, "errors": errors[:1000]})


# ------------------------------------------------------------------------------- alerts


@route("GET", "/v1/alerts", scope="read", query=ALERTS_QUERY,
       summary="List alerts, newest first, one page at a time",
       description="Filters as `notifyctl alerts`. Pages are ordered by creation (newest first) and walked "
                   "with `cursor`: every alert that existed when the walk began is seen exactly once.",
       responses={200: ("One page of alerts", ALERT_PAGE)})
async def list_alerts(request: web.Request) -> web.Response:
    params = read_query(request, request.app[ALERTS_QUERY_KEY])
    return await one_page(request, params, engine_alerts.list_alerts_page, status=params.get("status"),
                          tenant_id=params.get("tenant_id"), kind=params.get("kind"))


@route("GET", "/v1/alerts/{id}", scope="read",
       summary="One alert with its context and notifications",
       responses={200: ("The alert", ALERT_DETAIL)})
async def get_alert(request: web.Request) -> web.Response:
    read_query(request, {})
    ident = path_uuid(request)
    try:
        return respond(await blocking(request, engine_alerts.get_alert, ident))
    except BadInput as exc:
        raise engine_problem(exc) from None


async def _operator_action(request: web.Request, action) -> web.Response:
    ident = path_uuid(request)
    body = await read_body(request, OPERATOR_BODY, required=False)
    try:
        result = await blocking(request, action, ident, actor=actor(request), comment=body.get("comment"))
    except BadInput as exc:
        raise engine_problem(exc) from None
    return respond({"alert_id": result.alert_id, "changed": result.changed, "status": result.after,
                    "message": result.message})


@route("POST", "/v1/alerts/{id}/ack", scope="operate", body=OPERATOR_BODY, body_required=False,
       summary="Acknowledge an alert (audited in admin_log, actor = the token's name)",
       responses={200: ("Done, or nothing to do (changed: false)", OPERATOR_ANSWER)})
async def ack_alert(request: web.Request) -> web.Response:
    return await _operator_action(request, engine_alerts.ack_alert)


@route("POST", "/v1/alerts/{id}/resolve", scope="operate", body=OPERATOR_BODY, body_required=False,
       summary="Resolve an alert by hand (audited in admin_log, actor = the token's name)",
       responses={200: ("Done, or nothing to do (changed: false)", OPERATOR_ANSWER)})
async def resolve_alert(request: web.Request) -> web.Response:
    return await _operator_action(request, engine_alerts.resolve_alert)


# ------------------------------------------------------------------------- destinations

DESTINATION = {
    "type": "object",
    "required": ["id", "tenant_id", "channel", "target", "secret", "kinds", "min_severity", "enabled"],
    "properties": {
        "id": UUID, "tenant_id": UUID, "channel": {"type": "string", "enum": list(CHANNELS)},
        "target": {"type": "string"}, "secret": {"type": ["string", "null"], "description": "******** when set"},
        "kinds": {"type": ["array", "null"], "items": {"type": "string"}},
        "min_severity": {"type": "string", "enum": list(SEVERITIES)}, "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]}, "created_at": TIME,
    },
}
DESTINATION_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tenant_id", "channel", "target"],
    "properties": {
        "tenant_id": UUID,
        "channel": {"type": "string", "enum": list(CHANNELS)},
        "target": {"type": "string", "minLength": 1, "maxLength": 2000},
        "secret": {"type": ["string", "null"], "minLength": 1, "maxLength": 500,
                   "description": "webhook signing secret; stored encrypted, never shown again"},
        "kinds": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "enum": _all_kinds()}},
        "min_severity": {"type": "string", "enum": list(SEVERITIES)},
        # Noise control (docs/NOISE.md), as `destinations add --digest ... --quiet-hours ...`.
        "digest": {"type": "string", "enum": ["immediate", "hourly", "daily"]},
        "digest_at": {"type": "string", "maxLength": 5, "description": "local time HH:MM"},
        "quiet_hours": {"type": "string", "maxLength": 11, "description": "local window START-END, e.g. 22:00-07:00"},
        "rate_limit": {"type": "string", "maxLength": 40, "description": "N/WINDOW (10/1h), off or default"},
        "grouped_payload": {"type": "boolean", "description": "webhooks: group messages as payload version 2"},
    },
}
NOISE_FIELDS = ("digest", "digest_at", "quiet_hours", "rate_limit", "grouped_payload")


def _add_destination_with_noise(conn, app, body: dict):
    ident = engine_destinations.add_destination(
        conn, app.config, app.clock.now(), tenant_id=body["tenant_id"], channel=body["channel"],
        target=body["target"], secret=body.get("secret"), kinds=body.get("kinds"),
        min_severity=body.get("min_severity") or "info")
    noise = {name: body.get(name) for name in NOISE_FIELDS}
    if any(value is not None for value in noise.values()):
        from engine.noise import set_destination_noise

        set_destination_noise(conn, str(ident), **noise)
    return ident


@route("GET", "/v1/destinations", scope="read", tag="destinations",
       query={"tenant_id": UUID},
       summary="List destinations (secrets masked), as `notifyctl destinations list`",
       responses={200: ("Every destination (of the tenant)", {"type": "object", "required": ["items"],
                        "properties": {"items": {"type": "array", "items": DESTINATION}}})})
async def list_destinations(request: web.Request) -> web.Response:
    params = read_query(request, {"tenant_id": UUID})
    rows = await blocking(request, _in_transaction, engine_destinations.list_destinations, params.get("tenant_id"))
    return respond({"items": rows})


@route("POST", "/v1/destinations", scope="admin", tag="destinations", body=DESTINATION_BODY,
       summary="Add a destination, as `notifyctl destinations add`",
       responses={201: ("Added", {"type": "object", "required": ["id"], "properties": {"id": UUID}})})
async def add_destination(request: web.Request) -> web.Response:
    body = await read_body(request, DESTINATION_BODY)
    app = request.app[APP_KEY]
    try:
        ident = await blocking(request, _in_transaction, _add_destination_with_noise, app, body)
    except BadInput as exc:
        raise engine_problem(exc) from None
    log.info("api: %s added destination %s for tenant %s", actor(request), ident, body["tenant_id"])
    return respond({"id": ident}, status=201)


@route("DELETE", "/v1/destinations/{id}", scope="admin", tag="destinations",
       summary="Remove a destination; its queued notifications end skipped",
       responses={200: ("Removed", {"type": "object", "required": ["id", "skipped"],
                                    "properties": {"id": UUID, "skipped": {"type": "integer"}}})})
async def remove_destination(request: web.Request) -> web.Response:
    read_query(request, {})
    ident = path_uuid(request)
    try:
        skipped = await blocking(request, _in_transaction, engine_destinations.remove_destination, ident)
    except BadInput as exc:
        raise engine_problem(exc) from None
    log.info("api: %s removed destination %s", actor(request), ident)
    return respond({"id": ident, "skipped": skipped})


TEST_SEND = {
    "type": "object",
    "required": ["notification_id", "destination_id", "channel", "recipient", "outcome", "latency_ms", "error"],
    "properties": {
        "notification_id": UUID, "destination_id": UUID, "channel": {"type": "string", "enum": list(CHANNELS)},
        "recipient": {"type": "string", "description": "masked, as every listing shows it"},
        "outcome": {"type": "string", "enum": ["sent", "failed", "skipped"]},
        "latency_ms": {"type": "number"}, "error": {"type": ["string", "null"]},
    },
}


@route("POST", "/v1/destinations/{id}/test", scope="operate", tag="destinations",
       summary="Send one sample notification to a destination now (as `notifyctl destinations test`)",
       description="Through the real channel path (SSRF guard, signing, templates); recorded as a notification "
                   "row with transition `test` and its attempt in the ledger, never retried in the background. "
                   "A failed send is still a 200: the answer's `outcome` and `error` say what happened.",
       responses={200: ("The attempt was made (or skipped: a disabled destination)", TEST_SEND)})
async def test_destination(request: web.Request) -> web.Response:
    from engine.testsend import send_test_notification

    read_query(request, {})
    ident = path_uuid(request)
    try:
        result = await blocking(request, send_test_notification, ident)
    except BadInput as exc:
        raise engine_problem(exc) from None
    log.info("api: %s test-sent destination %s: %s", actor(request), ident, result.outcome)
    return respond(result.as_dict())


def _in_transaction(app, fn, *args):
    # engine.destinations works inside its caller's transaction, as the CLI calls it.
    with app.databases.begin("notify") as conn:
        return fn(conn, *args)


# -------------------------------------------------------------------------- notifications

NOTIFICATIONS_QUERY = {
    "status": {"type": "string", "enum": ["queued", "sent", "failed", "skipped", "held", "grouped", "suppressed"]},
    "alert_id": UUID,
    **_page_query(500),  # the maximum is replaced by api.page_max in make_api_app
}
NOTIFICATION_PAGE = {"type": "object", "required": ["items", "next_cursor"],
                     "properties": {"items": {"type": "array", "items": NOTIFICATION},
                                    "next_cursor": {"type": ["string", "null"]}}}


@route("GET", "/v1/notifications", scope="read", tag="notifications", query=NOTIFICATIONS_QUERY,
       summary="List delivery records, newest first, one page at a time (as `notifyctl notifications`)",
       responses={200: ("One page of notifications", NOTIFICATION_PAGE)})
async def list_notifications(request: web.Request) -> web.Response:
    from engine.notifications import list_notifications as listing

    params = read_query(request, request.app[NOTIFICATIONS_QUERY_KEY])
    return await one_page(request, params, listing, status=params.get("status"), alert_id=params.get("alert_id"))


@route("POST", "/v1/notifications/{id}/retry", scope="operate", tag="notifications",
       summary="Put a failed or skipped notification back in the queue, due now (as `notifyctl notifications retry`)",
       responses={200: ("Queued", {"type": "object", "required": ["id", "status"],
                                   "properties": {"id": UUID, "status": {"type": "string", "enum": ["queued"]}}}),
                  409: ("The notification is neither failed nor skipped", None)})
async def retry_notification(request: web.Request) -> web.Response:
    from engine.notifications import retry_notification as retry

    read_query(request, {})
    ident = path_uuid(request)
    try:
        await blocking(request, lambda engine_app: _in_transaction(
            engine_app, lambda conn: retry(conn, uuid.UUID(ident), engine_app.clock.now())))
    except NotFound as exc:
        raise engine_problem(exc) from None
    except BadInput as exc:
        raise ApiProblem(409, "conflict", "Conflict", from_engine_message(str(exc))["message"]) from None
    log.info("api: %s re-queued notification %s", actor(request), ident)
    return respond({"id": ident, "status": "queued"})


# ------------------------------------------------------------ Alertmanager's API v2 (the part clients use)
# Prometheus posts here as to an Alertmanager (alerting.alertmanagers[].authorization carries the
# token); labels name the tenant, kind, severity and base (api.alert_labels). Each distinct label
# set is its own alert (its fingerprint is the dedup key); an alert whose endsAt has passed
# resolves. Any alertname is a kind (engine.messages words it from its annotations).

AM_ALERT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["labels"],
    "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string", "format": "date-time"},
        "generatorURL": {"type": "string", "maxLength": 2000},
    },
}
MAX_AM_ALERTS = 10_000
AM_ALERTS_BODY = {"type": "array", "maxItems": MAX_AM_ALERTS, "items": AM_ALERT}
AM_STATUS = {
    "type": "object",
    "required": ["cluster", "versionInfo", "config", "uptime"],
    "properties": {
        "cluster": {"type": "object", "required": ["status"],
                    "properties": {"status": {"type": "string", "enum": ["ready", "settling", "disabled"]},
                                   "name": {"type": "string"}, "peers": {"type": "array"}}},
        "versionInfo": {"type": "object",
                        "required": ["version", "revision", "branch", "buildUser", "buildDate", "goVersion"],
                        "properties": {k: {"type": "string"} for k in
                                       ("version", "revision", "branch", "buildUser", "buildDate", "goVersion")}},
        "config": {"type": "object", "required": ["original"], "properties": {"original": {"type": "string"}}},
        "uptime": TIME,
    },
}
# Go writes nanoseconds; Python's datetime holds microseconds.
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@functools.lru_cache(maxsize=4096)   # a Prometheus batch repeats its startsAt values
def parse_rfc3339(value: str) -> Optional[datetime]:
    match = _RFC3339.match(value)
    if match is None:
        return None
    fraction = (match.group(2) or "")[:7]
    zone = "+00:00" if match.group(3) in ("Z", "z") else match.group(3)
    try:
        return datetime.fromisoformat(match.group(1).replace("t", "T").replace(" ", "T") + fraction + zone)
    except ValueError:
        return None


@functools.cache
def _detector_kinds() -> frozenset[str]:
    from detectors import SNAPSHOT_DETECTORS
    return frozenset(d.kind for d in SNAPSHOT_DETECTORS)


@functools.cache
def _event_kinds_by_name() -> dict:
    from detectors import EVENT_KINDS
    return EVENT_KINDS


# Prometheus writes `warning`; the engine's word is `warn`.
SEVERITY_ALIASES = {"warning": "warn"}
MAX_KIND = engine_alerts.MAX_KIND
_AM_FIELDS = frozenset(AM_ALERT["properties"])
_AM_URL_MAX = AM_ALERT["properties"]["generatorURL"]["maxLength"]


def _string_map(value: Any) -> bool:
    if type(value) is not dict:
        return False
    for item in value.values():
        if type(item) is not str:
            return False
    return True


def well_formed_am_alerts(body: bytes) -> Optional[list]:
    """The fast path of POST /api/v2/alerts' body (what Prometheus sends): the parsed alerts when
    AM_ALERTS_BODY certainly holds, else None, and the full parse and check name what is wrong.
    orjson refuses what json.loads would turn into a lone surrogate (then the full path runs), so
    only NUL, which it accepts from a \\u0000 escape, is looked for in the bytes."""
    if b"\\u0000" in body:
        return None
    try:
        alerts = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(alerts) is not list or len(alerts) > MAX_AM_ALERTS:
        return None
    for alert in alerts:
        if type(alert) is not dict or not _AM_FIELDS.issuperset(alert) or not _string_map(alert.get("labels")):
            return None
        if "annotations" in alert and not _string_map(alert["annotations"]):
            return None
        for key in ("startsAt", "endsAt"):
            if key in alert and type(alert[key]) is not str:
                return None
        url = alert.get("generatorURL")
        if url is not None and (type(url) is not str or len(url) > _AM_URL_MAX):
            return None
    return alerts


@functools.lru_cache(maxsize=4096)   # tenants and bases repeat within a batch and across batches
def _label_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def label_set_key(labels: dict[str, str]) -> str:
    """The fingerprint in a posted alert's dedupe key: the sha256 of
    json.dumps(sorted(labels.items())), as alerts have been keyed from the start (an open alert
    keeps its key). When no character needs an escape (orjson, in one C pass, writes printable
    ASCII without a backslash), that text is the strings between quotes, written here directly."""
    items = sorted(labels.items())
    plain = orjson.dumps(items)
    if plain.isascii() and b"\\" not in plain and b"\x7f" not in plain:
        raw = ("[" + ", ".join([f'["{key}", "{value}"]' for key, value in items]) + "]").encode()
    else:
        raw = json.dumps(items).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:24]


def _am_event(alert: dict, index: int, settings, now: datetime) -> tuple[Optional[engine_alerts.EventChange], list[dict]]:
    """One posted alert as an event change (engine.alerts.apply_events), or the errors naming
    its bad parts. The kind is the kind label, else the alertname: an engine event kind
    (PAYMENT_FAILED) keeps its own key and severity, any other name is an alert of that kind
    with the generic Prometheus words (templates/words/*/prometheus.j2)."""
    where = f"[{index}]"
    labels = alert["labels"]
    names = settings.alert_labels
    errors: list[dict] = []

    def bad(label_key: str, message: str) -> None:
        errors.append({"field": f"{where}.labels.{names[label_key]}", "message": message})

    tenant = base = None
    tenant_text = labels.get(names["tenant_id"], settings.alert_default_tenant)
    if tenant_text is None:
        bad("tenant_id", "required: the label naming the tenant_id (or set api.alert_default_tenant)")
    else:
        try:
            tenant = _label_uuid(tenant_text)
        except ValueError:
            bad("tenant_id", f"a tenant id must be a UUID, got {tenant_text[:60]!r}")
    if names["base_id"] in labels:
        try:
            base = _label_uuid(labels[names["base_id"]])
        except ValueError:
            bad("base_id", f"a base id must be a UUID, got {labels[names['base_id']][:60]!r}")
    kind_label = names["kind"] if names["kind"] in labels else names.get("alertname", "alertname")
    kind = labels.get(kind_label)
    if not kind:
        bad("kind", f"required: the label naming the kind (or {kind_label!r})")
    elif len(kind) > MAX_KIND or not kind.isprintable():
        errors.append({"field": f"{where}.labels.{kind_label}",
                       "message": f"a kind is 1-{MAX_KIND} printable characters, got {kind[:60]!r}"})
    elif kind in _detector_kinds():
        # The detectors own these alerts' lifecycle (they resolve what they no longer see).
        errors.append({"field": f"{where}.labels.{kind_label}",
                       "message": f"{kind} alerts are raised by the engine's detectors, not posted"})
    severity = labels.get(names["severity"])
    if severity is not None:
        severity = SEVERITY_ALIASES.get(severity, severity)
        if severity not in SEVERITIES:
            bad("severity", f"expected one of {', '.join(SEVERITIES)} (or warning), got {severity[:40]!r}")
    times = {}
    for key in ("startsAt", "endsAt"):
        if alert.get(key):
            times[key] = parse_rfc3339(alert[key])
            if times[key] is None:
                errors.append({"field": f"{where}.{key}", "message": f"not an RFC 3339 time: {alert[key][:40]!r}"})
    if errors:
        return None, errors
    ends = times.get("endsAt")
    # Go's zero time (0001-01-01) is how clients say "no end".
    resolved = ends is not None and ends.year > 1 and ends <= now
    fingerprint = label_set_key(labels)
    event_kind = _event_kinds_by_name().get(kind)
    if event_kind is not None:
        dedupe_key = engine_alerts.event_dedupe_key(event_kind, base, f"am:{fingerprint}")
        severity = severity or event_kind.severity
    else:
        dedupe_key = f"am:{fingerprint}"
        severity = severity or "warn"
    context = {"labels": labels, "annotations": alert.get("annotations") or {},
               **({"generator_url": alert["generatorURL"]} if alert.get("generatorURL") else {}),
               **({"starts_at": alert["startsAt"]} if alert.get("startsAt") else {})}
    return engine_alerts.EventChange(tenant, kind, dedupe_key, resolve=resolved, base_id=base, severity=severity,
                                     context=None if resolved else context), []


def _apply_am_alerts(engine_app, alerts: list, settings, token_name: str) -> tuple[int, list[dict]]:
    """Maps the posted alerts to event changes and applies the good ones in one transaction;
    returns how many were applied and the errors naming the bad ones. Runs in the API's thread
    pool, so the loop is free for other requests meanwhile."""
    now = engine_app.clock.now()
    errors: list[dict] = []
    changes = []
    for index, alert in enumerate(alerts):
        change, alert_errors = _am_event(alert, index, settings, now)
        errors.extend(alert_errors)
        if change is not None:
            changes.append(change)
    if changes:
        engine_alerts.apply_events(engine_app, changes, actor=token_name)
    return len(changes), errors


@route("POST", "/api/v2/alerts", scope="events", tag="alertmanager", body=AM_ALERTS_BODY,
       summary="Alertmanager's POST /api/v2/alerts: what Prometheus sends",
       description="Labels name the tenant, kind, severity and base (api.alert_labels); without the kind label "
                   "the alertname is the kind, without the tenant label api.alert_default_tenant is the tenant. "
                   "Each label set is one alert; an alert whose endsAt has passed resolves. The batch is one "
                   "transaction, answered after commit. Valid alerts are applied even when others in the batch "
                   "are not; then the answer is a 400 naming the bad ones.",
       responses={200: ("Every alert applied", None)})
async def post_alertmanager_alerts(request: web.Request) -> web.Response:
    alerts = await read_body(request, AM_ALERTS_BODY, well_formed=well_formed_am_alerts)
    applied, errors = await blocking(request, _apply_am_alerts, alerts, request.app[SETTINGS_KEY], actor(request))
    if errors:
        raise ApiProblem(400, "invalid-request", "Invalid request",
                         f"{applied} of {len(alerts)} alerts applied; {errors[0]['field']}: {errors[0]['message']}",
                         errors=errors[:100])
    return web.Response(status=200)


@route("GET", "/api/v2/status", scope="read", tag="alertmanager",
       summary="Alertmanager's GET /api/v2/status (amtool, Grafana and Prometheus probe it)",
       responses={200: ("The status", AM_STATUS)})
async def alertmanager_status(request: web.Request) -> web.Response:
    read_query(request, {})
    from engine.cli import package_version

    return respond({
        "cluster": {"status": "disabled", "peers": []},
        "versionInfo": {"version": package_version(), "revision": "", "branch": "", "buildUser": "notify-engine",
                        "buildDate": "", "goVersion": "none (notify-engine, Python)"},
        # Alertmanager shows its YAML; ours holds secrets, so only where it came from is said.
        "config": {"original": f"# notify-engine: configured by {request.app[APP_KEY].config.source}\n"},
        "uptime": request.app[STARTED_KEY],
    })


# ---------------------------------------------------------------------- unsubscribe (RFC 8058)

HTML_HEADERS = {"Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
                "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _unsubscribe_module():
    try:
        return importlib.import_module("engine.unsubscribe")
    except ImportError:
        raise ApiProblem(501, "not-implemented", "Not implemented",
                         "unsubscribe links are not available in this build") from None


@route("GET", "/v1/unsubscribe/{token}", scope=None, tag="unsubscribe", content_type="text/html",
       summary="The confirmation page of an unsubscribe link (a form that POSTs back)",
       description="Changes nothing: mail scanners follow links. The signed token is the authority.",
       responses={200: ("An HTML page with one button", None)})
async def unsubscribe_page(request: web.Request) -> web.Response:
    _unsubscribe_module()
    action = html.escape(request.path, quote=True)
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body>"
            "<h1>Unsubscribe from these notifications?</h1>"
            f"<form method=\"post\" action=\"{action}\">"
            "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
            "<button type=\"submit\">Unsubscribe</button></form></body></html>")
    return web.Response(text=page, content_type="text/html", headers=HTML_HEADERS)


@route("POST", "/v1/unsubscribe/{token}", scope=None, tag="unsubscribe", content_type="text/html",
       summary="One-click unsubscribe (RFC 8058): form body List-Unsubscribe=One-Click",
       responses={200: ("Unsubscribed", None)})
async def unsubscribe(request: web.Request) -> web.Response:
    module = _unsubscribe_module()
    limit = request.app[SETTINGS_KEY].max_body_bytes
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    if form.get("List-Unsubscribe") != "One-Click":
        raise invalid([{"field": "List-Unsubscribe", "message": "expected the form field List-Unsubscribe=One-Click"}])
    app = request.app[APP_KEY]
    try:
        await blocking(request, lambda engine_app: module.opt_out(engine_app, request.match_info["token"],
                                                                  now=app.clock.now()))
    except BadInput as exc:
        raise invalid([{"field": "token", "message": str(exc)}]) from None
    return web.Response(text="<!doctype html><html><body><p>You are unsubscribed.</p></body></html>",
                        content_type="text/html", headers=HTML_HEADERS)


# ----------------------------------------------------- ack and resolve from the message (issue 17)

PAGE_HEADERS = {**HTML_HEADERS,
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                           "frame-ancestors 'none'"}
LINK_PAGE_RESPONSES = {400: ("The link is malformed or forged (its signature does not match)", None),
                       404: ("The link's alert no longer exists", None),
                       409: ("The link was already used", None),
                       410: ("The link has expired", None)}
CONFIRM_FORM = {"type": "object", "required": ["confirm"], "additionalProperties": True,
                "properties": {"confirm": {"type": "string", "enum": ["yes"]}}}


def _link_page(status: int, **context) -> web.Response:
    from engine.templating import environment

    accent = {"critical": "#b91c1c", "Critical": "#b91c1c", "Warning": "#b45309"}.get(
        (context.get("alert") or {}).get("severity", ""), "#1d4ed8")
    if context.get("state") == "refused":
        accent = "#6b7280"
    page = environment().get_template("pages/alert_action.html.j2").render(accent=accent, **context)
    return web.Response(status=status, text=page, content_type="text/html", headers=PAGE_HEADERS)


@route("GET", "/v1/alert-actions/{token}", scope=None, tag="alert-actions", content_type="text/html",
       summary="The confirmation page of an ack or resolve link in a message (a form that POSTs back)",
       description="Changes nothing: mail scanners follow links. The signed, single-use token is the authority.",
       responses={200: ("A page describing the alert, with one button", None), **LINK_PAGE_RESPONSES})
async def alert_action_page(request: web.Request) -> web.Response:
    from engine import action_links

    app = request.app[APP_KEY]
    now = app.clock.now()
    try:
        link = action_links.read_action_token(app.config, request.match_info["token"], now=now)
        alert, used = await blocking(request, lambda a: (action_links.link_alert(a, link),
                                                         action_links.link_used(a, link)))
        if used:
            raise action_links.LinkRefused(409, "this link was already used: each link works once")
    except action_links.LinkRefused as exc:
        return _link_page(exc.status, state="refused", message=str(exc))
    can_act = alert["status"] != "resolved" and not (link.action == "ack" and alert["status"] == "ack")
    words = action_links.alert_in_words(app, alert)
    return _link_page(200, state="confirm", action=link.action, alert=words, can_act=can_act, actor=link.actor,
                      expires=f"{link.expires_at:%Y-%m-%d %H:%M} UTC", action_path=request.path)


@route("POST", "/v1/alert-actions/{token}", scope=None, tag="alert-actions", content_type="text/html",
       form=CONFIRM_FORM, summary="Acknowledge or resolve the alert of a link in a message (its confirmation form)",
       description="Audited in admin_log with the link's recipient as the actor; uses the link up in the same "
                   "transaction.",
       responses={200: ("Done, or nothing to do (the alert was already so)", None), **LINK_PAGE_RESPONSES})
async def alert_action(request: web.Request) -> web.Response:
    from engine import action_links

    app = request.app[APP_KEY]
    limit = request.app[SETTINGS_KEY].max_body_bytes
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    if form.get("confirm") != "yes":
        return _link_page(400, state="refused", message="the form was not sent from the confirmation page "
                                                         "(confirm=yes is missing)")
    now = app.clock.now()
    try:
        link, result = await blocking(request, lambda a: action_links.use_link(a, request.match_info["token"],
                                                                               now=now))
        alert = await blocking(request, lambda a: action_links.link_alert(a, link))
    except action_links.LinkRefused as exc:
        return _link_page(exc.status, state="refused", message=str(exc))
    title = {"ack": "Alert acknowledged", "resolve": "Alert resolved"}[link.action] if result.changed else \
        "Nothing to do"
    outcome = (f"Recorded as {link.actor}." if result.changed else result.message[:1].upper() + result.message[1:] + ".")
    return _link_page(200, state="done", action=link.action, alert=action_links.alert_in_words(app, alert),
                      outcome_title=title, outcome=outcome)


SLACK_FORM = {"type": "object", "required": ["payload"], "additionalProperties": True,
              "properties": {"payload": {"type": "string"}}}
SLACK_ANSWER = {"type": "object", "required": ["ok"],
                "properties": {"ok": {"type": "boolean"}, "alert_id": {"type": "string"},
                               "changed": {"type": "boolean"}, "status": {"type": "string"}}}


@route("POST", "/slack/actions", scope=None, tag="alert-actions", form=SLACK_FORM,
       summary="Slack's interactivity callback: the Acknowledge and Resolve buttons of a message",
       description="Verified with channels.slack.signing_secret (Slack's v0 signature) and a 5-minute window on "
                   "X-Slack-Request-Timestamp; audited with the Slack user as the actor; the message is updated "
                   "(chat.update) to show who acted.",
       responses={200: ("Done, or nothing to do", SLACK_ANSWER),
                  401: ("Missing, forged or stale Slack signature", None),
                  403: ("channels.slack.signing_secret is not set", None),
                  404: ("The button's alert no longer exists", None)})
async def slack_actions(request: web.Request) -> web.Response:
    from urllib.parse import parse_qs

    from engine import action_links

    app = request.app[APP_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(request.app[SETTINGS_KEY].max_body_bytes) from None
    now = app.clock.now()
    try:
        # The signature is over the raw body: checked before anything in it is believed.
        action_links.verify_slack_signature(app.config.channels.slack.signing_secret, request.headers, body, now=now)
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            form = {}
        pressed = action_links.parse_slack_action((form.get("payload") or [None])[0])
        result = await blocking(request, lambda a: action_links.act_from_slack(a, pressed))
    except action_links.LinkRefused as exc:
        kind = {401: "unauthorized", 403: "forbidden", 404: "not-found"}.get(exc.status, "invalid-request")
        title = {401: "Unauthorized", 403: "Forbidden", 404: "Not found"}.get(exc.status, "Invalid request")
        field = "payload" if exc.status == 400 else "X-Slack-Signature"
        raise ApiProblem(exc.status, kind, title, str(exc), errors=[{"field": field, "message": str(exc)}]) from None
    if result.changed and pressed.channel and pressed.ts:
        await _show_slack_outcome(app, pressed, result, now)
    return respond({"ok": True, "alert_id": str(result.alert_id), "changed": result.changed,
                    "status": result.after or ""})


async def _show_slack_outcome(app, pressed, result, now: datetime) -> None:
    """chat.update: the message whose button was pressed, without the buttons that no longer
    apply, and a line saying who did what. A failure is logged: the action itself is done."""
    from channels.slack import SlackChannel

    message = pressed.message
    gone = {"notify_ack"} if result.after == "ack" else {"notify_ack", "notify_resolve"}
    blocks = []
    for block in message.get("blocks") or []:
        if block.get("type") == "actions":
            elements = [e for e in block.get("elements", []) if e.get("action_id") not in gone]
            if not elements:
                continue
            block = {**block, "elements": elements}
        blocks.append(block)
    user_id = pressed.user.split(" ", 1)[0].removeprefix("slack:")
    verb = "Acknowledged" if result.after == "ack" else "Resolved"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                    "text": f"{verb} by <@{user_id}> at {now:%Y-%m-%d %H:%M} UTC"}]})
    slack = SlackChannel(app.config.channels.slack)
    try:
        await slack.update_message(pressed.channel, pressed.ts, message.get("text") or verb, blocks)
    except Exception as exc:  # noqa: BLE001 - SlackApiError, connection errors: logged, not the caller's fault
        log.warning("slack actions: chat.update of %s %s failed: %s", pressed.channel, pressed.ts,
                    type(exc).__name__)
    finally:
        await slack.close()


# ------------------------------------------------------------------------------ openapi


@route("GET", "/v1/openapi.json", scope=None, tag="meta", summary="This API's OpenAPI 3.1 document",
       responses={200: ("The document", {"type": "object"})})
async def openapi_document(request: web.Request) -> web.Response:
    return respond(request.app[OPENAPI_KEY])


# Alertmanager's GET /api/v2/alerts lives in its own module; importing it declares its routes.
from engine.api import alertmanager  # noqa: E402,F401
