"""Tenant destinations: where a tenant's alerts are delivered (add, list, remove).

Targets are validated here, at add time; whether a webhook URL may be reached (SSRF) is decided
again at every send, because DNS answers change.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Optional
from urllib.parse import urlsplit

from sqlalchemy import Connection

from engine.config import CHANNELS, SEVERITIES, Config
from engine.errors import BadInput
from engine.queries import query
from engine.secretbox import SecretBox

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_SLACK_CHANNEL = re.compile(r"^[#@]?[A-Za-z0-9._-]{1,80}$")


def validate_target(channel: str, target: str, *, where: str = "--target", allow_private_networks: bool = True) -> str:
    target = target.strip()
    if channel not in CHANNELS:
        raise BadInput(f"--channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
    if not target:
        raise BadInput(f"{where}: must not be empty")
    if channel == "email":
        addresses = [a.strip() for a in target.split(",")]
        bad = [a for a in addresses if not _EMAIL.match(a)]
        if bad:
            raise BadInput(f"{where}: not an email address: {bad[0]!r}")
        return ", ".join(addresses)
    if channel == "slack":
        if target.startswith(("https://", "http://")):
            return validate_url(target, where=where, allow_private_networks=allow_private_networks)
        if not _SLACK_CHANNEL.match(target):
            raise BadInput(f"{where}: expected a Slack channel id (C0123ABC), #name or an incoming-webhook URL")
        return target
    return validate_url(target, where=where, allow_private_networks=allow_private_networks)


def validate_url(target: str, *, where: str, allow_private_networks: bool = True) -> str:
    """The URL with its host in canonical form (what the HTTP clients connect to: UTS #46, so
    `127。0。0。1` is stored as 127.0.0.1); an IP-literal host in a blocked range is refused here
    unless private networks are allowed. Names are checked at every send (DNS answers change)."""
    from channels.ssrf import SsrfRefused, blocked_reason, canonical_url, literal_address  # aiohttp: only when needed

    try:
        parts = urlsplit(target)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise BadInput(f"{where}: not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"{where}: expected an http:// or https:// URL")
    if not parts.hostname:
        raise BadInput(f"{where}: the URL has no host")
    if any(c.isspace() or ord(c) < 32 for c in target):
        raise BadInput(f"{where}: a URL cannot contain spaces or control characters")
    if parts.username or parts.password:
        # Credentials in a URL end up in logs and listings; use a signing secret instead.
        raise BadInput(f"{where}: credentials in the URL are not accepted; use --secret to sign instead")
    del port
    try:
        target, host = canonical_url(target)
    except SsrfRefused:
        raise BadInput(f"{where}: the URL's host is not a valid host name") from None
    address = literal_address(host)
    reason = blocked_reason(address) if address is not None and not allow_private_networks else None
    if reason:
        raise BadInput(f"{where}: the URL's host is a {reason} address, which "
                       "channels.webhook.allow_private_networks: false refuses")
    return target


def masked_target(target: Optional[str]) -> Optional[str]:
    """A URL target for listings: long path segments and the query can be credentials (a Slack
    incoming-webhook URL is its own secret), so they are shortened to a recognisable prefix."""
    if not target or not target.startswith(("http://", "https://")):
        return target
    parts = urlsplit(target)
    segments = [s[:4] + "****" if len(s) >= 16 else s for s in parts.path.split("/")]
    shown = f"{parts.scheme}://{parts.netloc}{'/'.join(segments)}"
    return shown + ("?****" if parts.query else "")


def add_destination(conn: Connection, config: Config, now: datetime, *, tenant_id: str, channel: str,
                    target: str, secret: Optional[str] = None, kinds: Optional[list[str]] = None,
                    min_severity: str = "info") -> uuid.UUID:
    try:
        tenant = uuid.UUID(tenant_id)
    except ValueError:
        raise BadInput(f"--tenant: a tenant id must be a UUID, got {tenant_id!r}") from None
    target = validate_target(channel, target,
                             allow_private_networks=config.channels.webhook.allow_private_networks)
    if min_severity not in SEVERITIES:
        raise BadInput(f"--min-severity: expected one of {', '.join(SEVERITIES)}, got {min_severity!r}")
    if secret is not None and channel != "webhook":
        raise BadInput("--secret: only webhook destinations are signed")
    if secret is not None and not secret.strip():
        raise BadInput("--secret: must not be empty")
    ciphertext = SecretBox(config.channels.webhook.secret_key).encrypt(secret) if secret else None
    kinds = [k.strip() for k in kinds if k.strip()] if kinds else None
    return conn.execute(query("destinations", "add_destination"), dict(
        tenant_id=tenant, now=now, channel=channel, target=target, secret_ciphertext=ciphertext,
        kinds=kinds or None, min_severity=min_severity)).scalar_one()


def list_destinations(conn: Connection, tenant_id: Optional[str] = None) -> list[dict]:
    if tenant_id is not None:
        try:
            uuid.UUID(tenant_id)
        except ValueError:
            raise BadInput(f"--tenant: a tenant id must be a UUID, got {tenant_id!r}") from None
    rows = conn.execute(query("destinations", "list_destinations"), dict(tenant_id=tenant_id)).mappings()
    listed = []
    for row in rows:
        item = dict(row)
        # Masked: a listing says a secret exists, never what it is.
        item["secret"] = "********" if item.pop("has_secret") else None
        item["target"] = masked_target(item["target"])
        listed.append(item)
    return listed


def remove_destination(conn: Connection, destination_id: str) -> int:
    """Deletes the destination; its queued notifications end `skipped`. Returns how many."""
    try:
        dest = uuid.UUID(destination_id)
    except ValueError:
        raise BadInput(f"ID: a destination id must be a UUID, got {destination_id!r}") from None
    removed = conn.execute(query("destinations", "remove_destination"), dict(id=dest)).first()
    if removed is None:
        raise BadInput(f"ID: no destination {destination_id}")
    return conn.execute(query("destinations", "skip_queued_for_destination"), dict(
        tenant_id=removed.tenant_id, destination_id=removed.id, reason="destination removed")).rowcount
