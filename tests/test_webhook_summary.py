"""The webhook payload's `summary`, word for word: every kind (and each shape of its context) x
transition x locale, against literal expected lines in tests/data/webhook_summaries.json.

The expectations were written by the rendering code before the summary got its fast path (the
subject macros of templates/words/<locale>/_subjects.j2 called directly): a change of any word,
space or number format fails here. Regenerate only for an intended change of wording:
    .venv/bin/python tests/test_webhook_summary.py --write
"""

from __future__ import annotations

import json
import re
import os
import shutil
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

import templates  # noqa: E402
from channels.base import Message  # noqa: E402
from channels.webhook import WebhookChannel  # noqa: E402
from engine.config import Config  # noqa: E402
from engine.messages import Composer  # noqa: E402

GOLDEN = Path(__file__).parent / "data" / "webhook_summaries.json"
SHIPPED = Path(templates.__file__).parent
NOW = datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc)
TENANT = "6f1c2d3e-0000-4000-8000-00000000000a"
NAMED_BASE = "b45e0c1a-7d2f-4c3b-9a10-00000000000b"
UNNAMED_BASE = "c0ffee00-7d2f-4c3b-9a10-00000000000c"
TRANSITIONS = ("opened", "escalated", "resolved", "reminder", "ack_expired", "acked", "test",
               "a_transition_from_the_future")
LOCALES = (("en", "UTC"), ("de", "Europe/Berlin"), ("fr", "America/Los_Angeles"), ("de_CH", "Europe/Zurich"))
CAPTURED = "2026-11-30T09:12:00+00:00"
QUOTA = {"plan": "default", "period": "2026-11", "captured_at": CAPTURED}
PROMETHEUS = {"labels": {"alertname": "HighLatency", "service": "api", "severity": "warn"},
              "generator_url": "http://prometheus.example/graph"}

# (case name, kind, base id, context): each shape of context a kind's words tell apart.
SHAPES = (
    ("used", "RUNS_THRESHOLD", NAMED_BASE, dict(QUOTA, value=850, limit=1000, percent=85.0, level_percent=80)),
    ("reached", "RUNS_THRESHOLD", None, dict(QUOTA, value=1000, limit=1000, percent=100, level_percent=100)),
    ("period_end", "RUNS_THRESHOLD", UNNAMED_BASE,
     dict(QUOTA, value=990, limit=1000, percent=99, level_percent=80, resolved_by="period_end")),
    ("cleared", "RUNS_THRESHOLD", NAMED_BASE,
     dict(QUOTA, value=12345, limit=20000, level_percent=80, resolved_by="condition_cleared", cleared_value=7000)),
    ("used", "STORAGE_THRESHOLD", UNNAMED_BASE, dict(QUOTA, value=9.46, limit=10, percent=94.6, level_percent=80)),
    ("period_end", "STORAGE_THRESHOLD", None,
     dict(QUOTA, value=10.2, limit=10, percent=102, level_percent=100, resolved_by="period_end")),
    ("reached", "RECORDS_THRESHOLD", NAMED_BASE, dict(QUOTA, value=100412, limit=100000, percent=100.4,
                                                      level_percent=100)),
    ("computed_percent", "API_CALLS_THRESHOLD", None, dict(QUOTA, value=812345, limit=1000000, level_percent=80)),
    ("low", "WALLET_LOW", None, {"value": 312, "floor": 500, "plan": "default", "captured_at": CAPTURED}),
    ("empty", "WALLET_LOW", NAMED_BASE, {"value": 0, "floor": 500, "plan": "default"}),
    ("forecast", "WALLET_LOW", None, {"value": 1520, "floor": 500, "plan": "default", "runway_days": 2.5,
                                      "burn_per_day": 612, "runway_limit_days": 7, "captured_at": CAPTURED}),
    ("cleared", "WALLET_LOW", UNNAMED_BASE, {"value": 120, "plan": "default", "cleared_value": 2500}),
    ("full", "PAYMENT_FAILED", None, {"event": {"invoice_number": "INV-2026-0117", "amount_cents": 4900,
                                                "currency": "eur", "failure_message": "Your card was declined",
                                                "next_attempt_at": "2026-12-03T09:00:00Z"},
                                      "raised_at": "2026-11-30T08:40:00+00:00"}),
    ("bare", "PAYMENT_FAILED", None, {"event": {"failure_reason": "expired_card"}}),
    ("amount_only", "PAYMENT_FAILED", NAMED_BASE, {"event": {"amount_due_cents": 123456, "currency": "XXZ"}}),
    ("based", "RATE_LIMIT", NAMED_BASE, {"value": 1234, "threshold": 100, "window_seconds": 300}),
    ("cleared", "RATE_LIMIT", None, {"value": 20500, "threshold": 1000, "window_seconds": 3600, "cleared_value": 40}),
    ("annotated", "HighLatency", None, {"event": dict(PROMETHEUS, annotations={"summary": "p99 above 2 s on api",
                                                                              "description": "p99 is 3.1 s"})}),
    ("plain", "DiskFull!", UNNAMED_BASE, {"event": dict(PROMETHEUS, labels={"alertname": "DiskFull!"})}),
    ("no_context", "SOMETHING_NEW", NAMED_BASE, {}),
    ("bad_context", "RUNS_THRESHOLD", UNNAMED_BASE, {"value": "lots", "limit": 1000}),
    ("bad_context", "WALLET_LOW", None, {"floor": 500}),
)
GROUP_KEYS = ("", "digest", "quiet_hours", "rate_limit")


