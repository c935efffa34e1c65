"""What each message says (issue 14): the rendered words and numbers, valid HTML, Block Kit within
Slack's limits, every kind x transition, time zones, names, links, and notifyctl preview."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

import templates

from engine.cli import main as notifyctl
from engine.cli.preview import KINDS, SAMPLE_ALERT, SAMPLE_BASE, SAMPLE_TENANT, render_preview
from engine.config import Config, MessageLinkConfig, parse_config
from engine.errors import ConfigError

TRANSITIONS = ("opened", "reopened", "escalated", "reminder", "resolved", "ack_expired", "escalation", "test",
               "a_transition_from_the_future")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class StrictHtml(HTMLParser):
    """Every element closed, in order; html.parser alone accepts anything."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()


def check_html(html: str) -> None:
    parser = StrictHtml()
    parser.feed(html)
    parser.close()
    assert parser.doctype and not parser.errors and not parser.stack, (parser.errors, parser.stack)
    assert "<link" not in html and "<style" not in html  # inline CSS only: mail clients drop the rest


def check_block_kit(text: str, blocks: list) -> None:
    """Slack's documented limits (api.slack.com/reference/block-kit/blocks)."""
    assert text and len(text) <= 40000
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(0 < len(f["text"]) <= 2000 for f in block.get("fields", []))
        elif block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for button in block["elements"]:
                assert 0 < len(button["text"]["text"]) <= 75 and len(button["url"]) <= 3000
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
        else:
            pytest.fail(f"unexpected block {block['type']}")


def linked_config() -> Config:
    config = Config()
    config.messages.public_url = "https://notify.example.com"
    config.messages.links = {"RUNS_THRESHOLD": MessageLinkConfig(url="https://console.example.com/t/{tenant_id}/billing?base={base_id}")}
    return config


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("transition", TRANSITIONS)
def test_every_kind_and_transition_renders_readable_email_and_valid_slack(kind, transition):
    email = render_preview(linked_config(), kind, "email", transition)
    assert email["subject"] and "\n" not in email["subject"] and "{" not in email["subject"]
    assert "None" not in email["text"] and "None" not in email["subject"]
    assert SAMPLE_ALERT in email["text"]                           # the UUIDs stay in the footer
    check_html(email["html"])
    slack = render_preview(linked_config(), kind, "slack", transition)
    check_block_kit(slack["text"], slack["blocks"])
    if transition == "a_transition_from_the_future":
        assert email["subject"].startswith("Update (a transition from the future): ")
    if transition == "resolved":
        assert "resolved" in email["text"] or "received" in email["subject"].lower()


def test_a_quota_email_says_how_far_along_what_happens_next_and_when_it_resets():
    email = render_preview(Config(), "RUNS_THRESHOLD", "email")
    assert email["subject"] == "You have used 85 % of your monthly runs (base Sales CRM)"
    text = email["text"]
    assert ("Acme Analytics has used 85 % of its monthly runs: 850 of 1,000 (base Sales CRM). "
            "At 100 % new runs are refused.") in text
    assert "The count resets on 1 December 2026." in text
    assert "width=\"85%\"" in email["html"]   # the usage bar
    assert email["headers"]["Auto-Submitted"] == "auto-generated"
    assert email["headers"]["References"] == f"<alert-{SAMPLE_ALERT}@example.com>"
    assert "In-Reply-To" not in email["headers"] and "List-Unsubscribe" not in email["headers"]


def test_a_reminder_and_a_resolution_thread_under_the_alert():
    for transition in ("reminder", "resolved"):
        headers = render_preview(Config(), "RUNS_THRESHOLD", "email", transition)["headers"]
        assert headers["In-Reply-To"] == headers["References"] == f"<alert-{SAMPLE_ALERT}@example.com>"
        assert headers["Message-ID"] == f"<sample-{transition}-{SAMPLE_ALERT}@example.com>"


def test_numbers_are_formatted_for_people():
    storage = render_preview(Config(), "STORAGE_THRESHOLD", "email")["text"]
    assert "9.5 GB of 10.0 GB" in storage and "(0.5 GB left)" in storage
    records = render_preview(Config(), "RECORDS_THRESHOLD", "email")
    assert records["subject"] == "You have reached your records limit (base Sales CRM)"
    assert "100,412 of 100,000" in records["text"]
    api = render_preview(Config(), "API_CALLS_THRESHOLD", "email")["text"]
    assert "812,345 of 1,000,000" in api
    wallet = render_preview(Config(), "WALLET_LOW", "email")["text"]
    assert "The wallet balance is $3.12, below the floor of $5.00" in wallet
    payment = render_preview(Config(), "PAYMENT_FAILED", "email")
    assert payment["subject"] == "Your payment of $49.00 failed for invoice INV-2026-0117"
    assert "The reason given: Your card was declined." in payment["text"]
    rate = render_preview(Config(), "RATE_LIMIT", "email")["text"]
    assert "1,234 requests to base Sales CRM were refused with HTTP 429 (too many requests) in the last 5 minutes" in rate


def test_money_is_in_the_plans_currency():
    config = Config()
    config.plans["default"].currency = "EUR"
    assert "€3.12, below the floor of €5.00" in render_preview(config, "WALLET_LOW", "email")["text"]


def test_times_are_in_the_destinations_time_zone_with_the_zone_named():
    text = render_preview(Config(), "RUNS_THRESHOLD", "email", tz="America/Los_Angeles")["text"]
    # The billing month ends at midnight UTC: on the evening before on the US west coast.
    assert "The count resets on 30 November 2026." in text
    assert "Resets: 30 November 2026, 16:00 (America/Los_Angeles)" in text
    config = Config()
    config.messages.timezone = "Europe/Berlin"
    assert "Measured: 30 November 2026, 10:12 (Europe/Berlin)" in render_preview(config, "RUNS_THRESHOLD", "email")["text"]


