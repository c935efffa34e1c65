"""Ack and resolve from the message itself (issue 17): signed, expiring, single-use links, and
Slack's Block Kit button callbacks.

A link's token names the alert, the action (ack or resolve), an expiry (messages.action_link_ttl
after the message was built), a random nonce and the message's recipient, and carries an
HMAC-SHA256 over them with a key derived, as engine.unsubscribe's, from
channels.webhook.secret_key (its own label, so neither kind of token passes for the other). Its GET
shows a confirmation page and changes nothing (mail scanners and link previews follow links); its
POST acts, and uses the nonce up in the action's own transaction (notify.action_link_uses), so a
second POST of the same link changes nothing. admin_log names the link's recipient as the actor:
the link is the authority, there is no token.

Who gets links: messages to ops routes (config.yaml `routes`, the operators) about an alert that is
open (LINK_TRANSITIONS). Tenant destinations get none: an ack there would stop the operators'
reminders on the word of a customer's mailbox, and they have the unsubscribe link instead.

Slack (POST /slack/actions): a button press is trusted only with a valid `v0` signature of Slack's
signing secret over "v0:<timestamp>:<body>" and a timestamp within SLACK_WINDOW of the clock; the
actor is the Slack user; the message is then updated (chat.update, to the channel and ts the
callback names: the message whose button was pressed) to show who did it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from zoneinfo import ZoneInfo

from engine import alerts as engine_alerts
from engine.destinations import masked_target
from engine.errors import BadInput, NotFound, NotifyError
from engine.queries import query
from engine.unsubscribe import _b64, _signing_keys, _unb64

TOKEN_VERSION = "a1"
_KEY_LABEL = b"notify-engine action link v1"
ACTIONS = ("ack", "resolve")
# Transitions whose message is about an alert someone can still act on.
LINK_TRANSITIONS = frozenset({"opened", "reopened", "escalated", "reminder", "escalation", "ack_expired"})
SLACK_WINDOW = 300            # seconds: Slack's own advice for the request timestamp
SLACK_ACTION_IDS = {"notify_ack": "ack", "notify_resolve": "resolve"}
MAX_TOKEN = 2000


class LinkRefused(BadInput):
    """A link that cannot act; `status` is the HTTP answer (400 forged or malformed, 404 alert
    gone, 409 used, 410 expired)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ActionLink:
    alert_id: uuid.UUID
    action: str
    expires_at: datetime
    nonce: str
    recipient: str

    @property
    def actor(self) -> str:
        return f"{self.recipient} (link in the message)"


def make_action_token(config: Any, alert_id: Any, action: str, recipient: str, now: datetime) -> str:
    """A URL-safe single-use token to `action` the alert; NotifyError when no key can sign it."""
    if action not in ACTIONS:
        raise ValueError(f"action: expected one of {ACTIONS}, got {action!r}")
    keys = _signing_keys(config, create=True, label=_KEY_LABEL)
    if not keys:
        raise NotifyError("ack links need channels.webhook.secret_key to sign them")
    expires = int((now + timedelta(seconds=float(config.messages.action_link_ttl))).timestamp())
    payload = {"a": str(alert_id), "x": action, "e": expires, "n": secrets.token_urlsafe(16),
               "r": " ".join(str(recipient).split())[:200]}
    signed = f"{TOKEN_VERSION}.{_b64(json.dumps(payload, separators=(',', ':')).encode())}"
    return f"{signed}.{_b64(hmac.new(keys[0], signed.encode(), hashlib.sha256).digest())}"


def action_url(config: Any, token: str) -> Optional[str]:
    base = config.messages.public_url
    return f"{base.rstrip('/')}/v1/alert-actions/{token}" if base else None


def offers_actions(*, alert_id: Any, transition: str, status: Optional[str], ops_route: bool) -> bool:
    """Whether a message gets Ack/Resolve (links or Slack buttons): the module's docstring says why."""
    return bool(ops_route and alert_id and transition in LINK_TRANSITIONS and status != "resolved")


def links_for(config: Any, *, alert_id: Any, transition: str, status: Optional[str], ops_route: bool,
              channel: str, recipient: str, now: datetime) -> Optional[dict[str, str]]:
    """{"ack": url, "resolve": url} for a message that gets links (offers_actions), else None.
    Also None without messages.public_url or a signing key."""
    if not (config.messages.public_url
            and offers_actions(alert_id=alert_id, transition=transition, status=status, ops_route=ops_route)):
        return None
    try:
        links = {action: action_url(config, make_action_token(config, alert_id, action, f"{channel} {recipient}", now))
                 for action in ACTIONS}
    except NotifyError:
        return None
    if status == "ack":
        links.pop("ack")   # an ack_expired message's alert is open again; an acked one needs resolving only
    return links