def config() -> Config:
    config = Config()
    config.messages.names = {TENANT: "Acme Analytics", NAMED_BASE: "Sales CRM"}
    return config


def alert(kind: str, base_id, context: dict, n: int) -> dict:
    return {"id": str(uuid.UUID(int=n)), "tenant_id": TENANT, "base_id": base_id, "kind": kind,
            "severity": "warn", "status": "open", "dedupe_key": f"{kind}:{n}",
            "first_seen_at": NOW - timedelta(hours=3), "last_seen_at": NOW, "context": context}


def message(n: int, transition: str, locale: str, zone: str, *, the_alert=None, group=None) -> Message:
    return Message(notification_id=str(uuid.UUID(int=10_000 + n)), tenant_id=TENANT,
                   alert_id=str(uuid.UUID(int=n)), channel="webhook", recipient="http://127.0.0.1:9/",
                   idempotency_key=f"msg_{n}", transition=transition, reminder_no=0, severity="warn", attempt=1,
                   now=NOW, alert=the_alert or {}, destination_id=str(uuid.UUID(int=20_000 + n)), timezone=zone,
                   locale=locale, group=group)


def cases() -> dict[str, Message]:
    out: dict[str, Message] = {}
    for locale, zone in LOCALES:
        for shape, kind, base_id, context in SHAPES:
            for transition in TRANSITIONS:
                n = len(out) + 1
                out[f"{kind}/{shape}/{transition}/{locale}"] = message(
                    n, transition, locale, zone, the_alert=alert(kind, base_id, context, n))
        for key in GROUP_KEYS:
            for mixed in (False, True):
                shapes = [SHAPES[0], SHAPES[6], SHAPES[15]] if mixed else [SHAPES[0], SHAPES[2]]
                members = [{"notification_id": str(uuid.UUID(int=30_000 + i)), "transition": "opened",
                            "severity": "warn", "held_reason": key or "group_wait",
                            "alert": alert(kind, base_id, context, 40_000 + i)}
                           for i, (_, kind, base_id, context) in enumerate(shapes)]
                n = len(out) + 1
                out[f"group/{key or 'group_wait'}/{'mixed' if mixed else 'one_kind'}/{locale}"] = message(
                    n, "group", locale, zone, group={"key": key, "size": len(members) + 3, "members": members})
    return out


def summaries(root=None) -> dict[str, str]:
    channel = WebhookChannel(allow_private_networks=True, connect_timeout=1, read_timeout=1,
                             composer=Composer(config()), templates_root=root)
    return {name: channel.summary(m) for name, m in cases().items()}


def golden() -> dict[str, str]:
    """The golden lines, with the digit-group separator of locales whose CLDR data changed across
    the Babel versions pyproject.toml allows (de_CH: U+2019 up to CLDR 43, an apostrophe since) as
    the installed Babel has it: the lines pin this code's words, not one release's locale data."""
    from babel.numbers import get_group_symbol

    expected = json.loads(GOLDEN.read_text())
    for locale in ("de_CH",):
        symbol = get_group_symbol(locale=locale)
        for name in [n for n in expected if n.endswith(f"/{locale}")]:
            expected[name] = re.sub(r"(?<=\d)['\u2019](?=\d{3})", symbol, expected[name])
    return expected


def check(got: dict[str, str]) -> None:
    expected = golden()
    assert sorted(got) == sorted(expected)
    wrong = {name: (got[name], expected[name]) for name in expected if got[name] != expected[name]}
    assert not wrong, f"{len(wrong)} of {len(expected)} summaries differ, such as {list(wrong.items())[:5]}"


def test_every_summary_reads_word_for_word_as_before():
    check(summaries())


def test_an_override_folder_of_the_same_templates_renders_the_same_lines(tmp_path):
    # Copies of the shipped files in delivery.templates_dir: every line goes through the override
    # path (the summary template and the words imported with context) and must read the same.
    shutil.copytree(SHIPPED / "webhook", tmp_path / "webhook")
    shutil.copytree(SHIPPED / "words", tmp_path / "words")
    check(summaries(tmp_path))


