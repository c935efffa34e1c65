"""RFC 9457 problem details: every error answer of the API is `application/problem+json`
{type, title, status, detail, errors: [{field, message}]}, naming the bad field where there is one."""

from __future__ import annotations

import json
from typing import Optional

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Problem types are URNs: stable names a client can switch on, not pages to fetch.
TYPE_PREFIX = "urn:notify-engine:problem:"

# BadInput messages of the engine name a CLI argument; the API names its own field instead.
ENGINE_FIELDS = {"--tenant": "tenant_id", "--kind": "kind", "--base": "base_id", "--context": "context",
                 "--dedup-key": "dedup_key", "--status": "status", "ALERT_ID": "id", "ID": "id",
                 "--target": "target", "--channel": "channel", "--secret": "secret",
                 "--min-severity": "min_severity", "--severity": "severity"}


class ApiProblem(Exception):
    def __init__(self, status: int, kind: str, title: str, detail: str, *,
                 errors: Optional[list[dict]] = None, headers: Optional[dict] = None):
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"type": TYPE_PREFIX + self.kind, "title": self.title, "status": self.status,
                "detail": self.detail, "errors": self.errors}
        return web.Response(status=self.status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE,
                            headers=self.headers)


def invalid(errors: list[dict], detail: Optional[str] = None) -> ApiProblem:
    """400: the request's fields are wrong; `errors` names each."""
    first = errors[0]
    return ApiProblem(400, "invalid-request", "Invalid request",
                      detail or f"{first['field']}: {first['message']}"
                      + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), errors=errors)


def from_engine_message(message: str, *, default_field: str = "body") -> dict:
    """An engine BadInput message (`--tenant: a tenant id must be a UUID ...`) as {field, message}."""
    head, sep, rest = message.partition(": ")
    if sep and head in ENGINE_FIELDS:
        return {"field": ENGINE_FIELDS[head], "message": rest}
    return {"field": default_field, "message": message}


PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
