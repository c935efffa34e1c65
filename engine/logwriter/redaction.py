"""Masks secrets and personal data: the one redactor of the project. It masks log records
before anything is written, events' context before it is stored (and later sent in webhooks),
and every line notifyd and notifyctl log (engine.logging), all with `logs.redaction.mask`.

Three kinds of rules (config `logs.redaction`, plus values registered by the process):
- literal secrets: values the config holds (channels' tokens and passwords, signing secrets,
  encryption keys; `add_secrets`) are masked wherever they appear in a string.
- key names: inside a jsonb payload (details, context, diff), the value of a key whose name,
  lowercased and without `-`/`_`, contains a rule word (password, token, authorization, ...) is
  replaced by the mask, whatever it holds; `keep_keys` lists correlation ids that only look secret
  (token_id). The seed: "avoid storing sensitive payloads in logs. Redact tokens and emails".
- value patterns: every string (inside payloads, and the free-text columns user_agent, route,
  reason, comment, error, target_id) is checked for the literals each rule needs, then scanned
  once by one alternation of the rules it may match (emails, bearer and basic credentials, JWTs,
  credentials in URLs, name=value pairs with a secret name, well-known API key formats, plus
  `extra_patterns`), and each match is masked.

Redaction is lossy on purpose: a false positive costs a little forensics, a false negative
leaks a secret into a table that support staff can read.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from engine.config import RedactionConfig
from engine.logwriter.records import LogRecord


def _normalise_key(key: str) -> str:
    return re.sub(r"[-_\s.]", "", key.lower())


# name=value (or name: value) pairs in query strings and free text (?access_token=...,
# password=..., x-api-key: ...). The rule matches every pair and the replacement asks the key rules
# whether the name is secret: one cached decision instead of a regex lookahead over every secret
# word at every word start, which cost 17 us on a plain user agent. The value ends at &, space,
# ; , or a quote; "scheme://" is not a pair (url_credentials looks there).
_PARAM_PATTERN = (r"(?P<param_name>\b[A-Za-z][A-Za-z0-9_.-]*+)(?P<param_sep>\s*+(?:=|:(?!//))\s*+)"
                  r"(?P<secret_params>[^&\s;,\"'<>]++)")


def _builtin_patterns() -> dict[str, str]:
    return {
        "email": r"(?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)",
        # The scheme word is kept so a reader still sees what kind of credential was there.
        "bearer": r"(?P<bearer_scheme>\b(?i:bearer|basic|token|digest)\s+)(?P<bearer>[A-Za-z0-9._~+/=-]{8,})",
        "jwt": r"(?P<jwt>\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)",
        "url_credentials": r"(?<=://)(?P<url_credentials>[^/\s:@]+:[^/\s@]+)(?=@)",
        "secret_params": _PARAM_PATTERN,
        "provider_keys": (r"(?P<provider_keys>\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"
                          r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abeoprs]-[A-Za-z0-9-]{8,}"
                          r"|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}|\bwhsec_[A-Za-z0-9+/=]{16,})"),
    }


# Literals without which a built-in pattern cannot match. Most log strings (a browser's user
# agent, a plain route) contain none, and skip the regular expressions entirely: a substring test
# costs tens of nanoseconds, a scan microseconds. Words under "lower" are looked for in the
# lowercased string.
_TEXT_CACHE_SIZE = 4096
_CACHED_TEXT_MAX = 512

_TRIGGERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": (("@",), ()),
    "bearer": ((), ("bearer", "basic", "token", "digest")),
    "jwt": (("eyJ",), ()),
    "url_credentials": (("@",), ()),
    "secret_params": ((), ()),   # decided in Redactor._scan: "=" or ":" and a secret word
    "provider_keys": (("_live_", "_test_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "AKIA", "AIza", "whsec_"), ()),
}


class Redactor:
    def __init__(self, config: Optional[RedactionConfig] = None):
        config = config or RedactionConfig()
        self.mask = config.mask
        self._key_words = tuple(_normalise_key(k) for k in config.keys if k)
        self._keep_keys = frozenset(_normalise_key(k) for k in config.keep_keys)
        self._key_cache: dict[str, bool] = {}
        builtin = _builtin_patterns()
        unknown = [p for p in config.patterns if p not in builtin]
        if unknown:
            raise ValueError(f"logs.redaction.patterns: unknown pattern {unknown[0]!r} (known: {', '.join(builtin)})")
        self._builtin = builtin
        self._patterns = tuple(dict.fromkeys(config.patterns))
        self._extra = tuple(f"(?P<extra{i}>{pattern})" for i, pattern in enumerate(config.extra_patterns))
        self._triggers = tuple((name, _TRIGGERS[name][0], _TRIGGERS[name][1]) for name in self._patterns)
        # Every literal and word of those triggers in one search of the lowercased string: most
        # strings hold none, and then no rule can match (an ASCII literal in a string is in its
        # lowercased form too). secret_params needs "=" or ":" (_scan). Extra patterns have no
        # known literals: with any, every string is scanned.
        words = sorted({w.lower() for _, literals, lower in self._triggers for w in (*literals, *lower)})
        self._quick = None if self._extra else re.compile("|".join(map(re.escape, words)) or "(?!)")
        self._quick_params = "secret_params" in self._patterns
        # The patterns a string's literals trigger -> one compiled alternation of just those, so
        # a scanned string is scanned once, by no rule that cannot match (at most 2**6 entries).
        self._compiled: dict[tuple[str, ...], Optional[re.Pattern]] = {}
        # User agents and routes repeat: remember recent answers (bounded, short strings only).
        self._text_cache: dict[str, str] = {}
        self._secrets: tuple[str, ...] = ()

    def add_secrets(self, values: Iterable[Optional[str]]) -> None:
        """Literal values masked wherever they appear (the config's secrets: engine.logging)."""
        # Very short values would mask ordinary words; no real secret is that short.
        fresh = {v for v in values if isinstance(v, str) and len(v) >= 4}
        if fresh - set(self._secrets):
            # Longest first, so a secret that contains another is masked whole. Swapped in one
            # assignment: a thread redacting meanwhile sees the old or the new tuple.
            self._secrets = tuple(sorted(set(self._secrets) | fresh, key=len, reverse=True))
            self._text_cache = {}

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    # ------------------------------------------------------------------ rules

    def key_is_secret(self, key: str) -> bool:
        decision = self._key_cache.get(key)
        if decision is None:
            normalised = _normalise_key(key)
            decision = normalised not in self._keep_keys and any(w in normalised for w in self._key_words)
            if len(self._key_cache) < 10_000:   # payload keys repeat; an attacker's random keys must not grow this forever
                self._key_cache[key] = decision
        return decision

    def _replace(self, match: re.Match) -> str:
        group = match.lastgroup
        if group == "bearer":
            scheme, credential = match.group("bearer_scheme"), match.group("bearer")
            # "token" is also an English word ("token rotation scheduled"): after it, only a
            # credential-looking word (a digit, or 20+ characters) is masked.
            if scheme[:5].lower() == "token" and len(credential) < 20 and not any(c.isdigit() for c in credential):
                return match.group(0)
            return scheme + self.mask
        if group == "secret_params":
            name, value = match.group("param_name"), match.group("secret_params")
            if self.key_is_secret(name):
                return name + match.group("param_sep") + self.mask
            # Not a secret name, but the value may still hold an email or a token.
            return name + match.group("param_sep") + self.text(value)
        return self.mask

    def text(self, value: str) -> str:
        """A free-text value with every pattern match masked."""
        if not value:
            return value
        cached = self._text_cache.get(value)
        if cached is not None:
            return cached
        result = self._scan(value)
        if len(value) <= _CACHED_TEXT_MAX:
            if len(self._text_cache) >= _TEXT_CACHE_SIZE:
                self._text_cache.clear()
            self._text_cache[value] = result
        return result

    def _scan(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, self.mask)
        if self._quick is not None and not (self._quick_params and ("=" in value or ":" in value)) \
                and self._quick.search(value.lower()) is None:
            return value   # no literal of any rule: the loop below would trigger none
        # Plain loops, not any(generator): this runs for every string not in the cache.
        triggered = []
        lowered = None
        for name, literals, lower_words in self._triggers:
            if name == "secret_params":
                # A pair can only be masked when a secret word is in the string at all: most
                # query strings and user agents have '=' or ':' but no such word.
                if "=" in value or ":" in value:
                    compact = value.lower().replace("_", "").replace("-", "")
                    for word in self._key_words:
                        if word in compact:
                            triggered.append(name)
                            break
                continue
            for literal in literals:
                if literal in value:
                    triggered.append(name)
                    break
            else:
                if lower_words:
                    if lowered is None:
                        lowered = value.lower()
                    for word in lower_words:
                        if word in lowered:
                            triggered.append(name)
                            break
        key = tuple(triggered)
        try:
            regex = self._compiled[key]
        except KeyError:
            parts = [self._builtin[name] for name in key] + list(self._extra)
            regex = self._compiled[key] = re.compile("|".join(parts)) if parts else None
        return value if regex is None else regex.sub(self._replace, value)

    def payload(self, value: Any) -> Any:
        """A JSON value (dict, list, scalar) with secret keys and secret-looking strings masked;
        returns new containers, the caller's objects are left as they were."""
        if isinstance(value, dict):
            redacted = {
                key: (self.mask if item is not None and self.key_is_secret(str(key)) else self.payload(item))
                for key, item in value.items()
            }
            # Header and form lists in HAR style: {"name": "Authorization", "value": "..."}.
            name = value.get("name")
            if isinstance(name, str) and redacted.get("value") is not None and self.key_is_secret(name):
                redacted["value"] = self.mask
            return redacted
        if isinstance(value, list):
            return [self.payload(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def redact(self, record: LogRecord) -> LogRecord:
        """Masks the record's free-text and payload fields in place and returns it."""
        for name in record.FREE_TEXT:
            value = getattr(record, name)
            if value:
                setattr(record, name, self.text(value))
        for name in record.JSON_FIELDS:
            value = getattr(record, name)
            if value:
                setattr(record, name, self.payload(value))
        return record
