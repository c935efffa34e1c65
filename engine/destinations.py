"""Tenant destinations: where a tenant's alerts are delivered (add, list, remove, rekey).

Targets are validated here, at add time; whether a webhook URL may be reached (SSRF) is decided
again at every send, because DNS answers change.

Credentials are stored encrypted (engine.secretbox) in `secret_ciphertext`: a webhook's signing
secret, or a Slack incoming-webhook URL, whose `target` then holds only the masked form (the URL
is the credential). `masked_target` is the one masking rule of every listing and JSON output.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime
from typing import Optional
from urllib.parse import urlsplit

from sqlalchemy import Connection

from engine.config import CHANNELS, SEVERITIES, Config
from engine.errors import BadInput, NotFound
from engine.messages import check_locale, check_timezone
from engine.queries import query
from engine.secretbox import KEY_SETTING, SecretBox, SecretUnavailable, generated_key_path

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


# A whsec_ key shorter than this is refused (the Standard Webhooks libraries generate 24 to 64 bytes).
MIN_WHSEC_KEY_BYTES = 24


def check_signing_secret(secret: str, *, where: str = "--secret") -> str:
    """A `whsec_<base64>` secret must decode to a usable key: `whsec_` alone would sign with an
    empty HMAC key and `whsec_abc` fails every send. Any other string is the key itself."""
    if not secret.strip():
        raise BadInput(f"{where}: must not be empty")
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[len("whsec_"):], validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"{where}: a whsec_ secret must be whsec_ followed by base64") from None
        if len(key) < MIN_WHSEC_KEY_BYTES:
            raise BadInput(f"{where}: a whsec_ secret must hold at least {MIN_WHSEC_KEY_BYTES} bytes "
                           f"(base64 of {MIN_WHSEC_KEY_BYTES}+ random bytes), got {len(key)}")
    return secret


def is_incoming_webhook(channel: str, target: Optional[str]) -> bool:
    """A Slack target that is a URL: an incoming webhook, whose URL is its own credential."""
    return channel == "slack" and bool(target) and target.startswith(("https://", "http://"))


def masked_target(target: Optional[str]) -> Optional[str]:
    """The one masking rule for recipients and targets in every output (listings, `show`, JSON):
    long path segments and the query of a URL can be credentials (a Slack incoming-webhook URL is
    its own secret), so they are shortened to a recognisable prefix. Other targets are shown."""
    if not target or not target.startswith(("http://", "https://")):
        return target
    parts = urlsplit(target)
    segments = [s[:4] + "****" if len(s) >= 16 else s for s in parts.path.split("/")]
    shown = f"{parts.scheme}://{parts.netloc}{'/'.join(segments)}"
    return shown + ("?****" if parts.query else "")


def add_destination(conn: Connection, config: Config, now: datetime, *, tenant_id: str, channel: str,
                    target: str, secret: Optional[str] = None, kinds: Optional[list[str]] = None,
                    min_severity: str = "info", timezone: Optional[str] = None,
                    locale: Optional[str] = None, fallback: Optional[str] = None,
                    tags: Optional[list[str]] = None) -> uuid.UUID:
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
    if secret is not None:
        check_signing_secret(secret)
    ciphertext = None
    if secret:
        ciphertext = SecretBox.for_config(config, create=True).encrypt(secret)
    elif is_incoming_webhook(channel, target):
        # The URL is the credential: stored encrypted, only its masked form in `target`.
        ciphertext = SecretBox.for_config(config, create=True).encrypt(
            target, option="--target (a Slack incoming-webhook URL)")
        target = masked_target(target)
    kinds = [k.strip() for k in kinds if k.strip()] if kinds else None
    if timezone is not None:
        timezone = check_timezone(timezone).key
    if locale is not None:
        locale = check_locale(locale)
    fallback_id = _fallback_of(conn, tenant, fallback) if fallback is not None else None
    return conn.execute(query("destinations", "add_destination"), dict(
        tenant_id=tenant, now=now, channel=channel, target=target, secret_ciphertext=ciphertext,
        kinds=kinds or None, min_severity=min_severity, timezone=timezone, locale=locale,
        fallback_id=fallback_id, tags=parse_tags(tags))).scalar_one()


def _fallback_of(conn: Connection, tenant: uuid.UUID, fallback: str) -> uuid.UUID:
    """--fallback ID: an enabled destination of the same tenant."""
    try:
        ident = uuid.UUID(fallback)
    except ValueError:
        raise BadInput(f"--fallback: a destination id must be a UUID, got {fallback!r}") from None
    found = conn.execute(query("destinations", "fallback_candidate"), dict(tenant_id=tenant, id=ident)).first()
    if found is None:
        raise BadInput(f"--fallback: tenant {tenant} has no destination {fallback}")
    if not found.enabled:
        raise BadInput(f"--fallback: destination {fallback} is disabled")
    return ident


_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def parse_tags(values: Optional[list[str]]) -> list[str]:
    """--tag T (repeatable, or a comma list): labels an escalation step can name (escalation.policies)."""
    tags: list[str] = []
    for value in values or []:
        for tag in (t.strip() for t in value.split(",")):
            if not _TAG.match(tag):
                raise BadInput(f"--tag: expected letters, digits, '.', '_' or '-' (at most 63), got {tag!r}")
            if tag not in tags:
                tags.append(tag)
    return tags


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
        raise NotFound(f"ID: no destination {destination_id}")
    return conn.execute(query("destinations", "skip_queued_for_destination"), dict(
        tenant_id=removed.tenant_id, destination_id=removed.id, reason="destination removed")).rowcount


def rekey_destinations(conn: Connection, config: Config) -> dict[str, int]:
    """Re-encrypts every stored credential under the first key of channels.webhook.secret_key and
    encrypts Slack incoming-webhook URLs still stored in plain text (written before they were
    encrypted), masking them in `target` and in their notifications' `recipient`. In the caller's
    transaction; a credential that no key decrypts stops it before anything is written. Running it
    again changes nothing. Returns how many were re-encrypted and how many URLs encrypted."""
    box = SecretBox.for_config(config, create=True)
    if not box.available:
        raise BadInput(f"{KEY_SETTING} is not set: nothing to encrypt with")
    rows = conn.execute(query("destinations", "lock_destination_credentials")).mappings().all()
    reencrypted, plain = [], []
    for row in rows:
        ciphertext = row["secret_ciphertext"]
        if ciphertext:
            if box.under_first_key(ciphertext):
                continue
            try:
                reencrypted.append((row, box.encrypt(box.decrypt(ciphertext))))
            except SecretUnavailable:
                failing = [r["id"] for r in rows
                           if r["secret_ciphertext"] and not _decrypts(box, r["secret_ciphertext"])]
                raise BadInput(f"{KEY_SETTING}: none of the {box.key_count} configured key(s) decrypts the secret of "
                               f"destination {failing[0]} ({len(failing)} such destination(s)); add the key they were "
                               "encrypted with to the list and run rekey again (nothing was changed)") from None
        elif is_incoming_webhook(row["channel"], row["target"]):
            plain.append(row)
    for row, ciphertext in reencrypted:
        conn.execute(query("destinations", "set_destination_credential"), dict(
            tenant_id=row["tenant_id"], id=row["id"], target=row["target"], secret_ciphertext=ciphertext))
    for row in plain:
        masked = masked_target(row["target"])
        conn.execute(query("destinations", "set_destination_credential"), dict(
            tenant_id=row["tenant_id"], id=row["id"], target=masked, secret_ciphertext=box.encrypt(row["target"])))
        conn.execute(query("destinations", "mask_notification_recipients"), dict(
            tenant_id=row["tenant_id"], destination_id=row["id"], recipient=row["target"], masked=masked))
    return {"reencrypted": len(reencrypted), "encrypted_urls": len(plain)}


def _decrypts(box: SecretBox, ciphertext: str) -> bool:
    try:
        box.decrypt(ciphertext)
        return True
    except SecretUnavailable:
        return False


def check_stored_secrets(conn: Connection, config: Config) -> Optional[str]:
    """notifyd's start: BadInput naming channels.webhook.secret_key when destinations hold
    encrypted credentials and no configured key decrypts them (the oldest and the newest are
    sampled: one decryption per key, cheap). Returns a warning when only some decrypt."""
    box = SecretBox.for_config(config)   # a malformed key is refused even before any is used
    samples = conn.execute(query("destinations", "sample_credentials")).mappings().all()
    if not samples:
        return None
    if not box.available:
        where = ("" if config.databases is not None
                 else f" (nor is there a generated key in {generated_key_path(config.embedded)})")
        raise BadInput(f"{KEY_SETTING}: not set{where}, but destinations hold encrypted secrets "
                       f"(e.g. destination {samples[0]['id']}); set the key they were encrypted with")
    failing = [s for s in samples if not _decrypts(box, s["secret_ciphertext"])]
    if len(failing) == len(samples):
        raise BadInput(f"{KEY_SETTING}: none of the {box.key_count} configured key(s) decrypts the stored "
                       f"destination secrets (e.g. destination {failing[0]['id']}); "
                       "set the key they were encrypted with")
    if failing:
        return (f"{KEY_SETTING}: the secret of destination {failing[0]['id']} does not decrypt with the configured "
                "key(s); its notifications stay queued until the old key is added back (then run "
                "`notifyctl destinations rekey`)")
    return None
