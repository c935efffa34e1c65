"""notifyctl: the operator's command line, a thin shell over the engine's functions.

Each command group lives in its own module with a `register(subparsers, common)` function that
adds its parsers and sets `handler` to a function (app, args) -> exit code. Exit codes follow
CONTRACT.md: 0 success, 2 bad usage or input (one line on stderr), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import Callable, Optional, Sequence

from engine.app import App
from engine.config import load_config
from engine.errors import BadInput, NotifyError
from engine.logging import configure_logging, register_config_secrets

# Modules under engine.cli that register command groups, in help order.
COMMAND_MODULES = ["db", "partitions", "run_once", "snapshot", "alerts", "event", "status", "logs",
                   "destinations", "notifications", "silence", "preview", "tokens"]


class OneLineUsageParser(argparse.ArgumentParser):
    """Bad usage is one line on stderr and exit 2 (CONTRACT.md), like every other bad input;
    `--help` still prints the usage. Sub-command parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def package_version() -> str:
    try:
        return importlib.metadata.version("notify-engine")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = OneLineUsageParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $NOTIFY_CONFIG, then ./config.yaml)")
    parser = OneLineUsageParser(prog="notifyctl", parents=[common],
                                     description="Operate notify-engine: alerts, notifications, schema, partitions.")
    parser.add_argument("--version", action="version", version=f"notifyctl {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.cli.{name}").register(subparsers, common)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    # Text, not JSON: a person reads notifyctl's stderr. Through the same redaction filter as
    # notifyd, so a secret in a warning never reaches the terminal.
    configure_logging(os.environ.get("NOTIFY_LOG_LEVEL", "WARNING"), json_lines=False)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(getattr(args, "config", None))
        register_config_secrets(config)
        handler: Callable[[App, argparse.Namespace], int] = args.handler
        if not getattr(args, "needs_database", True):
            return handler(App(config, application_name="notifyctl"), args) or 0  # never opened: no database
        with App(config, application_name="notifyctl") as app:
            return handler(app, args) or 0
    except BadInput as exc:
        print(f"notifyctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except NotifyError as exc:
        print(f"notifyctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `notifyctl alerts | head`: the reader left; that is not an error worth a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if os.environ.get("NOTIFY_DEBUG"):
            raise
        print(f"notifyctl: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
