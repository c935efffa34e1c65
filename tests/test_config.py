"""config.yaml: every key typed and validated; errors name the file and the key."""

import pytest

from engine.cli import main as notifyctl
from engine.config import Config, Duration, load_config
from engine.errors import ConfigError


def parse(yaml_text, tmp_path, environ=None):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    return load_config(path, environ=environ or {})


def test_shipped_config_loads_and_uses_the_embedded_default():
    config = load_config("config.yaml", environ={})
    assert config.databases is None
    assert config.plans["default"].runs_used == 1000
    assert config.delivery.backoff_max == 36000
    assert config.jobs.maintenance == 86400


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("30s", 30), ("5m", 300), ("4h", 14400),
                                          ("1d", 86400), (45, 45), ("2.5", 2.5)])
def test_durations(text, seconds):
    assert Duration.parse(text) == seconds


@pytest.mark.parametrize("yaml_text,message", [
    ("jobs: {collect: soon}", "jobs.collect: expected a duration"),
    ("jobs: {colect: 5s}", "jobs.colect: unknown key"),
    ("delivery: {max_attempts: many}", "delivery.max_attempts: expected an integer, got 'many'"),
    ("delivery: {max_attempts: 0}", "delivery.max_attempts: must be at least 1"),
    ("plans: {default: {runs_used: -5}}", "plans.default.runs_used: a limit cannot be negative"),
    ("plans: {default: {runs_used: lots}}", "plans.default.runs_used: expected a number"),
    ("plans: {pro: {runs_used: 5}}", "plans.default: required"),
    ("tenants: {acme: {plan: default}}", "tenants.acme: a tenant id must be a UUID"),
    ("tenants: {6f1c2d3e-0000-4000-8000-000000000001: {plan: gold}}", "unknown plan 'gold'"),
    ("databases: {notify: postgresql:///x}", "databases.admin_log: required key is missing"),
    ("channels: {webhook: {allow_private_networks: perhaps}}", "expected true or false"),
    ("channels: {email: {security: maybe}}", "channels.email.security"),
    ("http: {listen: nowhere}", "http.listen: expected HOST:PORT"),
    ("partitions: [1, 2]", "partitions: expected a mapping, got a list"),
    ("channels: {slack: {token: '${SLACK_TOKEN}'}}", "channels.slack.token: environment variable SLACK_TOKEN is not set"),
    # A malformed key is refused at load (so a SIGHUP with one keeps the running config), never echoed.
    ("channels: {webhook: {secret_key: not-a-fernet-key}}", "channels.webhook.secret_key: expected a Fernet key"),
    ("channels: {webhook: {secret_key: [" + "A" * 43 + "=, not-a-fernet-key]}}",
     "channels.webhook.secret_key[1]: expected a Fernet key"),
])
def test_bad_values_are_named_with_their_key(tmp_path, yaml_text, message):
    with pytest.raises(ConfigError) as info:
        parse(yaml_text, tmp_path)
    assert message in str(info.value)
    assert str(tmp_path / "config.yaml") in str(info.value)
    assert "not-a-fernet-key" not in str(info.value)


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"config.yaml:3:\d+: not valid YAML"):
        parse("jobs:\n  collect: 5s\n  detect: 5s: 3\n", tmp_path)


def test_environment_interpolation_with_fallback(tmp_path):
    config = parse("channels:\n  slack: {token: '${SLACK_TOKEN}'}\n  email: {port: '${SMTP_PORT:-2525}'}\n",
                   tmp_path, environ={"SLACK_TOKEN": "xoxb-secret"})
    assert config.channels.slack.token == "xoxb-secret"
    assert config.channels.email.port == 2525


