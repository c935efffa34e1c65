"""The HTTP ingestion endpoint: a real server on loopback, a real client, the real database."""

import json
import logging
import uuid

import httpx
import pytest

from engine.config import IngestConfig, SamplingConfig
from engine.logwriter.http_ingest import IngestServer
from tests.conftest import url_of_missing_database

TOKEN = "ingest-secret-7f3c9a"
TENANT = str(uuid.uuid4())


@pytest.fixture
def server(app):
    app.config.logs.sampling = {"data_activity.api_access_logs": SamplingConfig(routes={"/v1/health": 10})}
    running = IngestServer(app, IngestConfig(listen="127.0.0.1:0", token=TOKEN, max_body_bytes=64 * 1024)).start()
    yield running
    running.stop()


def post(server, table, lines, token=TOKEN):
    body = "\n".join(json.dumps(line) if not isinstance(line, str) else line for line in lines)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{server.url}/v1/logs/{table}", content=body.encode(), headers=headers, timeout=10, trust_env=False)


def count(databases, sql):
    with databases.begin("portal_log") as conn:
        return conn.exec_driver_sql(sql).scalar()


def access(**overrides):
    row = {"tenant_id": TENANT, "base_id": TENANT, "route": "/v1/records", "method": "GET", "status": 200}
    row.update(overrides)
    return row


def test_rows_are_validated_redacted_and_written_before_the_answer(server, databases):
    lines = [
        {"tenant_id": TENANT, "type": "USER_LOGIN", "ip": "198.51.100.4",
         "details": {"email": "ann@tenant.example", "password": "hunter2", "mfa": "totp"}},
        {"tenant_id": TENANT, "type": "USER_LOGIN", "ip": "not-an-ip"},
        "",
        "{broken",
        {"tenant_id": TENANT, "type": "PASSWORD_RESET", "user_agent": "curl/8 Bearer abcdefghijklmnop"},
    ]
    response = post(server, "portal_log.auth_events", lines)
    assert response.status_code == 200
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["written"]) == (2, 2, 2)
    assert [e["line"] for e in answer["errors"]] == [2, 4]
    assert "ip: not an IP address" in answer["errors"][0]["error"]
    assert count(databases, "SELECT count(*) FROM portal_log.auth_events") == 2
    assert count(databases, "SELECT details::text FROM portal_log.auth_events WHERE type = 'USER_LOGIN'") == \
        '{"mfa": "totp", "email": "[REDACTED]", "password": "[REDACTED]"}'
    assert count(databases, "SELECT user_agent FROM portal_log.auth_events WHERE type = 'PASSWORD_RESET'") == \
        "curl/8 Bearer [REDACTED]"


def test_sampling_applies_to_ingested_access_logs(server, databases):
    response = post(server, "data_activity.api_access_logs",
                    [access(route="/v1/health") for _ in range(30)] + [access(route="/v1/health", status=503)])
    answer = response.json()
    assert (answer["accepted"], answer["written"], answer["sampled_out"]) == (31, 4, 27)
    with databases.begin("data_activity") as conn:
        assert conn.exec_driver_sql("SELECT sum(sample_rate) FROM data_activity.api_access_logs").scalar() == 31


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", TOKEN.upper()])
def test_requests_without_the_right_token_are_refused(server, databases, token):
    response = post(server, "data_activity.api_access_logs", [access()], token=token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.text
    with databases.begin("data_activity") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM data_activity.api_access_logs").scalar() == 0


@pytest.mark.parametrize("authorization", [b"Bearer \xff\xfe", b"\xc3\x28", TOKEN.encode() + b"\x80"])
def test_a_non_utf8_authorization_header_is_refused_401_without_a_traceback(server, databases, caplog, authorization):
    import socket

    body = json.dumps(access()).encode()
    request = (b"POST /v1/logs/data_activity.api_access_logs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Authorization: " + authorization + b"\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\nConnection: close\r\n\r\n" + body)
    with caplog.at_level(logging.DEBUG), socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"WWW-Authenticate: Bearer" in answer
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    with databases.begin("data_activity") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM data_activity.api_access_logs").scalar() == 0


def test_unknown_table_and_oversized_body(server):
    response = post(server, "data_activity.nope", [access()])
    assert response.status_code == 404 and "unknown log table" in response.json()["error"]
    response = post(server, "data_activity.api_access_logs", [access(user_agent="x" * 1000) for _ in range(100)])
    assert response.status_code == 413


def test_the_token_never_reaches_the_logs(server, caplog):
    with caplog.at_level(logging.DEBUG):
        post(server, "data_activity.api_access_logs", [access()])
        post(server, "data_activity.api_access_logs", [access()], token="wrong")
    assert TOKEN not in caplog.text


def test_stop_writes_rows_still_buffered(app, databases):
    server = IngestServer(app, IngestConfig(listen="127.0.0.1:0", token=TOKEN)).start()
    try:
        assert post(server, "data_activity.record_events",
                    [{"tenant_id": TENANT, "base_id": TENANT, "table_id": TENANT, "action": "DELETE"}]).status_code == 200
    finally:
        server.stop()
    with databases.begin("data_activity") as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM data_activity.record_events").scalar() == 1


def test_listen_and_token_are_required_together():
    from engine.config import parse_config
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="logs.ingest.token: required when logs.ingest.listen is set"):
        parse_config({"logs": {"ingest": {"listen": "127.0.0.1:9465"}}})


def test_database_down_answers_503_and_keeps_the_rows_buffered(config, clock, database_urls):
    from engine.app import App
    from engine.config import DatabasesConfig

    broken = dict(database_urls, data_activity=url_of_missing_database(database_urls["data_activity"]))
    config.databases = DatabasesConfig(**broken)
    with App(config, clock) as app:
        server = IngestServer(app, IngestConfig(listen="127.0.0.1:0", token=TOKEN)).start()
        try:
            response = post(server, "data_activity.api_access_logs", [access(), access()])
            assert response.status_code == 503
            assert response.json()["buffered"] == 2 and response.json()["written"] == 0
            assert "do not resend" in response.json()["error"]
            assert server.writer.pending() == 2
        finally:
            server.stop()


def test_start_if_configured_only_starts_with_a_listen_address(app):
    from engine.logwriter.http_ingest import start_ingest_if_configured

    assert start_ingest_if_configured(app) is None
    app.config.logs.ingest = IngestConfig(listen="127.0.0.1:0", token=TOKEN)
    server = start_ingest_if_configured(app)
    try:
        assert post(server, "portal_log.auth_events", [{"type": "USER_LOGOUT"}]).json()["written"] == 1
    finally:
        server.stop()
