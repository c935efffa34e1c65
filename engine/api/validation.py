"""Request bodies and query strings checked against the same JSON Schema fragments the OpenAPI
document publishes (one declaration, two uses). Only the subset the API's schemas use is
implemented: object (properties, required, additionalProperties: false or a schema), array (items, minItems,
maxItems), string (enum, format uuid, minLength, maxLength), integer, number, boolean, null,
and a type list for nullable fields. Every problem is reported with its field path."""

from __future__ import annotations

import json
import uuid
from typing import Any

from engine.api.problems import ApiProblem, invalid

# Deeper JSON than this is refused: the redactor and PostgreSQL's jsonb both recurse.
MAX_DEPTH = 32

_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _is(value: Any, json_type: str) -> bool:
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[json_type])


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(schema: dict, value: Any, path: str, errors: list[dict], depth: int = 0) -> None:
    """Appends {field, message} for every way `value` departs from `schema`."""
    if depth > MAX_DEPTH:
        errors.append({"field": path or "body", "message": f"nested more than {MAX_DEPTH} levels deep"})
        return
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(_is(value, t) for t in allowed):
            errors.append({"field": path or "body",
                           "message": f"expected {' or '.join(allowed)}, got {_type_name(value)}"})
            return
    if isinstance(value, str):
        _check_string(schema, value, path, errors)
    elif "enum" in schema and value not in schema["enum"]:
        errors.append({"field": path or "body", "message": f"expected one of {schema['enum']}, got {value!r}"})
    elif isinstance(value, dict):
        _check_object(schema, value, path, errors, depth)
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append({"field": path or "body", "message": f"needs at least {schema['minItems']} items"})
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append({"field": path or "body", "message": f"at most {schema['maxItems']} items, got {len(value)}"})
        items = schema.get("items")
        if items is not None:
            for index, item in enumerate(value):
                check(items, item, f"{path}[{index}]", errors, depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append({"field": path, "message": f"must be at least {schema['minimum']}, got {value}"})
        if "maximum" in schema and value > schema["maximum"]:
            errors.append({"field": path, "message": f"must be at most {schema['maximum']}, got {value}"})


def _check_string(schema: dict, value: str, path: str, errors: list[dict]) -> None:
    field = path or "body"
    if "\x00" in value:
        # PostgreSQL text and jsonb cannot hold NUL.
        errors.append({"field": field, "message": "must not contain NUL characters"})
        return
    if not _encodable(value):
        # JSON's \ud800 escapes decode to lone surrogates, which no database encoding holds.
        errors.append({"field": field, "message": "not valid Unicode (a lone surrogate escape)"})
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append({"field": field, "message": f"expected one of {', '.join(map(str, schema['enum']))}, "
                                                  f"got {value[:60]!r}"})
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append({"field": field, "message": f"must be at least {schema['minLength']} characters"})
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append({"field": field, "message": f"must be at most {schema['maxLength']} characters"})
    if schema.get("format") == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            errors.append({"field": field, "message": f"must be a UUID, got {value[:60]!r}"})


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _check_object(schema: dict, value: dict, path: str, errors: list[dict], depth: int) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            errors.append({"field": _join(path, name), "message": "is required"})
    for key, item in value.items():
        if "\x00" in key or not _encodable(key):
            errors.append({"field": path or "body", "message": "a key must not contain NUL characters or lone surrogates"})
        elif key in properties:
            check(properties[key], item, _join(path, key), errors, depth + 1)
        elif schema.get("additionalProperties", True) is False:
            errors.append({"field": _join(path, key), "message": "unknown field"
                           + (f" (known: {', '.join(properties)})" if properties else "")})
        else:
            # A schema for the other keys' values (labels: strings) applies to each of them.
            extra = schema.get("additionalProperties")
            check(extra if isinstance(extra, dict) else {}, item, _join(path, key), errors, depth + 1)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """The body as JSON; 400 naming where it stops being JSON. NaN and Infinity, which Python
    would accept, are refused (jsonb cannot store them)."""
    if not body.strip():
        raise ApiProblem(400, "invalid-json", "Malformed JSON", "the request body is empty; expected a JSON object",
                         errors=[{"field": "body", "message": "empty"}])
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        message = "not UTF-8"
    except json.JSONDecodeError as exc:
        message = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:
        message = str(exc)
    except RecursionError:
        message = f"nested too deeply (at most {MAX_DEPTH} levels)"
    raise ApiProblem(400, "invalid-json", "Malformed JSON", f"the request body is not valid JSON: {message}",
                     errors=[{"field": "body", "message": message}])


def validated(schema: dict, value: Any, path: str = "") -> Any:
    errors: list[dict] = []
    check(schema, value, path, errors)
    if errors:
        raise invalid(errors)
    return value