def test_secrets_file_feeds_interpolation_and_environment_wins(tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# comment\nSMTP_PASSWORD=from-file\nSLACK_TOKEN='xoxb-file'\n")
    config = parse(f"secrets_file: {secrets}\nchannels:\n  email: {{password: '${{SMTP_PASSWORD}}'}}\n"
                   "  slack: {token: '${SLACK_TOKEN}'}\n", tmp_path, environ={"SLACK_TOKEN": "xoxb-env"})
    assert config.channels.email.password == "from-file"
    assert config.channels.slack.token == "xoxb-env"


def test_a_malformed_secrets_line_is_located_but_never_echoed(tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("hunter2-without-a-name\n")
    with pytest.raises(ConfigError) as info:
        parse(f"secrets_file: {secrets}\n", tmp_path)
    assert f"{secrets}:1" in str(info.value) and "hunter2" not in str(info.value)


def test_missing_default_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOTIFY_CONFIG", raising=False)
    assert load_config() == Config()


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_reports_a_bad_config_in_one_line_with_exit_2(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("jobs: {collect: soon}\n")
    assert notifyctl(["db", "init", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "jobs.collect" in err


def test_notify_config_environment_variable_is_used(tmp_path, monkeypatch, capsys):
    path = tmp_path / "elsewhere.yaml"
    path.write_text("jobs: {detect: never}\n")
    monkeypatch.setenv("NOTIFY_CONFIG", str(path))
    assert notifyctl(["db", "init"]) == 2
    assert "elsewhere.yaml: jobs.detect" in capsys.readouterr().err


def test_an_unquoted_reference_inside_a_flow_mapping_works_as_the_contract_writes_it(tmp_path):
    # CONTRACT.md: `slack: {token: ${SLACK_TOKEN}, base_url: ...}`, which plain YAML cannot parse.
    config = parse("channels:\n  slack: {token: ${SLACK_TOKEN}, base_url: https://slack.com/api/}\n"
                   "  email: {host: 127.0.0.1, port: ${SMTP_PORT:-2525}}\n",
                   tmp_path, environ={"SLACK_TOKEN": "xoxb-a: {b}, #c"})
    assert config.channels.slack.token == "xoxb-a: {b}, #c"  # a value is never parsed as YAML
    assert config.channels.slack.base_url == "https://slack.com/api/"
    assert config.channels.email.port == 2525


def test_an_unset_unquoted_reference_is_named_with_its_key(tmp_path):
    with pytest.raises(ConfigError, match="channels.slack.token: environment variable SLACK_TOKEN is not set"):
        parse("channels:\n  slack: {token: ${SLACK_TOKEN}}\n", tmp_path)


def test_references_in_mapping_keys_are_replaced_too(tmp_path):
    # CONTRACT.md: "${NAME} anywhere in the file" - a plan name or tenant id from the environment.
    tenant = "6f1c2d3e-0000-4000-8000-000000000009"
    config = parse("plans:\n  default: {runs_used: 10}\n  ${PLAN_NAME}: {runs_used: 5}\n"
                   "tenants:\n  ${TENANT_ID}: {plan: ${PLAN_NAME}}\n",
                   tmp_path, environ={"PLAN_NAME": "pro", "TENANT_ID": tenant})
    assert config.plans["pro"].runs_used == 5
    assert config.tenants[tenant].plan == "pro"
    with pytest.raises(ConfigError, match=r"plans.\$\{PLAN_NAME\}: is 'default' once substituted"):
        parse("plans:\n  default: {runs_used: 10}\n  ${PLAN_NAME}: {runs_used: 5}\n", tmp_path,
              environ={"PLAN_NAME": "default"})


def test_a_negative_partition_count_names_its_key(tmp_path):
    with pytest.raises(ConfigError, match=r"partitions.keep_months: cannot be negative, got -1"):
        parse("partitions: {keep_months: -1}\n", tmp_path)


def test_bad_usage_is_one_line_on_stderr_naming_the_command(capsys):
    from engine.cli import main as notifyctl

    with pytest.raises(SystemExit) as exit_info:
        notifyctl(["destinations", "add", "--tenant", "6f1c2d3e-0000-4000-8000-000000000001",
                   "--channel", "sms", "--target", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("notifyctl destinations add: argument --channel")
