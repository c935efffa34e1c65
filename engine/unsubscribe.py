"""One-click unsubscribe (RFC 8058) of a tenant destination from one alert kind.

A token names the destination, the kind and an expiry, and carries an HMAC-SHA256 over them, so
making one needs no database row and a forged or altered token is refused. The HMAC key is derived
from channels.webhook.secret_key (the first key signs; every configured key verifies, so a key
rotation leaves links already sent working until the old key is dropped). The API serves
GET/POST /v1/unsubscribe/{token} by calling `opt_out`; ops routes (config.yaml) have no
destination id and are never given a link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Optional

from engine.errors import BadInput, NotifyError
from engine.queries import query
from engine.secretbox import SecretBox, _read_or_create_key, generated_key_path, parse_keys

TOKEN_VERSION = "u1"
_KEY_LABEL = b"notify-engine unsubscribe v1"


def _signing_keys(config: Any, *, create: bool, label: bytes = _KEY_LABEL) -> list[bytes]:
    keys = parse_keys(config.channels.webhook.secret_key)
    if not keys and config.databases is None:
        SecretBox.for_config(config, create=create)  # registers the generated key with the log redactor
        generated = _read_or_create_key(generated_key_path(config.embedded), create=create)
        keys = [generated] if generated else []
    # A key of its own for this purpose, so a token never doubles as anything the Fernet key signs.
    return [hmac.new(key.encode(), label, hashlib.sha256).digest() for key in keys]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_unsubscribe_token(config: Any, destination_id: uuid.UUID, kind: str, now: datetime) -> str:
    """A URL-safe token that unsubscribes `destination_id` from `kind` until messages.unsubscribe_ttl
    after `now`. Raises NotifyError when no key is configured to sign it."""
    keys = _signing_keys(config, create=True)
    if not keys:
        raise NotifyError("unsubscribe links need channels.webhook.secret_key to sign them")
    expires = int((now + timedelta(seconds=float(config.messages.unsubscribe_ttl))).timestamp())
    body = _b64(json.dumps({"d": str(destination_id), "k": kind, "e": expires}, separators=(",", ":")).encode())
    signed = f"{TOKEN_VERSION}.{body}"
    return f"{signed}.{_b64(hmac.new(keys[0], signed.encode(), hashlib.sha256).digest())}"


def unsubscribe_url(config: Any, token: str) -> Optional[str]:
    """The link a List-Unsubscribe header carries; None when messages.public_url is not set."""
    base = config.messages.public_url
    return f"{base.rstrip('/')}/v1/unsubscribe/{token}" if base else None


def read_token(config: Any, token: str, *, now: datetime) -> tuple[uuid.UUID, str]:
    """The (destination id, kind) a valid token names; BadInput for a malformed, forged or expired one."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or len(token) > 1000:
        raise BadInput("unsubscribe: the link is malformed (copy the whole link from the email)")
    signed = f"{parts[0]}.{parts[1]}".encode()
    try:
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise BadInput("unsubscribe: the link is malformed (copy the whole link from the email)") from None
    keys = _signing_keys(config, create=False)
    if not any(hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), signature) for key in keys):
        raise BadInput("unsubscribe: the link is not valid (its signature does not match)")
    try:
        payload = json.loads(_unb64(parts[1]))
        destination_id, kind, expires = uuid.UUID(payload["d"]), str(payload["k"]), int(payload["e"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadInput("unsubscribe: the link is malformed (copy the whole link from the email)") from None
    if now.timestamp() >= expires:
        raise BadInput("unsubscribe: the link has expired; use the link in a more recent email")
    return destination_id, kind


def opt_out(app: Any, token: str, *, now: datetime) -> dict:
    """Marks the token's destination opted out of its kind (idempotent) and audits it in
    admin_log.admin_events (action DESTINATION_UNSUBSCRIBE, target_type DESTINATION). Returns
    {destination_id, tenant_id, kind, changed}; BadInput for a bad token or a removed destination."""
    destination_id, kind = read_token(app.config, token, now=now)
    with app.databases.begin("notify") as conn:
        row = conn.execute(query("destinations", "opt_out_kind"), {"id": destination_id, "kind": kind}).first()
        if row is None:
            raise BadInput("unsubscribe: this destination no longer exists; nothing more will be sent to it")
        result = {"destination_id": str(destination_id), "tenant_id": str(row.tenant_id), "kind": kind,
                  "changed": bool(row.changed)}
        if row.changed:
            audit = {"now": now, "tenant_id": row.tenant_id, "target_id": str(destination_id),
                     "diff": json.dumps({"opted_out_kinds": {"added": kind}, "actor": "recipient (one-click unsubscribe)"})}
            # Audited before the change commits, as operator actions are (engine.alerts).
            if app.databases.urls["admin_log"] == app.databases.urls["notify"]:
                conn.execute(query("destinations", "insert_unsubscribe_audit"), audit)
            else:
                with app.databases.begin("admin_log") as admin:
                    admin.execute(query("destinations", "insert_unsubscribe_audit"), audit)
    return result
