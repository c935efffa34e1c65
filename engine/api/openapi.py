"""The OpenAPI 3.1 document, built from the route declarations of engine/api/routes.py."""

from __future__ import annotations

import re

from engine.api.problems import PROBLEM_CONTENT_TYPE, PROBLEM_SCHEMA

_PARAM = re.compile(r"\{(\w+)\}")


def _problem(description: str) -> dict:
    # application/json: the same problem for a client whose Accept names JSON alone (engine/api/server.py).
    schema = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: schema, "application/json": schema}}


def build_document(routes, *, version: str, queries: dict[str, dict]) -> dict:
    """`queries`: a listing's query parameters with api.page_max in place (path -> schemas)."""
    paths: dict[str, dict] = {}
    for r in routes:
        operation: dict = {"operationId": r.handler.__name__, "summary": r.summary, "tags": [r.tag]}
        if r.description:
            operation["description"] = r.description
        parameters = []
        for name in _PARAM.findall(r.path):
            schema = {"type": "string"} if name == "token" else {"type": "string", "format": "uuid"}
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        query = queries.get(r.path, r.query) if r.method == "GET" else r.query
        for name, schema in query.items():
            parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
        if parameters:
            operation["parameters"] = parameters
        if r.scope is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-required-scope"] = r.scope
        else:
            operation["security"] = []
        if r.body is not None:
            operation["requestBody"] = {"required": r.body_required,
                                        "content": {"application/json": {"schema": r.body}}}
        elif r.path.startswith("/v1/unsubscribe/") and r.method == "POST":
            operation["requestBody"] = {"required": True, "content": {"application/x-www-form-urlencoded": {
                "schema": {"type": "object", "required": ["List-Unsubscribe"],
                           "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}}
        responses: dict = {}
        for status, (description, schema) in r.responses.items():
            if status >= 400 and schema is None:
                responses[str(status)] = _problem(description)
                continue
            responses[str(status)] = {"description": description}
            if schema is not None:
                responses[str(status)]["content"] = {r.content_type: {"schema": schema}}
            elif r.content_type != "application/json":   # an HTML page; an empty JSON answer has no content
                responses[str(status)]["content"] = {r.content_type: {}}
        if parameters or r.body is not None or r.path.startswith("/v1/unsubscribe/"):
            responses.setdefault("400", _problem("Bad input: malformed JSON, unknown field, wrong type, bad parameter; "
                                                 "each named"))
        if r.scope is not None:
            responses["401"] = _problem("No token, or a token that is unknown or revoked")
            responses["403"] = _problem(f"The token lacks the scope `{r.scope}`")
            responses["429"] = _problem("Too many failed authentications from this address; see Retry-After")
        if "{id}" in r.path:
            responses["404"] = _problem("No such item")
        if r.body is not None:
            responses["413"] = _problem("Body larger than api.max_body_bytes")
            responses["415"] = _problem("Body not sent as application/json")
        if r.path.startswith("/v1/unsubscribe/"):
            responses["413"] = _problem("Body larger than api.max_body_bytes")
            responses["501"] = _problem("Unsubscribe links are not available in this build")
        paths.setdefault(r.path, {})[r.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "notify-engine API", "version": version,
                 "description": "Events, snapshots and alerts of notify-engine. docs/API.md has the guide."},
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from `notifyctl tokens add`"}},
        },
    }