def message_action_links(config: Any, message: Any) -> Optional[dict[str, str]]:
    """links_for a channels.base.Message (an ops route's has no destination id). The recipient in
    the token is the masked form: a Slack incoming-webhook URL is a credential."""
    return links_for(config, alert_id=message.alert_id, transition=message.transition,
                     status=message.alert.get("status"), ops_route=message.destination_id is None,
                     channel=message.channel, recipient=masked_target(message.recipient) or "", now=message.now)


def read_action_token(config: Any, token: str, *, now: datetime) -> ActionLink:
    """The link a valid token is; LinkRefused (400, 410) for a malformed, forged or expired one."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or len(token) > MAX_TOKEN:
        raise LinkRefused(400, "this link is malformed: copy the whole link from the message")
    signed = f"{parts[0]}.{parts[1]}".encode()
    try:
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise LinkRefused(400, "this link is malformed: copy the whole link from the message") from None
    keys = _signing_keys(config, create=False, label=_KEY_LABEL)
    if not any(hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), signature) for key in keys):
        raise LinkRefused(400, "this link is not valid: its signature does not match")
    try:
        payload = json.loads(_unb64(parts[1]))
        link = ActionLink(uuid.UUID(payload["a"]), str(payload["x"]),
                          datetime.fromtimestamp(int(payload["e"]), timezone.utc), str(payload["n"]),
                          str(payload["r"]))
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError, OSError):
        raise LinkRefused(400, "this link is malformed: copy the whole link from the message") from None
    if link.action not in ACTIONS or not 16 <= len(link.nonce) <= 64:
        raise LinkRefused(400, "this link is malformed: copy the whole link from the message")
    if now >= link.expires_at:
        raise LinkRefused(410, "this link has expired: use the alert's newest message, the console or notifyctl")
    return link


def link_alert(app: Any, link: ActionLink) -> dict:
    """The alert a link names, for its confirmation page; LinkRefused 404 when it is gone."""
    with app.databases.begin("notify") as conn:
        row = conn.execute(query("action_links", "alert_for_link"), {"id": link.alert_id}).mappings().first()
    if row is None:
        raise LinkRefused(404, "the alert of this link no longer exists")
    return dict(row)


def link_used(app: Any, link: ActionLink) -> bool:
    with app.databases.begin("notify") as conn:
        return conn.execute(query("action_links", "nonce_used"), {"nonce": link.nonce}).first() is not None


_NAME_BOOKS: dict[int, Any] = {}
STATUS_WORDS = {"open": "open", "ack": "acknowledged", "resolved": "resolved"}


def alert_in_words(app: Any, alert: dict) -> dict[str, str]:
    """What a person reads of the alert on the confirmation page: what it is, whose, how bad,
    since when (in messages.timezone), and where it stands now."""
    from engine.messages import NameBook, _formats, _locale, _zone
    from engine.templating import HEADLINES

    config = app.config
    book = _NAME_BOOKS.get(id(config))
    if book is None or book.static is not config.messages.names:
        _NAME_BOOKS.clear()   # one book, of the config in force (a reload replaces it)
        book = _NAME_BOOKS[id(config)] = NameBook(config, app)
    tenant_id = str(alert["tenant_id"])
    formats = _formats(_locale(config.messages.locale) or "en", _zone(config.messages.timezone) or ZoneInfo("UTC"))
    status = STATUS_WORDS.get(alert["status"], alert["status"])
    if alert["status"] == "ack" and alert.get("acked_by"):
        status += f" by {alert['acked_by']}"
    return {
        "kind": alert["kind"],
        "headline": HEADLINES.get(alert["kind"], str(alert["kind"]).replace("_", " ").capitalize()),
        "tenant": f"{book.get(tenant_id)} ({tenant_id})" if book.get(tenant_id) else tenant_id,
        "severity": {"info": "Info", "warn": "Warning", "critical": "Critical"}.get(alert["severity"],
                                                                                   alert["severity"]),
        "since": formats.datetime(alert["first_seen_at"]),
        "status": status,
    }


def use_link(app: Any, token: str, *, now: datetime) -> tuple[ActionLink, engine_alerts.ActionResult]:
    """The POST of a link: acks or resolves its alert, audited with the link's recipient as the
    actor, and uses the link up in the same transaction. LinkRefused: nothing changed."""
    link = read_action_token(app.config, token, now=now)

    def use_nonce(conn) -> None:
        conn.execute(query("action_links", "prune_used_nonces"), {"now": now})
        used = conn.execute(query("action_links", "use_nonce"), {
            "nonce": link.nonce, "alert_id": link.alert_id, "action": link.action, "used_by": link.recipient,
            "now": now, "expires_at": link.expires_at}).first()
        if used is None:
            raise LinkRefused(409, "this link was already used: each link works once")

    act = engine_alerts.ack_alert if link.action == "ack" else engine_alerts.resolve_alert
    try:
        return link, act(app, str(link.alert_id), actor=link.actor, in_transaction=use_nonce)
    except NotFound:
        raise LinkRefused(404, "the alert of this link no longer exists") from None


# ------------------------------------------------------------------------------------- Slack


@dataclass
class SlackAction:
    alert_id: uuid.UUID
    action: str
    user: str            # the actor: "slack:<user id> (<name>)"
    channel: Optional[str]
    ts: Optional[str]
    message: dict        # the message as Slack shows it (text, blocks): chat.update starts from it


def verify_slack_signature(signing_secret: Optional[str], headers: Any, body: bytes, *, now: datetime) -> None:
    """Slack's v0 scheme: X-Slack-Signature = "v0=" + hex HMAC-SHA256(secret, "v0:<ts>:<body>"),
    X-Slack-Request-Timestamp within SLACK_WINDOW of now (a replayed request is refused).
    LinkRefused 401 (or 403 when no secret is configured) otherwise."""
    if not signing_secret:
        raise LinkRefused(403, "channels.slack.signing_secret is not set: Slack actions are off")
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    presented = headers.get("X-Slack-Signature", "")
    if not stamp.isdigit() or len(stamp) > 12 or not presented.startswith("v0="):
        raise LinkRefused(401, "X-Slack-Signature or X-Slack-Request-Timestamp is missing or malformed")
    if abs(now.timestamp() - int(stamp)) > SLACK_WINDOW:
        raise LinkRefused(401, f"X-Slack-Request-Timestamp is more than {SLACK_WINDOW} s from the server's clock")
    expected = "v0=" + hmac.new(signing_secret.encode(), b"v0:" + stamp.encode() + b":" + body,
                                hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), presented.encode()):
        raise LinkRefused(401, "X-Slack-Signature does not match: not signed with this app's signing secret")


def parse_slack_action(form_payload: Optional[str]) -> SlackAction:
    """The button press of a block_actions payload (the form field `payload`); LinkRefused 400."""
    try:
        payload = json.loads(form_payload or "")
        if payload.get("type") != "block_actions":
            raise ValueError
        pressed = next(a for a in payload.get("actions", []) if a.get("action_id") in SLACK_ACTION_IDS)
        user = payload.get("user") or {}
        name = user.get("username") or user.get("name")
        container = payload.get("container") or {}
        return SlackAction(
            alert_id=uuid.UUID(str(pressed.get("value"))), action=SLACK_ACTION_IDS[pressed["action_id"]],
            user=f"slack:{user['id']}" + (f" ({' '.join(str(name).split())[:80]})" if name else ""),
            channel=container.get("channel_id") or (payload.get("channel") or {}).get("id"),
            ts=container.get("message_ts") or (payload.get("message") or {}).get("ts"),
            message=payload.get("message") if isinstance(payload.get("message"), dict) else {})
    except (ValueError, TypeError, KeyError, AttributeError, StopIteration):
        raise LinkRefused(400, "payload: not a block_actions payload with an Acknowledge or Resolve button") from None


def act_from_slack(app: Any, pressed: SlackAction) -> engine_alerts.ActionResult:
    act = engine_alerts.ack_alert if pressed.action == "ack" else engine_alerts.resolve_alert
    try:
        return act(app, str(pressed.alert_id), actor=pressed.user)
    except NotFound:
        raise LinkRefused(404, "the alert of this button no longer exists") from None


def slack_buttons(alert_id: Any, status: Optional[str]) -> list[dict]:
    """The Block Kit buttons of an interactive message (values: the alert id)."""
    buttons = []
    if status != "ack":
        buttons.append({"type": "button", "action_id": "notify_ack", "value": str(alert_id), "style": "primary",
                        "text": {"type": "plain_text", "text": "Acknowledge"}})
    buttons.append({"type": "button", "action_id": "notify_resolve", "value": str(alert_id),
                    "text": {"type": "plain_text", "text": "Resolve"}})
    return buttons
