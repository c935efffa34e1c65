"""The fast paths of POST /api/v2/alerts (issue 16's ingest benchmark) answer exactly as the full
paths they shortcut: the body check, the label-set fingerprint in the dedupe key, and the
redactor's one-search skip of strings no rule can match."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from engine.api.problems import ApiProblem
from engine.api.routes import AM_ALERTS_BODY, MAX_AM_ALERTS, label_set_key, well_formed_am_alerts
from engine.api.validation import parse_json, validated
from engine.config import RedactionConfig
from engine.logwriter.redaction import Redactor

TENANT = "7a1c2d3e-0000-4000-8000-000000000001"
ALERT = {"labels": {"alertname": "HighLatency", "tenant_id": TENANT}, "annotations": {"summary": "p99 high"},
         "startsAt": "2026-11-25T11:59:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus.local/graph"}


def full_check(body: bytes) -> tuple[str, object]:
    """What the full path answers: ("ok", the alerts) or ("refused", the errors of its 400)."""
    try:
        return "ok", validated(AM_ALERTS_BODY, parse_json(body))
    except ApiProblem as problem:
        return "refused", problem.errors


BODIES = [
    json.dumps([ALERT, {"labels": {"alertname": "X"}}]).encode(),
    json.dumps([]).encode(),
    json.dumps([{**ALERT, "labels": {**ALERT["labels"], "é": "ü\u2028"}}], ensure_ascii=False).encode(),
    json.dumps([{**ALERT, "labels": {"alertname": 5}}]).encode(),
    json.dumps([{**ALERT, "labels": {"alertname": None}}]).encode(),
    json.dumps([{**ALERT, "annotations": {"a": {"b": "c"}}}]).encode(),
    json.dumps([{**ALERT, "annotations": None}]).encode(),
    json.dumps([{**ALERT, "startsAt": 1}]).encode(),
    json.dumps([{**ALERT, "endsAt": None}]).encode(),
    json.dumps([{**ALERT, "generatorURL": "x" * 2001}]).encode(),
    json.dumps([{**ALERT, "generatorURL": "x" * 2000}]).encode(),
    json.dumps([{**ALERT, "status": "firing"}]).encode(),
    json.dumps([{"annotations": {}}]).encode(),
    json.dumps([ALERT] * (MAX_AM_ALERTS + 1)).encode(),
    json.dumps({"alerts": [ALERT]}).encode(),
    json.dumps(["alert"]).encode(),
    json.dumps([{**ALERT, "labels": {"alertname": "a\u0000b"}}]).encode(),
    json.dumps([{**ALERT, "labels": {"a\u0000": "b"}}]).encode(),
    b'[{"labels": {"alertname": "\\ud800"}}]',              # a lone surrogate escape
    b'[{"labels": {"alertname": "\xed\xa0\x80"}}]',          # a surrogate in the bytes (json.loads passes it)
    b'[{"labels": {"alertname": "\\ud83d\\ude00"}}]',        # a pair: one character
    b'[{"labels": {"alertname": "X", "alertname": "Y"}}]',   # the last of a repeated key
    b'[{"labels": {"alertname": "X"}}, NaN]',
    b'[{"labels": {"alertname": "X"}}, 123456789012345678901234567890]',
    b'\xef\xbb\xbf[{"labels": {"alertname": "X"}}]',       # a byte order mark
    json.dumps([{"labels": {"alertname": "X"}}]).encode("utf-16"),
    b'[{"labels": {"alertname": "X"}}',
    b' \n[{"labels": {"alertname": "X"}}]\t',
    b"",
]


@pytest.mark.parametrize("body", BODIES)
def test_the_body_fast_path_takes_only_what_the_full_check_passes_and_gives_the_same_alerts(body):
    # None hands the body to the full parse and check, which then answer as before.
    fast = well_formed_am_alerts(body)
    assert fast is None or ("ok", fast) == full_check(body)


def test_the_fast_path_is_taken_for_what_prometheus_sends_and_refuses_what_the_check_refuses():
    taken = [b for b in BODIES if well_formed_am_alerts(b) is not None]
    assert taken == [BODIES[0], BODIES[1], BODIES[2], BODIES[10], BODIES[20], BODIES[21], BODIES[27]]
    refused = [b for b in BODIES if full_check(b)[0] == "refused"]
    assert len(refused) == 20 and not any(well_formed_am_alerts(b) is not None for b in refused)


def old_label_set_key(labels: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode("utf-8", "surrogatepass")).hexdigest()[:24]


@pytest.mark.parametrize("labels", [
    {},
    {"alertname": "HighLatency", "tenant_id": TENANT, "instance": "host-1:9100"},
    {"a": '","', "b": '"],["', "c": "x"},
    {"quote": 'say "hi"', "slash": "a\\b", "tab": "a\tb", "nl": "a\nb"},
    {"del": "a\x7fb"}, {"ctl": "a\x01b\x1f"},
    {"é": "ü", "emoji": "\U0001f600", "sep": "\u2028"},
    {"html": "<a href='x'>&</a>", "slash": "a/b"},
    {"b": "1", "a": "2", "A": "3", "": ""},
])
def test_the_label_set_fingerprint_is_the_one_alerts_were_keyed_by(labels):
    assert label_set_key(labels) == old_label_set_key(labels)


def test_random_label_sets_keep_their_fingerprints():
    rng = random.Random(16)
    alphabet = 'aZ09 _-:/"\\,[]{}\x00\x1f\x7f\x80é\u2028\U0001f600'
    for _ in range(2000):
        labels = {"".join(rng.choices(alphabet, k=rng.randint(0, 6))): "".join(rng.choices(alphabet, k=rng.randint(0, 8)))
                  for _ in range(rng.randint(0, 4))}
        assert label_set_key(labels) == old_label_set_key(labels), labels


def full_scan(config: RedactionConfig = None) -> Redactor:
    """A redactor without the one-search skip: every string goes through the trigger loop."""
    redactor = Redactor(config)
    redactor._quick = None
    return redactor


STRINGS = [
    "bench alert 12345", TENANT, "2026-11-25T11:59:00Z", "HighLatency", "ops@example.com", "Bearer abcdefgh12345678",
    "BEARER abcdefgh12345678", "token rotation scheduled", "to\u212aen 1234567890abcdefghijkl", "password=hunter22",
    "pass_word: hunter22", "https://user:pw@host/x", "sk_live_0123456789abcdef", "AKIA0123456789ABCDEF", "xoxb-123456789",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "whsec_0123456789abcdef0123", "ghp_" + "a" * 30, "İstanbul basİc",
    "api_key=abc", "a=b&c=d", "", "plain words only", "digest auth Digest 0123456789",
]


@pytest.mark.parametrize("config", [None, RedactionConfig(patterns=["email", "jwt"]), RedactionConfig(patterns=[])])
def test_the_redactors_skip_of_strings_without_a_trigger_changes_no_answer(config):
    fast, slow = Redactor(config), full_scan(config)
    rng = random.Random(16)
    pieces = STRINGS + ["@", "=", ":", "_live_", "Token ", "eyJ", "\u212a", "\u0130", " ", "-", "_"]
    samples = STRINGS + ["".join(rng.choices(pieces, k=rng.randint(1, 5))) for _ in range(3000)]
    for text in samples:
        assert fast.text(text) == slow.text(text), text
