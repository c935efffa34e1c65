"""Errors the CLI and daemon turn into exit codes (CONTRACT.md: 2 for bad usage or input, 1 otherwise)."""


class NotifyError(Exception):
    """Something failed that is not the caller's input: exit 1."""

    exit_code = 1


class BadInput(NotifyError):
    """The caller's input is wrong (config, argument, metric value): exit 2, one line saying where."""

    exit_code = 2


class NotFound(BadInput):
    """The input names something that does not exist (an unknown alert id): exit 2, HTTP 404."""


class ConfigError(BadInput):
    pass
