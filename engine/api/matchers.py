"""Alertmanager's label matchers (`alertname="X"`, `tenant_id=~"7a1c.*"`, `severity!=info`): parsed
as its pkg/labels.ParseMatcher parses one, and applied as its API's `filter` applies them.

Regular expressions are RE2 (google-re2), the engine Go's regexp implements: the same syntax (no
look-around, no backreferences), fully anchored, and matched in linear time, so a filter a
client sends cannot make the server backtrack for ever.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import re2

# ParseMatcher's expression; `\Z` and an explicit whitespace class because Python's `$` also
# matches before a final newline and its `\s` is Unicode's, where Go's are not.
_MATCHER = re.compile(r"^[ \t\n\f\r]*([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t\n\f\r]*(=~|=|!=|!~)[ \t\n\f\r]*(.*?)[ \t\n\f\r]*\Z",
                      re.DOTALL)
OPERATORS = ("=", "!=", "=~", "!~")


class MatcherError(ValueError):
    """A matcher or regular expression that does not parse; the message says why."""


def compile_anchored(pattern: str) -> "re2._Regexp":
    """`^(?:pattern)$` in RE2, as Go's regexp.Compile gets it from Alertmanager."""
    options = re2.Options()
    options.log_errors = False   # RE2 would print every bad pattern on stderr
    try:
        return re2.compile(f"^(?:{pattern})$", options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise MatcherError(f"not a valid regular expression (RE2): {reason}") from None


@dataclass(frozen=True)
class Matcher:
    name: str
    operator: str
    value: str
    regex: Optional["re2._Regexp"] = None

    def matches(self, value: str) -> bool:
        if self.operator == "=":
            return value == self.value
        if self.operator == "!=":
            return value != self.value
        found = self.regex.search(value) is not None
        return found if self.operator == "=~" else not found


def parse_matcher(text: str) -> Matcher:
    """One matcher, as Alertmanager 0.25's labels.ParseMatcher reads it: a label name, an
    operator, and a value that may be double-quoted, with `\\"`, `\\n` and `\\\\` escapes."""
    found = _MATCHER.match(text)
    if found is None:
        raise MatcherError(f"bad matcher format: {text[:80]!r} (expected name=\"value\", name!=, =~ or !~)")
    name, operator, raw = found.groups()
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    value: list[str] = []
    escaped = False
    for index, char in enumerate(raw):
        if escaped:
            escaped = False
            if char == "n":
                value.append("\n")
            elif char in '"\\':
                value.append(char)
            else:   # a spurious escape: the backslash is literal
                value.append("\\" + char)
            continue
        if char == "\\":
            if index < len(raw) - 1:
                escaped = True
                continue
            value.append("\\")
        elif char == '"':
            if not quoted or index < len(raw) - 1:
                raise MatcherError(f"matcher value contains an unescaped double quote: {text[:80]!r}")
            quoted = False   # the closing quote
        else:
            value.append(char)
    if quoted:
        raise MatcherError(f"matcher value contains an unescaped double quote: {text[:80]!r}")
    joined = "".join(value)
    regex = compile_anchored(joined) if operator in ("=~", "!~") else None
    return Matcher(name, operator, joined, regex)


def labels_match(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    """Alertmanager's matchFilterLabels: every matcher holds. A matcher against the empty value
    (`name=""`, `name!=""`) also holds for a label the alert does not have, as in Alertmanager."""
    for matcher in matchers:
        present = matcher.name in labels
        if matcher.value == "" and present == (matcher.operator in ("!=", "!~")):
            continue
        if not matcher.matches(labels.get(matcher.name, "")):
            return False
    return True