def test_names_replace_uuids_in_the_sentence_but_not_in_the_footer():
    config = Config()
    config.messages.names = {SAMPLE_BASE: "Marketing"}
    text = render_preview(config, "RUNS_THRESHOLD", "email")["text"]
    assert "(base Marketing)" in text and f"base {SAMPLE_BASE}" in text and f"workspace {SAMPLE_TENANT}" in text


def test_links_are_filled_in_with_the_tenant_and_base_and_the_alert_link_needs_a_public_url():
    email = render_preview(linked_config(), "RUNS_THRESHOLD", "email")
    assert f"Upgrade your plan: https://console.example.com/t/{SAMPLE_TENANT}/billing?base={SAMPLE_BASE}" in email["text"]
    assert f"View this alert: https://notify.example.com/ui/alerts/{SAMPLE_ALERT}" in email["text"]
    slack = render_preview(linked_config(), "RUNS_THRESHOLD", "slack")
    (actions,) = [b for b in slack["blocks"] if b["type"] == "actions"]
    assert [b["text"]["text"] for b in actions["elements"]] == ["Upgrade your plan", "View this alert"]
    assert "View this alert" not in render_preview(Config(), "RUNS_THRESHOLD", "email")["text"]


def test_a_link_template_can_only_fill_in_its_fixed_fields():
    with pytest.raises(ConfigError, match=r"messages.links.RUNS_THRESHOLD.url: only .* got \{tenant_id.__class__\}"):
        parse_config({"messages": {"links": {"RUNS_THRESHOLD": {"url": "https://x.example/{tenant_id.__class__}"}}}})
    with pytest.raises(ConfigError, match="messages.timezone: not an IANA time zone"):
        parse_config({"messages": {"timezone": "Mars/Olympus"}})
    with pytest.raises(ConfigError, match="plans.default.currency: not an ISO 4217"):
        parse_config({"plans": {"default": {"currency": "XYZW"}}})


def test_slack_text_is_escaped_for_mrkdwn():
    config = Config()
    config.messages.names = {SAMPLE_TENANT: "A&B <!channel>"}
    blocks = render_preview(config, "RUNS_THRESHOLD", "slack")["blocks"]
    assert "A&amp;B &lt;!channel&gt; has used" in blocks[1]["text"]["text"]


def test_the_webhook_payload_carries_a_summary_beside_the_data():
    payload = render_preview(Config(), "WALLET_LOW", "webhook")["payload"]
    assert payload["version"] == 1 and payload["summary"] == "Your wallet balance is low: $3.12"
    assert payload["data"]["alert"]["tenant_id"] == SAMPLE_TENANT


def test_notifyctl_preview_prints_subject_and_text_and_writes_the_html(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("messages: {timezone: UTC}\n")
    html = tmp_path / "runs.html"
    assert notifyctl(["preview", "--config", str(config), "--kind", "RUNS_THRESHOLD", "--channel", "email",
                      "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: You have used 85 % of your monthly runs (base Sales CRM)\n\n")
    assert "850 of 1,000" in out and html.read_text().startswith("<!DOCTYPE html>")
    assert notifyctl(["preview", "--config", str(config), "--kind", "RATE_LIMIT", "--channel", "slack"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n\n", 1)[1])[0]["type"] == "header"
    assert notifyctl(["preview", "--config", str(config), "--kind", "RATE_LIMIT", "--channel", "slack",
                      "--html", str(html)]) == 2
    assert capsys.readouterr().err.strip() == "notifyctl: --html: only email messages have an HTML part"
    assert notifyctl(["preview", "--config", str(config), "--kind", "RATE_LIMIT", "--channel", "email",
                      "--timezone", "Nowhere/Else"]) == 2


def test_the_locale_picks_the_words_and_babel_the_formats():
    email = render_preview(Config(), "RUNS_THRESHOLD", "email", locale="de", tz="Europe/Berlin")
    assert email["subject"] == "85 % der monatlichen Runs verbraucht (Base Sales CRM)"   # one-line header: plain spaces
    assert "hat 85\u00a0% der monatlichen Runs verbraucht" in email["text"]
    assert "850 von 1.000 (Base Sales CRM)" in email["text"]
    assert "Der Zähler wird am 1. Dezember 2026 zurückgesetzt." in email["text"]
    assert '<html lang="de">' in email["html"]
    wallet = render_preview(Config(), "WALLET_LOW", "slack", locale="de")
    assert wallet["text"] == "Ihr Guthaben ist niedrig: 3,12\u00a0$"


def test_a_missing_translation_falls_back_to_english_never_to_an_error(tmp_path):
    email = render_preview(Config(), "RUNS_THRESHOLD", "email", locale="fr")
    assert email["subject"] == "You have used 85 % of your monthly runs (base Sales CRM)"
    # A translation with only some files: the rest of the message reads in English.
    (tmp_path / "words" / "fr").mkdir(parents=True)
    (tmp_path / "words" / "fr" / "_common.j2").write_text(
        (Path(templates.__file__).parent / "words" / "en" / "_common.j2").read_text()
        .replace('"view_alert": "View this alert"', '"view_alert": "Voir cette alerte"'))
    config = linked_config()
    config.delivery.templates_dir = str(tmp_path)
    email = render_preview(config, "PAYMENT_FAILED", "email", locale="fr")
    # Numbers and dates still read as the locale writes them.
    assert email["subject"] == "Your payment of 49,00 $US failed for invoice INV-2026-0117"
    assert "Voir cette alerte: https://notify.example.com/ui/alerts/" in email["text"]
