"""notifyctl destinations add | list | remove | rekey | test."""

from __future__ import annotations

import sys
from typing import Optional

from engine.cli.output import print_json, print_table
from engine.config import CHANNELS, SEVERITIES
from engine.destinations import add_destination, list_destinations, rekey_destinations, remove_destination
from engine.errors import BadInput


def register(subparsers, common) -> None:
    group = subparsers.add_parser("destinations", parents=[common], help="tenants' delivery destinations")
    actions = group.add_subparsers(dest="destinations_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[common], help="add a destination for a tenant")
    add.add_argument("--tenant", required=True, metavar="T", help="tenant id (UUID)")
    add.add_argument("--channel", required=True, choices=CHANNELS)
    add.add_argument("--target", required=True, metavar="X",
                     help="email address(es), Slack channel id or incoming-webhook URL, webhook URL")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--secret", metavar="S",
                        help="webhook signing secret (whsec_<base64> of 24+ bytes, or any string); "
                             "`-` reads it from stdin, so it never shows in ps")
    secret.add_argument("--secret-file", metavar="PATH", help="read the webhook signing secret from this file")
    add.add_argument("--kinds", metavar="K1,K2", help="only these alert kinds (default: every kind)")
    add.add_argument("--min-severity", choices=SEVERITIES, default="info", help="lowest severity sent (default: info)")
    add.add_argument("--timezone", metavar="TZ", help="IANA time zone of its messages' times (default: messages.timezone)")
    add.add_argument("--locale", metavar="L", help="language of its messages, e.g. en, de (default: messages.locale)")
    add.add_argument("--fallback", metavar="ID",
                     help="a destination of the same tenant that gets a notification this one fails for good, "
                          "is disabled for, or holds paused past delivery.fallback_after (once; never further)")
    add.add_argument("--tag", action="append", metavar="T",
                     help="a label escalation steps can notify (escalation.policies); repeatable or T1,T2")
    add_noise_arguments(add)
    add.set_defaults(handler=add_command)

    update = actions.add_parser("update", parents=[common],
                                help="change a destination's noise control: digest, quiet hours, rate limit, "
                                     "grouped webhook payload (docs/NOISE.md)")
    update.add_argument("id", metavar="ID")
    add_noise_arguments(update)
    update.set_defaults(handler=update_command)

    listing = actions.add_parser("list", parents=[common], help="list destinations (secrets masked)")
    listing.add_argument("--tenant", metavar="T")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=list_command)

    rekey = actions.add_parser("rekey", parents=[common],
                               help="re-encrypt stored secrets under the first key of channels.webhook.secret_key")
    rekey.set_defaults(handler=rekey_command)

    remove = actions.add_parser("remove", parents=[common], help="remove a destination; its queued notifications end skipped")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(handler=remove_command)

    test = actions.add_parser("test", parents=[common],
                              help="send a sample notification now through the real channel path; "
                                   "exit 0 sent, 1 not")
    test.add_argument("id", metavar="ID")
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.set_defaults(handler=test_command)


def add_noise_arguments(parser) -> None:
    """Noise control (issue 15, docs/NOISE.md), all opt-in; critical transitions are never delayed
    by a digest or quiet hours."""
    parser.add_argument("--digest", choices=("immediate", "hourly", "daily"),
                        help="non-critical transitions as an hourly or daily digest (default: immediate)")
    parser.add_argument("--digest-at", metavar="HH:MM",
                        help="local time of the daily digest (its minute for hourly); default 09:00")
    parser.add_argument("--quiet-hours", metavar="START-END",
                        help="local window (e.g. 22:00-07:00) whose non-critical messages wait for its end; off to clear")
    parser.add_argument("--rate-limit", metavar="N/WINDOW",
                        help="at most N messages per WINDOW (e.g. 10/1h); off, or default (rate_limits.destination)")
    parser.add_argument("--grouped-payload", choices=("on", "off"),
                        help="webhooks: grouped transitions as one payload (version 2) instead of one per alert")


def _noise_settings(args) -> dict:
    grouped = None if args.grouped_payload is None else args.grouped_payload == "on"
    return dict(digest=args.digest, digest_at=args.digest_at, quiet_hours=args.quiet_hours,
                rate_limit=args.rate_limit, grouped_payload=grouped)


def update_command(app, args) -> int:
    from engine.noise import set_destination_noise

    settings = _noise_settings(args)
    if all(value is None for value in settings.values()):
        raise BadInput("destinations update: nothing to change (--digest, --digest-at, --quiet-hours, "
                       "--rate-limit, --grouped-payload)")
    with app.databases.begin("notify") as conn:
        set_destination_noise(conn, args.id, **settings)
    print(f"updated {args.id}")
    return 0


def read_secret(args) -> Optional[str]:
    """--secret S, --secret - (stdin) or --secret-file PATH; one trailing newline is not part of it."""
    if args.secret_file is not None:
        try:
            with open(args.secret_file, encoding="utf-8") as fh:
                value = fh.read()
        except OSError as exc:
            raise BadInput(f"--secret-file: cannot read {args.secret_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise BadInput(f"--secret-file: {args.secret_file} is not UTF-8 text") from None
        where = "--secret-file"
    elif args.secret == "-":
        value = sys.stdin.read()
        where = "--secret -"
    else:
        return args.secret
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not value.strip():
        raise BadInput(f"{where}: the secret is empty")
    return value


def add_command(app, args) -> int:
    kinds = args.kinds.split(",") if args.kinds else None
    secret = read_secret(args)
    with app.databases.begin("notify") as conn:
        destination_id = add_destination(conn, app.config, app.clock.now(), tenant_id=args.tenant,
                                         channel=args.channel, target=args.target, secret=secret,
                                         kinds=kinds, min_severity=args.min_severity,
                                         timezone=args.timezone, locale=args.locale, fallback=args.fallback,
                                         tags=args.tag)
        settings = _noise_settings(args)
        if any(value is not None for value in settings.values()):
            from engine.noise import set_destination_noise

            set_destination_noise(conn, str(destination_id), **settings)
    print(destination_id)
    return 0


def list_command(app, args) -> int:
    with app.databases.begin("notify") as conn:
        rows = list_destinations(conn, args.tenant)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["kinds"] = ",".join(row["kinds"]) if row["kinds"] else "*"
            row["tags"] = ",".join(row["tags"]) or "-"
        print_table(rows, ["id", "tenant_id", "channel", "target", "secret", "kinds", "min_severity", "tags",
                           "enabled", "disabled_reason", "last_success_at", "consecutive_failures", "paused_until"])
    return 0


def remove_command(app, args) -> int:
    with app.databases.begin("notify") as conn:
        skipped = remove_destination(conn, args.id)
    print(f"removed {args.id}; {skipped} queued notifications skipped")
    return 0


def rekey_command(app, args) -> int:
    with app.databases.begin("notify") as conn:
        counts = rekey_destinations(conn, app.config)
    print(f"re-encrypted {counts['reencrypted']} destination secrets under the first key; "
          f"encrypted {counts['encrypted_urls']} Slack incoming-webhook URLs stored in plain text")
    return 0


def test_command(app, args) -> int:
    from engine.testsend import send_test_notification

    result = send_test_notification(app, args.id)
    if args.json:
        print_json(result.as_dict())
    else:
        line = (f"{result.outcome}: {result.channel} test notification {result.notification_id} to "
                f"{result.recipient} in {result.latency_ms:.0f} ms")
        print(line + (f": {result.error}" if result.error else ""))
    return 0 if result.sent else 1
