"""Console sessions: an API token of scope operate (or admin) exchanged for a session.

The session id is 256 random bits in a cookie; only its SHA-256 is stored
(notify.console_sessions, ddl/notify/0017), with the token it came from. Every request looks the
session up joined to its token, so an expired session or a revoked token (`notifyctl tokens
revoke`) is refused at the next request, and so is a session idle for api.console_idle_timeout
(ddl/notify/0022). The CSRF token of a session is derived from its id
(HMAC-SHA256 keyed by the id): a page can carry it without the id ever leaving the cookie, and
nothing more need be stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from engine.queries import query
from engine.tokens import ApiToken, authenticate

COOKIE_NAME = "ne_console"
# Scopes that may sign in: the console reads and operates alerts.
CONSOLE_SCOPE = "operate"


@dataclass(frozen=True)
class ConsoleSession:
    token: ApiToken          # the token it came from: its name is the actor of every action
    session_id: str
    expires_at: datetime

    @property
    def csrf_token(self) -> str:
        return csrf_token_of(self.session_id)


def session_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()


def csrf_token_of(session_id: str) -> str:
    digest = hmac.new(session_id.encode("utf-8", "surrogateescape"), b"notify-engine console csrf", "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_matches(session: ConsoleSession, presented: object) -> bool:
    """`presented`: the form's field as it came (a string, a file part of a multipart form, None)."""
    return isinstance(presented, str) and bool(presented) and \
        hmac.compare_digest(session.csrf_token.encode(), presented.encode("utf-8", "replace"))


class SignInRefused(Exception):
    """`unknown` True: no such active token (a failed authentication, counted by the limiter);
    False: a real token without the console's scope."""

    def __init__(self, message: str, *, unknown: bool):
        super().__init__(message)
        self.unknown = unknown


def sign_in(app, presented: str, *, ttl: float, idle: float, client_address: Optional[str]) -> ConsoleSession:
    """A new session for the token `presented`; SignInRefused when it is unknown, revoked or lacks
    the operate scope."""
    now = app.clock.now()
    token = authenticate(app, presented.strip(), now=now) if presented else None
    if token is None:
        raise SignInRefused("unknown or revoked token", unknown=True)
    if not token.allows(CONSOLE_SCOPE):
        raise SignInRefused(f"token {token.name!r} lacks the scope {CONSOLE_SCOPE!r} the console needs "
                            f"(it has {', '.join(sorted(token.scopes))})", unknown=False)
    session_id = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=ttl)
    with app.databases.begin("notify") as conn:
        conn.execute(query("console", "delete_expired_sessions"), dict(now=now, idle_seconds=idle))
        conn.execute(query("console", "start_session"), dict(
            session_sha256=session_hash(session_id), token_name=token.name, now=now, expires_at=expires,
            client_address=client_address))
    return ConsoleSession(token, session_id, expires)


def session_of(app, session_id: Optional[str], *, idle: float) -> Optional[ConsoleSession]:
    """The live session the cookie names, or None (unknown, expired, idle `idle` seconds, or its
    token revoked)."""
    if not session_id or len(session_id) > 100:
        return None
    with app.databases.begin("notify") as conn:
        row = conn.execute(query("console", "session_by_hash"),
                           dict(session_sha256=session_hash(session_id), now=app.clock.now(),
                                idle_seconds=idle)).first()
    if row is None:
        return None
    return ConsoleSession(ApiToken(row.token_name, frozenset(row.scopes)), session_id, row.expires_at)


def sign_out(app, session_id: str) -> None:
    with app.databases.begin("notify") as conn:
        conn.execute(query("console", "end_session"), dict(session_sha256=session_hash(session_id)))