def test_the_golden_lines_cover_every_kind_transition_and_locale():
    expected = golden()
    assert len(expected) == len(LOCALES) * (len(SHAPES) * len(TRANSITIONS) + 2 * len(GROUP_KEYS))
    assert expected["RUNS_THRESHOLD/used/opened/en"] == "You have used 85 % of your monthly runs (base Sales CRM)"
    assert expected["PAYMENT_FAILED/full/reminder/de"] == (
        "Erinnerung: Ihre Zahlung über 49,00 € ist fehlgeschlagen für Rechnung INV-2026-0117")


def test_the_shipped_templates_make_every_line_from_the_subject_macros():
    # The fast path (no words module built per message) covers every single-alert line.
    from engine.messages import Recipient
    from engine.templating import subject_line

    composer, expected = Composer(config()), golden()
    for name, m in cases().items():
        if m.group is None:
            context = composer.subject_context(m.alert, m.transition, m.severity, m.reminder_no,
                                               Recipient(m.destination_id, m.timezone, m.locale, None))
            line = subject_line("webhook", m.alert["kind"], "summary", context)
            assert line is not None and " ".join(line.split()) == expected[name], name


def one_summary(root, kind="RUNS_THRESHOLD", shape="used", transition="opened", locale="en") -> str:
    (_, _, base_id, context), zone = next(s for s in SHAPES if s[:2] == (shape, kind)), dict(LOCALES)[locale]
    channel = WebhookChannel(allow_private_networks=True, connect_timeout=1, read_timeout=1,
                             composer=Composer(config()), templates_root=root)
    return channel.summary(message(1, transition, locale, zone, the_alert=alert(kind, base_id, context, 1)))


def override(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (SHIPPED / name).read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_overridden_words_file_says_its_own_subject(tmp_path):
    override(tmp_path, "words/en/threshold.j2", "{{ s.threshold(c.prefix(), variant, kind, headline, facts, base) }}",
             "Quota: {{ facts.used }} of {{ facts.limit }}{{ where }}")
    assert one_summary(tmp_path) == "Quota: 850 of 1,000 (base Sales CRM)"
    assert one_summary(tmp_path, locale="de") == "85 % der monatlichen Runs verbraucht (Base Sales CRM)"


def test_an_overridden_common_prefix_reaches_the_summary(tmp_path):
    override(tmp_path, "words/de/_common.j2", "{{ s.prefix(variant, transition_name) }}", '{{ "WIEDER: " if variant == "reminder" }}')
    assert one_summary(tmp_path, transition="reminder", locale="de") == \
        "WIEDER: 85 % der monatlichen Runs verbraucht (Base Sales CRM)"
    assert one_summary(tmp_path, transition="reminder") == "Reminder: You have used 85 % of your monthly runs (base Sales CRM)"


def test_an_overridden_subjects_file_is_read_again_when_edited(tmp_path):
    override(tmp_path, "words/en/_subjects.j2", "You have used ", "Used: ")
    assert one_summary(tmp_path) == "Used: 85 % of your monthly runs (base Sales CRM)"
    override(tmp_path, "words/en/_subjects.j2", "You have used ", "Consumed: ")
    path = tmp_path / "words" / "en" / "_subjects.j2"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))   # an edit the loader can see
    assert one_summary(tmp_path) == "Consumed: 85 % of your monthly runs (base Sales CRM)"


def test_an_overridden_summary_template_renders_as_written(tmp_path):
    (tmp_path / "webhook").mkdir()
    (tmp_path / "webhook" / "default.summary.j2").write_text(
        "{% import words as w with context %}[{{ severity }}] {{ w.subject() }} · {{ tenant.name }}")
    assert one_summary(tmp_path) == "[warn] You have used 85 % of your monthly runs (base Sales CRM) · Acme Analytics"
    (tmp_path / "webhook" / "WALLET_LOW.summary.j2").write_text("{{ facts.balance }} left")
    assert one_summary(tmp_path, kind="WALLET_LOW", shape="low") == "$3.12 left"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.write_text(json.dumps(summaries(), ensure_ascii=False, indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


@pytest.mark.parametrize("key", GROUP_KEYS)
def test_a_german_group_email_is_german_throughout(key):
    # words/de/group.j2: without it a German group message fell back to English words around
    # German kind names ("5 dem Runs-Kontingent alerts for ...").
    from channels.email import EmailChannel
    from engine.config import EmailChannelConfig

    cfg = config()
    channel = EmailChannel(EmailChannelConfig(sender="notify@example.com"), composer=Composer(cfg))
    group_case = next(m for name, m in cases().items() if name == f"group/{key or 'group_wait'}/one_kind/de")
    email = channel.build(group_case)
    text = email.get_body(("plain",)).get_content()
    words = email["Subject"] + "\n" + text
    for english in ("alert update", "alerts for", "arrived", "You receive", "more are not listed", "Here is"):
        assert english not in words, (english, words)
    assert "Sie erhalten diese Nachricht" in text and "Alarm" in email["Subject"]
    assert "5 Alarm-Aktualisierungen" in words or "5 Alarme zum Runs-Kontingent" in words
