"""API tokens: bearer tokens of the HTTP API (engine/api), each with a name and scopes.

A token is `ne_` + 43 characters of base64url (256 random bits). Only its SHA-256 is stored
(notify.api_tokens): it is shown once, at `add`, and never again. A request's token is hashed and
looked up by hash; the stored hash is then compared in constant time. The token's name is the
actor of every write made with it.

Scopes: `events` (POST /v1/events), `snapshots` (POST /v1/snapshots), `read` (listings and
single items), `operate` (ack, resolve; includes `read`), `admin` (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from engine.errors import BadInput
from engine.queries import query

SCOPES = ("events", "snapshots", "read", "operate", "admin")
# What each scope grants besides itself.
IMPLIED_SCOPES = {"admin": set(SCOPES), "operate": {"operate", "read"}}
TOKEN_PREFIX = "ne_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class ApiToken:
    """An authenticated token: its name (the actor) and what it may do."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return any(scope == s or scope in IMPLIED_SCOPES.get(s, ()) for s in self.scopes)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def check_name(name: str, *, where: str = "--name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(f"{where}: a token name is 1-64 letters, digits, '.', '_', '-' or '@', starting with a "
                       f"letter or digit; got {name!r}")
    return name


def check_scopes(scopes: Iterable[str], *, where: str = "--scope") -> list[str]:
    chosen = list(dict.fromkeys(scopes))
    if not chosen:
        raise BadInput(f"{where}: at least one scope is required ({', '.join(SCOPES)})")
    for scope in chosen:
        if scope not in SCOPES:
            raise BadInput(f"{where}: unknown scope {scope!r} (known: {', '.join(SCOPES)})")
    return chosen


def add_token(app, name: str, scopes: Iterable[str], *, created_by: Optional[str] = None) -> str:
    """Creates a token and returns it: the only time it is ever shown."""
    check_name(name)
    chosen = check_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with app.databases.begin("notify") as conn:
        added = conn.execute(query("tokens", "add_token"), dict(
            name=name, token_sha256=token_hash(token), scopes=chosen, now=app.clock.now(),
            created_by=created_by)).first()
    if added is None:
        raise BadInput(f"--name: a token named {name!r} exists already (names are never reused, "
                       "even after revoke: pick another)")
    return token


def list_tokens(app) -> list[dict]:
    with app.databases.begin("notify") as conn:
        return [dict(r) for r in conn.execute(query("tokens", "list_tokens")).mappings()]


def revoke_token(app, name: str) -> None:
    """From now on the token is refused: at once by the servers of this process, within
    api.token_cache by the others (they look a token up again once its cache entry is that old)."""
    for cache in list(_CACHES):
        cache.forget(name)
    with app.databases.begin("notify") as conn:
        if conn.execute(query("tokens", "revoke_token"), dict(name=name, now=app.clock.now())).first() is None:
            state = conn.execute(query("tokens", "token_state"), dict(name=name)).first()
            if state is None:
                raise BadInput(f"NAME: no token named {name!r}")
            raise BadInput(f"NAME: token {name!r} was already revoked at {state.revoked_at.isoformat()}")


class TokenCache:
    """Tokens found active in the last `ttl` seconds, by hash, so a busy client costs one
    database lookup per `ttl` rather than one per request. Only active tokens are kept (an
    unknown one is looked up every time: it is a failure the limiter counts). A revoke in this
    process drops the name's entries at once (revoke_token); one made elsewhere is seen when the
    entry expires. Bounded: the oldest entries go first past `max_entries`."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000, monotonic=time.monotonic):
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[bytes, tuple[ApiToken, float]] = {}
        self._lock = threading.Lock()
        _CACHES.add(self)

    def get(self, digest: bytes) -> Optional[ApiToken]:
        entry = self._entries.get(digest)
        if entry is None or self._monotonic() >= entry[1]:
            return None
        return entry[0]

    def put(self, digest: bytes, token: ApiToken) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries.pop(digest, None)
            self._entries[digest] = (token, self._monotonic() + self.ttl)
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]

    def forget(self, name: str) -> None:
        with self._lock:
            for digest in [d for d, (token, _) in self._entries.items() if token.name == name]:
                del self._entries[digest]


_CACHES: "weakref.WeakSet[TokenCache]" = weakref.WeakSet()


def cached_token(cache: Optional[TokenCache], presented: str) -> Optional[ApiToken]:
    """The token from `cache` without touching the database, or None (then: authenticate)."""
    if cache is None or not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return None
    return cache.get(token_hash(presented))


def authenticate(app, presented: str, *, now: datetime, cache: Optional[TokenCache] = None) -> Optional[ApiToken]:
    """The active token matching `presented`, or None (unknown, revoked or malformed). With a
    cache, a token found active within its ttl is not looked up again."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return None
    digest = token_hash(presented)
    if cache is not None:
        hit = cache.get(digest)
        if hit is not None:
            return hit
    with app.databases.begin("notify") as conn:
        row = conn.execute(query("tokens", "token_by_hash"), dict(token_sha256=digest)).first()
        if row is None or row.revoked_at is not None:
            return None
        # Found by hash already; the constant-time comparison keeps the check itself timing-safe.
        if not hmac.compare_digest(bytes(row.token_sha256), digest):
            return None
        conn.execute(query("tokens", "touch_token"), dict(name=row.name, now=now))
    token = ApiToken(row.name, frozenset(row.scopes))
    if cache is not None:
        cache.put(digest, token)
    return token
