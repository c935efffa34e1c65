"""Redaction: secrets and emails are masked before a row is written, by configurable rules."""

import uuid

import pytest

from engine.config import RedactionConfig
from engine.logwriter import AdminEvent, ApiAccessLog, AuthEvent, PortalEvent, RecordEvent, TokenEvent
from engine.logwriter.redaction import Redactor

M = "[REDACTED]"
JWT = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


@pytest.fixture
def redactor():
    return Redactor()


def test_sso_login_details_lose_tokens_assertion_and_email_but_keep_structure(redactor):
    event = AuthEvent(type="SSO_ASSERTION", ip="203.0.113.9",
                      user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0",
                      details={
                          "idp": "okta", "email": "jane.doe@customer.example",
                          "saml": {"assertion_id": "_a1b2", "RelayState": "/dashboard", "id_token": JWT},
                          "headers": {"Authorization": f"Bearer {JWT}", "Cookie": "sid=abc; csrftoken=zz",
                                      "X-Request-Id": "req-77"},
                          "mfa": {"method": "totp", "passed": True},
                          "token_id": "0c8f2a9e-6c1d-4f55-9a37-2b0b1f0f6d11",
                      })
    redactor.redact(event)
    d = event.details
    assert d["email"] == M
    assert d["saml"] == {"assertion_id": "_a1b2", "RelayState": "/dashboard", "id_token": M}
    assert d["headers"] == {"Authorization": M, "Cookie": M, "X-Request-Id": "req-77"}
    assert d["mfa"] == {"method": "totp", "passed": True}
    assert d["token_id"] == "0c8f2a9e-6c1d-4f55-9a37-2b0b1f0f6d11"   # a correlation id, kept
    assert d["idp"] == "okta"
    assert event.user_agent == "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0"


def test_password_reset_context_and_free_text(redactor):
    event = PortalEvent(tenant_id=str(uuid.uuid4()), action="MEMBER_INVITE",
                        route="/members/invite?email=bob%40corp.example&invite_token=9f8e7d6c5b4a&page=2",
                        context={"invitee": "Bob <bob@corp.example>", "new_password": "hunter2",
                                 "form": [{"name": "password_confirmation", "value": "hunter2"}],
                                 "smtp": "smtp://mailer:S3cr3t!@smtp.corp.example:587"})
    redactor.redact(event)
    assert event.route == f"/members/invite?email=bob%40corp.example&invite_token={M}&page=2"
    assert event.context["invitee"] == f"Bob <{M}>"
    assert event.context["new_password"] == M
    assert event.context["smtp"] == f"smtp://{M}@smtp.corp.example:587"
    # HAR-style name/value pairs: the value of a secret-named entry is masked too
    assert event.context["form"] == [{"name": "password_confirmation", "value": M}]


def test_api_access_route_query_string_and_user_agent(redactor):
    record = ApiAccessLog(tenant_id=str(uuid.uuid4()), base_id=str(uuid.uuid4()),
                          route="/v1/records?api_key=sk_live_51HxYzAbCdEfGhIjKl&fields=name&token_id=42",
                          method="GET", status=200,
                          user_agent="my-sync/1.2 (contact: ops@tenant.example) token abcdefgh12345678")
    redactor.redact(record)
    assert record.route == f"/v1/records?api_key={M}&fields=name&token_id=42"
    assert record.user_agent == f"my-sync/1.2 (contact: {M}) token {M}"


def test_record_event_diff_and_error(redactor):
    event = RecordEvent(tenant_id=str(uuid.uuid4()), base_id=str(uuid.uuid4()), table_id=str(uuid.uuid4()),
                        action="UPDATE",
                        diff={"before": {"Email": "old@x.example", "Name": "Ann"},
                              "after": {"Email": "new@x.example", "Name": "Ann", "apiSecret": {"v": 1}}},
                        error="webhook https://hooks.example/p?signature=abc123 failed: 401 for key AKIAIOSFODNN7EXAMPLE")
    redactor.redact(event)
    assert event.diff == {"before": {"Email": M, "Name": "Ann"}, "after": {"Email": M, "Name": "Ann", "apiSecret": M}}
    assert event.error == f"webhook https://hooks.example/p?signature={M} failed: 401 for key {M}"


def test_admin_comment_and_token_reason(redactor):
    admin = AdminEvent(action="WALLET_ADJUST", target_type="USER", target_id="dave@tenant.example",
                       diff={"params": {"amount_cents": 500, "stripe_key": "rk_live_abcdefghijklmnopqrst"}},
                       comment="per ticket from carol@tenant.example, slack xoxb-123456789012-abcdefghij")
    redactor.redact(admin)
    assert admin.diff == {"params": {"amount_cents": 500, "stripe_key": M}}
    assert admin.target_id == M
    assert admin.comment == f"per ticket from {M}, slack {M}"
    token = TokenEvent(tenant_id=str(uuid.uuid4()), base_id=str(uuid.uuid4()), action="REVOKE",
                       reason="leaked in CI log: ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    redactor.redact(token)
    assert token.reason == f"leaked in CI log: {M}"


def test_callers_payload_objects_are_not_modified(redactor):
    details = {"password": "p"}
    event = AuthEvent(type="USER_LOGIN", details=details)
    redactor.redact(event)
    assert details == {"password": "p"} and event.details == {"password": M}


def test_rules_are_configurable():
    redactor = Redactor(RedactionConfig(keys=["ssn"], keep_keys=[], patterns=["email"],
                                        extra_patterns=[r"\b\d{3}-\d{2}-\d{4}\b"], mask="***"))
    assert redactor.payload({"ssn_last": "x", "password": "kept: not a rule here"}) == {
        "ssn_last": "***", "password": "kept: not a rule here"}
    assert redactor.text("a@b.example 123-45-6789 Bearer abcdefghijkl") == "*** *** Bearer abcdefghijkl"


def test_unknown_builtin_pattern_is_refused():
    with pytest.raises(ValueError, match="unknown pattern 'ssn'"):
        Redactor(RedactionConfig(patterns=["ssn"]))


def test_config_names_an_unknown_pattern_or_a_bad_regex():
    from engine.config import parse_config
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"logs.redaction.patterns\[1\]: unknown pattern 'ssn'"):
        parse_config({"logs": {"redaction": {"patterns": ["email", "ssn"]}}})
    with pytest.raises(ConfigError, match=r"logs.redaction.extra_patterns\[0\]: not a valid regular expression"):
        parse_config({"logs": {"redaction": {"extra_patterns": ["(unclosed"]}}})


def test_the_word_token_in_prose_is_not_a_credential(redactor):
    assert redactor.text("token rotation scheduled for tenant") == "token rotation scheduled for tenant"
    assert redactor.text("Token 9f86d081884c7d65") == f"Token {M}"
    assert redactor.text("Bearer abcdefghijkl") == f"Bearer {M}"
