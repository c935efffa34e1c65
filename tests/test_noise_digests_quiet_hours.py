"""Digests (issue 15, item 2) and quiet hours (item 6): non-critical transitions wait, held with the
reason, for the destination's digest time or the end of its quiet hours in its own time zone, then
go as one message; critical transitions never wait; an empty digest is not sent."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from engine.app import App
from engine.cli import main as cli_main
from engine.dispatcher import deliver_due
from engine.noise import release_job
from engine.planner import plan_transitions_of_this_transaction
from tests.delivery_support import TENANT, add_dest, insert_alert
from tests.noise_support import mail_app, rows, subjects  # noqa: F401  (mail_app: a fixture)


def destination(app, **settings) -> str:
    with app.databases.begin("notify") as conn:
        dest = add_dest(conn, app.clock.now(), "email", "owner@tenant.example")
        conn.execute(text("UPDATE notify.destinations SET timezone = :tz WHERE id = :id"),
                     dict(tz=settings.pop("timezone"), id=dest))
        if settings:   # one statement: quiet_start and quiet_end are set together (a CHECK)
            assignments = ", ".join(f"{column} = CAST(:{column} AS {'text' if column == 'digest' else 'time'})"
                                    for column in settings)
            conn.execute(text(f"UPDATE notify.destinations SET {assignments} WHERE id = :id"), dict(settings, id=dest))
    return dest


def transition(app, kind: str = "RUNS_THRESHOLD", severity: str = "warn") -> None:
    with app.databases.begin("notify") as conn:
        insert_alert(conn, app.clock.now(), kind=kind, severity=severity)
        # Planned in the transition's own transaction, as detection and events do (the periodic
        # tick would also plan reminders of the earlier alerts, hours later here).
        plan_transitions_of_this_transaction(conn, app.config, app.clock.now())


def test_a_daily_digest_goes_at_the_destinations_local_time_and_critical_does_not_wait(mail_app, smtp, clock):
    handler, _ = smtp
    app = mail_app
    # 12:00 UTC is 13:00 in Berlin: today's 09:00 is past, so the digest is tomorrow 09:00 Berlin.
    destination(app, timezone="Europe/Berlin", digest="daily", digest_at="09:00")
    transition(app, kind="RUNS_THRESHOLD")
    app.clock.advance(timedelta(hours=3))
    transition(app, kind="STORAGE_THRESHOLD")
    transition(app, kind="PAYMENT_FAILED", severity="critical")
    assert deliver_due(app).sent == 1
    assert subjects(handler) == ["Your payment failed"]
    held = rows(app, "status = 'held'")
    due = datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc)       # 09:00 CET
    assert [(r["held_reason"], r["release_at"]) for r in held] == [("digest", due), ("digest", due)]

    clock.current = due - timedelta(seconds=1)
    release_job(app)
    assert deliver_due(app).sent == 0
    clock.current = due
    # A restart while the digest is due: a new process (App) finds the held rows in the database.
    with App(app.config, clock) as restarted:
        release_job(restarted)
        assert deliver_due(restarted).sent == 1
    assert subjects(handler)[-1] == "Digest: 2 alert updates"
    (message,) = rows(app, "transition = 'group'")
    assert {r["message_id"] for r in rows(app, "status = 'grouped'")} == {message["id"]}


def test_an_empty_digest_is_not_sent_and_an_hourly_digest_follows_the_local_minute(mail_app, smtp, clock):
    handler, _ = smtp
    app = mail_app
    # Kolkata is UTC+5:30: 12:00 UTC is 17:30 there; hourly at minute 15 means 18:15 IST = 12:45 UTC.
    destination(app, timezone="Asia/Kolkata", digest="hourly", digest_at="00:15")
    for hour in range(3):      # three digest times pass with nothing held: nothing is sent
        clock.advance(timedelta(hours=1))
        release_job(app)
    assert deliver_due(app).sent == 0 and handler.messages == [] and rows(app) == []
    clock.current = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
    transition(app)
    (row,) = rows(app)
    assert row["status"] == "held" and row["release_at"] == datetime(2026, 11, 25, 15, 45, tzinfo=timezone.utc)
    clock.current = row["release_at"]
    release_job(app)
    assert deliver_due(app).sent == 1          # a digest of one is that message itself
    assert rows(app)[0]["status"] == "sent"


def test_quiet_hours_hold_non_critical_messages_until_the_window_ends_then_send_one(mail_app, smtp, clock):
    handler, _ = smtp
    app = mail_app
    destination(app, timezone="America/New_York", quiet_start="22:00", quiet_end="07:00")
    clock.current = datetime(2026, 11, 26, 4, 0, tzinfo=timezone.utc)        # 23:00 in New York
    for kind in ("RUNS_THRESHOLD", "STORAGE_THRESHOLD", "WALLET_LOW"):
        transition(app, kind=kind)
        clock.advance(timedelta(hours=1))
    transition(app, kind="PAYMENT_FAILED", severity="critical")
    assert deliver_due(app).sent == 1 and subjects(handler) == ["Your payment failed"]
    end = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)                 # 07:00 in New York
    held = rows(app, "status = 'held'")
    assert {(r["held_reason"], r["release_at"]) for r in held} == {("quiet_hours", end)}
    clock.current = end
    release_job(app)
    assert deliver_due(app).sent == 1
    assert subjects(handler)[-1] == "During quiet hours: 3 alert updates"
    # Outside the window a transition goes at once.
    transition(app)
    assert deliver_due(app).sent == 1 and len(handler.messages) == 3


def test_noise_flags_of_destinations_add_and_update(config_file, capsys):
    path = str(config_file())
    assert cli_main(["--config", path, "destinations", "add", "--tenant", TENANT, "--channel", "email",
                     "--target", "owner@tenant.example", "--timezone", "Europe/Berlin", "--digest", "daily",
                     "--digest-at", "08:30", "--quiet-hours", "22:00-07:00"]) == 0
    dest = capsys.readouterr().out.strip()
    assert cli_main(["--config", path, "destinations", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["digest"], listed["digest_at"], listed["quiet_hours"]) == ("daily", "08:30", "22:00-07:00")
    assert cli_main(["--config", path, "destinations", "update", dest, "--quiet-hours", "off",
                     "--digest", "immediate", "--grouped-payload", "on"]) == 0
    capsys.readouterr()
    assert cli_main(["--config", path, "destinations", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["digest"], listed["quiet_hours"], listed["grouped_payload"]) == ("immediate", None, True)
    assert cli_main(["--config", path, "destinations", "update", dest, "--quiet-hours", "22:00"]) == 2
    assert "--quiet-hours: expected START-END in local time (such as 22:00-07:00) or off, got '22:00'" in \
        capsys.readouterr().err
    assert cli_main(["--config", path, "destinations", "update", dest, "--digest-at", "25:00"]) == 2
    assert "--digest-at: expected a local time HH:MM" in capsys.readouterr().err


from tests.test_api import auth, client, server, tokens  # noqa: E402,F401  (fixtures of the API tests)


def test_the_apis_destination_body_takes_the_noise_settings(client, tokens):
    body = {"tenant_id": TENANT, "channel": "email", "target": "owner@tenant.example", "digest": "daily",
            "digest_at": "07:45", "quiet_hours": "21:00-06:30", "rate_limit": "5/1h"}
    added = client.post("/v1/destinations", json=body, headers=auth(tokens["admin"]))
    assert added.status_code == 201, added.text
    (listed,) = client.get("/v1/destinations", headers=auth(tokens["read"])).json()["items"]
    assert (listed["digest"], listed["digest_at"], listed["quiet_hours"], listed["rate_limit_messages"],
            listed["rate_limit_window"]) == ("daily", "07:45", "21:00-06:30", 5, 3600.0)
    refused = client.post("/v1/destinations", json={**body, "quiet_hours": "soon"}, headers=auth(tokens["admin"]))
    assert refused.status_code == 400 and "quiet-hours" in refused.text
