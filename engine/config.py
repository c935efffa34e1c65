"""config.yaml, parsed once at the edge into typed, validated objects.

Each section is a dataclass; `load_config` walks the YAML against the dataclass fields, so an
unknown key, a wrong type or a bad duration is reported with its dotted path and the file. The
rest of the code reads attributes, never raw dicts. To add a key, add a field (with a default)
to the dataclass of its section.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from engine.errors import ConfigError

SECTIONS = ("admin_log", "portal_log", "data_activity", "notify")
QUOTA_METRICS = ("runs_used", "storage_gb", "records_count", "api_calls")
METRICS = QUOTA_METRICS + ("wallet_balance_cents",)


class Duration(float):
    """Seconds. In YAML: a number of seconds or a number with a unit: 500ms, 30s, 5m, 4h, 1d."""

    _UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        if isinstance(value, bool):
            raise ValueError("expected a duration such as 30s, 5m, 4h or 1d")
        if isinstance(value, (int, float)):
            if value < 0:
                raise ValueError("a duration cannot be negative")
            return cls(value)
        match = cls._PATTERN.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as 30s, 5m, 4h or 1d, got {value!r}")
        return cls(float(match.group(1)) * cls._UNITS[match.group(2) or "s"])


# --------------------------------------------------------------------------- sections


@dataclass
class DatabasesConfig:
    admin_log: str
    portal_log: str
    data_activity: str
    notify: str

    def url(self, section: str) -> str:
        return getattr(self, section)


@dataclass
class PlanConfig:
    """Limits per metric; a metric left out has no threshold alerts."""

    runs_used: Optional[float] = None
    storage_gb: Optional[float] = None
    records_count: Optional[float] = None
    api_calls: Optional[float] = None
    wallet_floor_cents: Optional[int] = None
    currency: str = "USD"     # ISO 4217: how messages show the plan's money amounts (all in cents)

    def limit(self, metric: str) -> Optional[float]:
        return getattr(self, metric) if metric in QUOTA_METRICS else None


@dataclass
class TenantConfig:
    plan: str = "default"


@dataclass
class EmailChannelConfig:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "alerts@example.com"
    username: Optional[str] = None
    password: Optional[str] = None
    # none | starttls | tls. Explicit: aiosmtplib's default upgrades only when the server offers
    # STARTTLS, which a man in the middle can strip.
    security: str = "none"
    timeout: Duration = Duration(10)
    # CA bundle (PEM) that verifies the server's certificate for starttls/tls; system CAs when unset.
    ca_file: Optional[str] = None


@dataclass
class SlackChannelConfig:
    token: Optional[str] = None
    base_url: str = "https://slack.com/api/"
    timeout: Duration = Duration(10)
    # The Slack app's signing secret (a secret: ${SLACK_SIGNING_SECRET}): verifies the button
    # callbacks POST /slack/actions receives. Unset: messages carry no Ack/Resolve buttons.
    signing_secret: Optional[str] = None


@dataclass
class WebhookChannelConfig:
    allow_private_networks: bool = False
    connect_timeout: Duration = Duration(5)
    read_timeout: Duration = Duration(10)
    # One deadline per send over name resolution, connecting (to each of a name's addresses in
    # turn) and the whole response; unset: connect_timeout + read_timeout.
    timeout: Optional[Duration] = None
    # Fernet key (urlsafe base64 of 32 bytes) that encrypts destinations' signing secrets and Slack
    # incoming-webhook URLs at rest; e.g. ${NOTIFY_SECRET_KEY}. Several keys (a list, or one string
    # with commas) rotate: the first encrypts, all decrypt (engine.secretbox).
    secret_key: Optional[str | list[str]] = None
    # HTTP client of the webhook hot path: http1 (asyncio + httptools, the lean default measured in
    # BENCHMARKS.md) or aiohttp.
    client: str = "http1"
    # The payload's `summary` (the message in one line for people, docs/WEBHOOKS.md). false saves
    # the CPU of rendering it: about 0.1 ms a delivery (bench/summary_bench.py, BENCHMARKS.md).
    summary: bool = True


@dataclass
class ChannelsConfig:
    email: EmailChannelConfig = field(default_factory=EmailChannelConfig)
    slack: SlackChannelConfig = field(default_factory=SlackChannelConfig)
    webhook: WebhookChannelConfig = field(default_factory=WebhookChannelConfig)


@dataclass
class EmbeddedConfig:
    data_dir: str = ".notify/pg"
    # Binaries: found on PATH, through pg_config, or under /usr/lib/postgresql/*/bin when unset.
    bin_dir: Optional[str] = None
    # initdb refuses root: when run as root the cluster belongs to this user.
    run_as: str = "postgres"


@dataclass
class JobsConfig:
    collect: Duration = Duration(60)
    detect: Duration = Duration(60)
    maintenance: Duration = Duration(86400)
    # Deletes resolved alerts older than retention.resolved_alerts (and old job_runs rows).
    cleanup: Duration = Duration(3600)
    # Plans transitions not planned in their own transaction and due reminders (issue 4).
    plan: Duration = Duration(30)
    # Releases held notifications whose time has come (group_wait, digest, quiet hours, rate
    # limit) as one message per group (issue 15, engine.noise).
    release: Duration = Duration(5)


@dataclass
class DeliveryConfig:
    max_attempts: int = 8
    backoff_base: Duration = Duration(5)
    backoff_max: Duration = Duration(36000)
    lease: Duration = Duration(60)
    reminder_interval: Duration = Duration(4 * 3600)
    # Longest wait a receiver's Retry-After may ask for; it is honoured past backoff_max.
    retry_after_max: Duration = Duration(86400)
    # Delivery (issue 4): notifications claimed per batch, dispatcher coroutines per process, how
    # long the dispatcher sleeps without a NOTIFY wake-up, and in-flight sends per channel.
    batch_size: int = 500
    workers: int = 2
    poll_interval: Duration = Duration(5)
    concurrency: dict[str, int] = field(default_factory=lambda: {"email": 4, "slack": 4, "webhook": 128})
    # A folder laid out like templates/ whose files override the shipped ones (same names).
    templates_dir: Optional[str] = None
    # Destination health (issue 13): this many failed attempts in a row (across notifications)
    # pause a destination for pause_base, doubling with each pause in a row up to pause_max; its
    # notifications wait meanwhile, and one probes when the pause ends. 0 turns pausing off.
    pause_after_failures: int = 5
    pause_base: Duration = Duration(60)
    pause_max: Duration = Duration(3600)
    # Fallback (issue 13): a notification waiting this long on a paused destination that names a
    # fallback also goes to the fallback, once. 0: only failures and disabled destinations fall back.
    fallback_after: Duration = Duration(3600)


@dataclass
class RouteConfig:
    """An ops route: every alert matching kinds and min_severity also goes to this target."""

    name: str
    channel: str
    target: str
    kinds: Optional[list[str]] = None      # None: every kind
    min_severity: str = "info"
    secret: Optional[str] = None           # webhook signing secret, e.g. ${OPS_WEBHOOK_SECRET}
    escalation_only: bool = False          # reached only by escalation steps that name it
    # Grouping (issue 15): None takes grouping.group_wait / group_interval / group_by.
    group_wait: Optional[Duration] = None
    group_interval: Optional[Duration] = None
    group_by: Optional[list[str]] = None
    grouped_payload: bool = False          # webhooks: group like email and Slack (payload version 2)


GROUP_LABELS = ("tenant", "kind", "severity", "base")


@dataclass
class DestinationGroupingConfig:
    """Grouping of tenant destinations' notifications (issue 15). group_wait 0 still groups the
    transitions of one planning pass (ten bases crossing 80 % in one detection pass: one email)."""

    group_wait: Duration = Duration(0)
    group_interval: Duration = Duration(0)
    group_by: list[str] = field(default_factory=lambda: ["tenant", "kind"])


@dataclass
class GroupingConfig:
    """Grouping (issue 15, docs/NOISE.md): the top-level keys are the ops routes' defaults
    (Alertmanager's: 30s, 5m), `destinations` the tenant destinations'. Webhooks stay one payload
    per alert unless a route or destination asks for the grouped payload."""

    group_wait: Duration = Duration(30)
    group_interval: Duration = Duration(300)
    group_by: list[str] = field(default_factory=lambda: ["kind", "severity"])
    destinations: DestinationGroupingConfig = field(default_factory=DestinationGroupingConfig)
    # A group message lists at most this many of its transitions; the rest are named by a count
    # and the `notifyctl notifications` command that lists them.
    list_max: int = 50


@dataclass
class RateLimitConfig:
    messages: int = 0                 # at most this many messages per window; 0: no limit
    window: Duration = Duration(3600)


@dataclass
class RateLimitsConfig:
    """At most N messages per tenant destination and per tenant per window (issue 15); off unless
    set. A destination may override its own (`destinations add/update --rate-limit N/WINDOW`)."""

    destination: RateLimitConfig = field(default_factory=RateLimitConfig)
    tenant: RateLimitConfig = field(default_factory=RateLimitConfig)


@dataclass
class EscalationMatchConfig:
    severity: Optional[str | list[str]] = None   # None: every severity
    kind: Optional[str | list[str]] = None       # None: every kind


@dataclass
class EscalationTargetConfig:
    route: Optional[str] = None    # an ops route of `routes:` by name
    tag: Optional[str] = None      # the alert's tenant's destinations with this tag


@dataclass
class EscalationStepConfig:
    after: Duration
    notify: EscalationTargetConfig


@dataclass
class EscalationPolicyConfig:
    match: EscalationMatchConfig = field(default_factory=EscalationMatchConfig)
    # Reminder intervals, the last one repeating; None: delivery.reminder_interval; []: none.
    reminders: Optional[list[Duration]] = None
    steps: list[EscalationStepConfig] = field(default_factory=list)


@dataclass
class EscalationConfig:
    """Acks that lapse and escalation policies (issue 13); docs/ARCHITECTURE.md, "Plan"."""

    ack_timeout: dict[str, Duration] = field(default_factory=dict)   # severity -> default `ack --for`
    policies: list[EscalationPolicyConfig] = field(default_factory=list)   # the first match wins


@dataclass
class InhibitRuleConfig:
    """Alertmanager's inhibit_rules (docs/NOISE.md): while an unresolved alert matching
    source_matchers exists, notifications of the same tenant's alerts matching target_matchers
    and equal to it on every `equal` label are suppressed. Matchers: kind and severity, each one
    value or a list (any of them)."""

    name: str
    source_matchers: dict[str, str | list[str]] = field(default_factory=dict)
    target_matchers: dict[str, str | list[str]] = field(default_factory=dict)
    equal: list[str] = field(default_factory=list)


INHIBIT_MATCHER_LABELS = ("kind", "severity")
INHIBIT_EQUAL_LABELS = ("kind", "severity", "base")


@dataclass
class HttpConfig:
    listen: Optional[str] = None


ALERT_LABEL_DEFAULTS = {"tenant_id": "tenant_id", "kind": "kind", "severity": "severity", "base_id": "base_id",
                        "alertname": "alertname"}   # the kind when the kind label is absent


@dataclass
class ApiConfig:
    """The HTTP API (docs/API.md): POST /v1/events, /v1/snapshots, alerts, on its own listener."""

    listen: Optional[str] = None          # e.g. 127.0.0.1:9465; None turns the API off
    max_body_bytes: int = 1024 * 1024     # a larger request body is refused with 413
    page_max: int = 500                   # the largest `limit` a listing accepts
    # Failed authentication per client address: a token bucket of this many failures, refilled
    # one every auth_failure_interval; past it, 429 with Retry-After.
    auth_failure_burst: int = 10
    auth_failure_interval: Duration = Duration(6)
    # POST /api/v2/alerts (Alertmanager's API): which label names the tenant, kind, severity, base.
    alert_labels: dict[str, str] = field(default_factory=lambda: dict(ALERT_LABEL_DEFAULTS))
    # The web console (/ui/, docs/CONSOLE.md): a session ends this long after its sign-in.
    console_session_ttl: Duration = Duration(12 * 3600)
    # ... and earlier, once this long passes without a request from it (OWASP's advice for
    # consoles that act; checked within a minute).
    console_idle_timeout: Duration = Duration(30 * 60)
    # The tenant of a posted alert without the tenant label (a plain Prometheus rule); None: required.
    alert_default_tenant: Optional[str] = None
    # A token is looked up in the database at most this often per server; a revoke elsewhere
    # (notifyctl) is honoured within this time, one in the same process at once.
    token_cache: Duration = Duration(5)


@dataclass
class PartitionsConfig:
    months_ahead: int = 3
    keep_months: int = 6
    archive_dir: Optional[str] = None


@dataclass
class MessageLinkConfig:
    """A call to action in a kind's messages; `url` may hold {tenant_id}, {base_id}, {alert_id},
    {kind} (filled in with str.format_map on those values only: no template is compiled)."""

    url: str
    label: Optional[str] = None    # None: the kind's own wording (Upgrade your plan, Top up your wallet, ...)


@dataclass
class NamesSourceConfig:
    database: str      # a section name (admin_log, portal_log, data_activity, notify) or a libpq URL
    query: str


@dataclass
class MessagesConfig:
    """How messages read (issue 14): defaults for destinations that set no time zone or locale,
    display names in place of UUIDs, links, and the public base URL of the API for alert links and
    one-click unsubscribe."""

    timezone: str = "UTC"          # IANA name; a destination's --timezone wins
    locale: str = "en"             # a destination's --locale wins; a missing translation falls back to en
    # Where the API (api.listen) is reachable from outside, e.g. https://notify.example.com. Unset:
    # no link to the alert and no List-Unsubscribe header.
    public_url: Optional[str] = None
    unsubscribe_ttl: Duration = Duration(365 * 86400)   # how long an unsubscribe link keeps working
    action_link_ttl: Duration = Duration(7 * 86400)     # how long an ack/resolve link in a message works
    names: dict[str, str] = field(default_factory=dict)   # tenant or base UUID -> display name
    # A query returning (uuid, name) rows for tenants and bases, e.g. from the platform database;
    # it wins over `names` for an id listed in both, and is reloaded every names_refresh.
    names_sql: Optional[NamesSourceConfig] = None
    names_refresh: Duration = Duration(300)
    links: dict[str, MessageLinkConfig] = field(default_factory=dict)   # alert kind -> action link


# --------------------------------------------------------------- collect and detect (issue 3)


@dataclass
class SqlSourceConfig:
    """A query returning (tenant_id, base_id, metric, value) rows, run against `database`: a
    section name (admin_log, portal_log, data_activity, notify) or a libpq URL."""

    name: str
    database: str
    query: str


@dataclass
class HttpSourceConfig:
    """An HTTP GET returning a JSON array of {tenant_id, base_id, metric, value} objects (or an
    object whose `snapshots` key holds that array)."""

    name: str
    url: str
    timeout: Duration = Duration(10)


@dataclass
class CollectConfig:
    # The built-in collectors over data_activity: api_calls, records_count, http_429_count.
    data_activity: bool = True
    sql: list[SqlSourceConfig] = field(default_factory=list)
    http: list[HttpSourceConfig] = field(default_factory=list)


@dataclass
class ThresholdLevelConfig:
    percent: float
    severity: str


@dataclass
class TenantPlansSourceConfig:
    """A query returning (tenant_id, plan) rows, for more tenants than config.yaml should hold."""

    database: str
    query: str


@dataclass
class DetectConfig:
    # Each level of a plan limit is its own alert (CONTRACT.md: 80 % warn, 100 % critical).
    thresholds: list[ThresholdLevelConfig] = field(default_factory=lambda: [
        ThresholdLevelConfig(80, "warn"), ThresholdLevelConfig(100, "critical")])
    # An alert resolves only once the value is this many percent (of the limit, or of the wallet
    # floor, or of the 429 threshold) back on the safe side, so a value at the line cannot flap.
    hysteresis_percent: float = 5.0
    # RATE_LIMIT: this many HTTP 429 answers per tenant and base within the window.
    rate_limit_threshold: int = 100
    rate_limit_window: Duration = Duration(300)
    # WALLET_LOW also when the burn rate over the last wallet_burn_window says the balance runs out
    # within this many days (its own alert, wallet:runway:...). Unset: off.
    wallet_runway_days: Optional[float] = None
    wallet_burn_window: Duration = Duration(7 * 86400)
    tenant_plans_sql: Optional[TenantPlansSourceConfig] = None
    # A pass runs as this many transactions at once, each over its share of the tenants (a tenant's
    # alerts always change in one transaction); one per core is the useful maximum.
    parallelism: int = 2


@dataclass
class RetentionConfig:
    """What the cleanup job deletes; 0 keeps rows forever."""

    resolved_alerts: Duration = Duration(90 * 86400)   # resolved alerts (and their notifications)
    job_runs: Duration = Duration(30 * 86400)          # notify.job_runs history
    batch_size: int = 1000                             # rows per DELETE transaction


@dataclass
class DaemonConfig:
    """notifyd itself: shutdown, database fault handling, health."""

    shutdown_grace: Duration = Duration(10)       # in-flight work may finish this long after SIGTERM
    health_interval: Duration = Duration(5)       # how often the databases are probed
    reconnect_backoff_max: Duration = Duration(30)  # longest wait between probes while a DB is down


@dataclass
class LogWriterConfig:
    """The asynchronous batched writer of the log tables (engine.logwriter)."""

    batch_rows: int = 5000          # a table's buffer is flushed (one COPY) when it holds this many
    flush_interval: Duration = Duration(1)   # ... or when its oldest row is this old
    buffer_rows: int = 50000        # per table; a full buffer makes write() wait (backpressure)
    # What a full api_access_logs buffer does: "block" waits like every other table, "drop"
    # discards the row and counts it (the seed calls access logs sampleable; the others are not).
    api_access_logs_when_full: str = "block"


@dataclass
class SamplingConfig:
    """Keep 1 in N successful (2xx) api_access_logs rows; every other status is always kept."""

    default_rate: int = 1           # 1 keeps everything
    # Route (exact, or a glob such as /v1/records/*) -> N. The first exact match wins, then the
    # first matching glob in file order, then default_rate.
    routes: dict[str, int] = field(default_factory=dict)


@dataclass
class RedactionConfig:
    """Masks secrets and personal data before a log row is written (engine.logwriter.redaction)."""

    # A jsonb key whose name (lowercased, without - and _) contains one of these has its value masked.
    keys: list[str] = field(default_factory=lambda: [
        "password", "passwd", "pwd", "secret", "token", "apikey", "authorization", "cookie",
        "credential", "privatekey", "signature", "card", "cvv", "cvc", "iban",
    ])
    # Keys that match a rule above but carry no secret (identifiers used for correlation).
    keep_keys: list[str] = field(default_factory=lambda: [
        "token_id", "token_type", "tokens_used",
    ])
    # Built-in value patterns: email, bearer, jwt, url_credentials, secret_params, provider_keys.
    patterns: list[str] = field(default_factory=lambda: [
        "email", "bearer", "jwt", "url_credentials", "secret_params", "provider_keys",
    ])
    # Extra regular expressions; each match is masked.
    extra_patterns: list[str] = field(default_factory=list)
    mask: str = "[REDACTED]"


@dataclass
class IngestConfig:
    """The HTTP ingestion endpoint for services not written in Python (POST /v1/logs/<table>)."""

    listen: Optional[str] = None    # e.g. 127.0.0.1:9466; leave out to turn it off
    token: Optional[str] = None     # bearer token callers send; e.g. ${NOTIFY_INGEST_TOKEN}
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass
class LogsConfig:
    writer: LogWriterConfig = field(default_factory=LogWriterConfig)
    sampling: dict[str, SamplingConfig] = field(default_factory=dict)   # table -> sampling
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)


@dataclass
class Config:
    databases: Optional[DatabasesConfig] = None
    plans: dict[str, PlanConfig] = field(default_factory=lambda: {"default": PlanConfig()})
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    partitions: PartitionsConfig = field(default_factory=PartitionsConfig)
    routes: list[RouteConfig] = field(default_factory=list)
    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    # None: the default rule (a quota's critical level mutes its warn level); []: no inhibition.
    inhibit_rules: Optional[list[InhibitRuleConfig]] = None
    # A file of NAME=value lines (or a YAML mapping) that ${NAME} may refer to; keeps secrets out
    # of config.yaml. The environment wins over the file.
    secrets_file: Optional[str] = None
    # Where the config came from (not a YAML key): relative paths are read against the cwd.
    source: str = field(default="<defaults>", metadata={"internal": True})

    def plan_for(self, tenant_id: str) -> tuple[str, PlanConfig]:
        name = self.tenants[tenant_id].plan if tenant_id in self.tenants else "default"
        return name, self.plans.get(name, PlanConfig())


# --------------------------------------------------------------------------- loading


def default_config_path() -> Path:
    return Path(os.environ.get("NOTIFY_CONFIG") or "config.yaml")


def load_config(path: str | os.PathLike | None = None, *, environ: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file. A missing default file means all defaults."""
    explicit = path is not None or "NOTIFY_CONFIG" in os.environ
    config_path = Path(path) if path is not None else default_config_path()
    if not config_path.exists():
        if explicit:
            raise ConfigError(f"{config_path}: config file not found")
        return Config()
    # `${NAME}` may stand anywhere, also where YAML would read it as syntax (`{token: ${X}}`):
    # each reference is parked as a plain placeholder for parsing and put back in the parsed
    # strings, where parse_config substitutes it. A value never becomes YAML, so it cannot
    # change the file's structure.
    references: dict[str, str] = {}

    def park(match: re.Match) -> str:
        placeholder = f"__notify_env_ref_{len(references)}__"
        references[placeholder] = match.group(0)
        return placeholder

    try:
        raw = _restore_references(yaml.safe_load(_ENV_REF.sub(park, config_path.read_text())) or {}, references)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{config_path}{where}: not valid YAML: {problem}") from None
    return parse_config(raw, source=str(config_path), environ=environ)


def parse_config(raw: Any, *, source: str = "<config>", environ: dict[str, str] | None = None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    env = dict(os.environ if environ is None else environ)
    secrets_file = raw.get("secrets_file")
    if isinstance(secrets_file, str) and secrets_file:
        env = {**_read_secrets_file(secrets_file, source), **env}
    interpolated = _interpolate(raw, env, source, path="")
    config = _build(Config, interpolated, source, path="")
    config.source = source
    _check_references(config, source)
    return config


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"__notify_env_ref_\d+__")


def _restore_references(node: Any, references: dict[str, str]) -> Any:
    if not references:
        return node
    if isinstance(node, dict):
        return {_restore_references(k, references): _restore_references(v, references) for k, v in node.items()}
    if isinstance(node, list):
        return [_restore_references(v, references) for v in node]
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: references.get(m.group(0), m.group(0)), node)
    return node


def _interpolate(node: Any, env: dict[str, str], source: str, path: str) -> Any:
    if isinstance(node, dict):
        # Keys too (CONTRACT.md: "anywhere in the file"): a tenant id or plan name may come from
        # the environment like any value.
        result: dict = {}
        for k, v in node.items():
            key = _interpolate(k, env, source, _join(path, str(k))) if isinstance(k, str) else k
            if key in result:
                raise ConfigError(f"{source}: {_join(path, str(k))}: is {key!r} once substituted, "
                                  f"which {path or 'the top level'} already has")
            result[key] = _interpolate(v, env, source, _join(path, str(key)))
        return result
    if isinstance(node, list):
        return [_interpolate(v, env, source, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def substitute(match: re.Match) -> str:
            name, fallback = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if fallback is not None:
                return fallback
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")

        return _ENV_REF.sub(substitute, node)
    return node


def _read_secrets_file(path: str, source: str) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: secrets_file: cannot read {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        if not sep:
            name, sep, value = stripped.partition(":")
        if not sep or not name.strip():
            # The line itself may be a secret: say where, never what.
            raise ConfigError(f"{source}: secrets_file {path}:{number}: expected NAME=value")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build(cls: type, raw: Any, source: str, path: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {path or 'top level'}: expected a mapping, got {_shown(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{source}: {_join(path, str(unknown[0]))}: unknown key (known here: {known})")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _convert(hints[name], raw[name], source, _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {_join(path, name)}: required key is missing")
    return cls(**values)


def _convert(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if isinstance(value, list):  # `str | list[str]`: a list takes the list form
            args = [a for a in args if typing.get_origin(a) is list] or args
        return _convert(args[0], value, source, path)
    if origin is dict:
        _, value_type = typing.get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {path}: expected a mapping, got {_shown(value)}")
        return {str(k): _convert(value_type, v, source, _join(path, str(k))) for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {path}: expected a list, got {_shown(value)}")
        return [_convert(item_type, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, path)
    try:
        return _scalar(tp, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {path}: {exc}") from None


def _scalar(tp: Any, value: Any) -> Any:
    if tp is Duration:
        return Duration.parse(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ValueError(f"expected true or false, got {_shown(value)}")
    if tp is int:
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value).strip()):
            raise ValueError(f"expected an integer, got {_shown(value)}")
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {_shown(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {_shown(value)}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {_shown(value)}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected a string, got {_shown(value)}")
        return str(value)
    return value


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."


def _check_secret_keys(config: Config, source: str) -> None:
    """A malformed key is a config error, so a SIGHUP with one is refused (the running config
    kept) instead of leaving the dispatcher unable to start."""
    from engine.errors import BadInput
    from engine.secretbox import SecretBox  # here: secretbox is imported by modules this one feeds

    try:
        SecretBox(config.channels.webhook.secret_key)
    except BadInput as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _check_references(config: Config, source: str) -> None:
    if "default" not in config.plans:
        raise ConfigError(f"{source}: plans.default: required (it applies to every tenant not listed)")
    for name, plan in config.plans.items():
        for metric in QUOTA_METRICS + ("wallet_floor_cents",):
            limit = getattr(plan, metric)
            if limit is not None and limit < 0:
                raise ConfigError(f"{source}: plans.{name}.{metric}: a limit cannot be negative, got {limit}")
    for tenant_id, tenant in config.tenants.items():
        try:
            uuid.UUID(tenant_id)
        except ValueError:
            raise ConfigError(f"{source}: tenants.{tenant_id}: a tenant id must be a UUID") from None
        if tenant.plan not in config.plans:
            raise ConfigError(f"{source}: tenants.{tenant_id}.plan: unknown plan {tenant.plan!r}")
    if config.channels.webhook.client not in ("http1", "aiohttp"):
        raise ConfigError(f"{source}: channels.webhook.client: expected http1 or aiohttp")
    if config.channels.webhook.timeout is not None and config.channels.webhook.timeout <= 0:
        raise ConfigError(f"{source}: channels.webhook.timeout: must be more than 0")
    _check_secret_keys(config, source)
    if config.channels.email.security not in ("none", "starttls", "tls"):
        raise ConfigError(f"{source}: channels.email.security: expected none, starttls or tls")
    for key in ("months_ahead", "keep_months"):
        if getattr(config.partitions, key) < 0:
            raise ConfigError(f"{source}: partitions.{key}: cannot be negative, got {getattr(config.partitions, key)}")
    if config.delivery.max_attempts < 1:
        raise ConfigError(f"{source}: delivery.max_attempts: must be at least 1")
    _check_delivery(config, source)
    _check_escalation(config, source)
    _check_noise(config, source)
    _check_inhibit_rules(config, source)
    if config.retention.batch_size < 1:
        raise ConfigError(f"{source}: retention.batch_size: must be at least 1")
    if config.daemon.health_interval <= 0:
        raise ConfigError(f"{source}: daemon.health_interval: must be more than 0")
    if config.http.listen is not None:
        host, sep, port = config.http.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{source}: http.listen: expected HOST:PORT, got {config.http.listen!r}")
    _check_api(config.api, source)
    _check_logs(config.logs, source)
    _check_collect_detect(config, source)
    _check_messages(config, source)


def _check_messages(config: Config, source: str) -> None:
    from engine.messages import check_currency, check_link_url, check_locale, check_timezone  # here: messages imports this module
    from engine.errors import BadInput

    messages = config.messages
    try:
        check_timezone(messages.timezone, where="messages.timezone")
        check_locale(messages.locale, where="messages.locale")
        for name, plan in config.plans.items():
            check_currency(plan.currency, where=f"plans.{name}.currency")
    except BadInput as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if messages.public_url is not None and not re.match(r"^https?://[^/\s]+", messages.public_url):
        raise ConfigError(f"{source}: messages.public_url: expected an http(s):// URL, got {messages.public_url!r}")
    for key in messages.names:
        try:
            uuid.UUID(key)
        except ValueError:
            raise ConfigError(f"{source}: messages.names.{key}: expected a tenant or base UUID") from None
    for kind, link in messages.links.items():
        if not link.url.startswith(("https://", "http://")):
            raise ConfigError(f"{source}: messages.links.{kind}.url: expected an http(s):// URL")
        try:
            check_link_url(link.url, where=f"messages.links.{kind}.url")
        except BadInput as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _check_api(api: ApiConfig, source: str) -> None:
    if api.listen is not None:
        host, sep, port = api.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"{source}: api.listen: expected HOST:PORT, got {api.listen!r}")
    for key in ("max_body_bytes", "page_max", "auth_failure_burst"):
        if getattr(api, key) < 1:
            raise ConfigError(f"{source}: api.{key}: must be at least 1")
    if api.auth_failure_interval <= 0:
        raise ConfigError(f"{source}: api.auth_failure_interval: must be longer than 0s")
    if api.console_session_ttl <= 0:
        raise ConfigError(f"{source}: api.console_session_ttl: must be longer than 0s")
    if api.console_idle_timeout < 120:
        raise ConfigError(f"{source}: api.console_idle_timeout: must be at least 2m (activity is recorded once a "
                          f"minute), got {api.console_idle_timeout:g}s")
    for key, label in api.alert_labels.items():
        if key not in ALERT_LABEL_DEFAULTS:
            raise ConfigError(f"{source}: api.alert_labels.{key}: unknown (known: {', '.join(ALERT_LABEL_DEFAULTS)})")
        if not label:
            raise ConfigError(f"{source}: api.alert_labels.{key}: a label name cannot be empty")
    # A partial mapping keeps the defaults for the keys it leaves out.
    api.alert_labels = {**ALERT_LABEL_DEFAULTS, **api.alert_labels}
    if api.alert_default_tenant is not None:
        try:
            api.alert_default_tenant = str(uuid.UUID(str(api.alert_default_tenant)))
        except ValueError:
            raise ConfigError(f"{source}: api.alert_default_tenant: a tenant id must be a UUID, "
                              f"got {api.alert_default_tenant!r}") from None
    if api.token_cache < 0:
        raise ConfigError(f"{source}: api.token_cache: cannot be negative")


def _check_logs(logs: "LogsConfig", source: str) -> None:
    writer = logs.writer
    if writer.batch_rows < 1 or writer.buffer_rows < writer.batch_rows:
        raise ConfigError(f"{source}: logs.writer: batch_rows must be at least 1 and buffer_rows at least batch_rows")
    if writer.api_access_logs_when_full not in ("block", "drop"):
        raise ConfigError(f"{source}: logs.writer.api_access_logs_when_full: expected block or drop")
    for table, sampling in logs.sampling.items():
        if table != "data_activity.api_access_logs":
            raise ConfigError(f"{source}: logs.sampling.{table}: only data_activity.api_access_logs can be sampled")
        for where, rate in [("default_rate", sampling.default_rate), *((f"routes.{r}", n) for r, n in sampling.routes.items())]:
            if rate < 1:
                raise ConfigError(f"{source}: logs.sampling.{table}.{where}: a rate is 1 in N with N >= 1, got {rate}")
    known_patterns = ("email", "bearer", "jwt", "url_credentials", "secret_params", "provider_keys")
    for i, name in enumerate(logs.redaction.patterns):
        if name not in known_patterns:
            raise ConfigError(f"{source}: logs.redaction.patterns[{i}]: unknown pattern {name!r} "
                              f"(known: {', '.join(known_patterns)}; use extra_patterns for your own)")
    for i, pattern in enumerate(logs.redaction.extra_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{source}: logs.redaction.extra_patterns[{i}]: not a valid regular expression: {exc}") from None
    ingest = logs.ingest
    if ingest.max_body_bytes < 1:
        raise ConfigError(f"{source}: logs.ingest.max_body_bytes: must be at least 1")
    if ingest.listen is not None:
        host, sep, port = ingest.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"{source}: logs.ingest.listen: expected HOST:PORT, got {ingest.listen!r}")
        if not ingest.token:
            raise ConfigError(f"{source}: logs.ingest.token: required when logs.ingest.listen is set")



def _check_collect_detect(config: Config, source: str) -> None:
    names = set()
    for kind, sources in (("sql", config.collect.sql), ("http", config.collect.http)):
        for i, src in enumerate(sources):
            if src.name in names:
                raise ConfigError(f"{source}: collect.{kind}[{i}].name: {src.name!r} is used twice")
            names.add(src.name)
    for i, src in enumerate(config.collect.http):
        if not src.url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: collect.http[{i}].url: expected an http:// or https:// URL")
    levels = config.detect.thresholds
    if not levels:
        raise ConfigError(f"{source}: detect.thresholds: at least one level is required")
    seen = set()
    for i, level in enumerate(levels):
        if not 0 < level.percent <= 1000:
            raise ConfigError(f"{source}: detect.thresholds[{i}].percent: expected 0 < percent <= 1000")
        if level.severity not in ("info", "warn", "critical"):
            raise ConfigError(f"{source}: detect.thresholds[{i}].severity: expected info, warn or critical")
        if level.percent in seen:
            raise ConfigError(f"{source}: detect.thresholds[{i}].percent: {level.percent:g} is listed twice")
        seen.add(level.percent)
    if not 0 <= config.detect.hysteresis_percent < 100:
        raise ConfigError(f"{source}: detect.hysteresis_percent: expected 0 <= value < 100")
    if config.detect.rate_limit_threshold < 1:
        raise ConfigError(f"{source}: detect.rate_limit_threshold: must be at least 1")
    if not 1 <= config.detect.parallelism <= 16:
        raise ConfigError(f"{source}: detect.parallelism: expected 1 <= value <= 16")
    if config.detect.wallet_runway_days is not None and config.detect.wallet_runway_days <= 0:
        raise ConfigError(f"{source}: detect.wallet_runway_days: must be more than 0 (leave it out to turn it off)")
    if config.detect.wallet_burn_window <= 0:
        raise ConfigError(f"{source}: detect.wallet_burn_window: must be longer than 0s")
    if config.detect.rate_limit_window <= 0:
        raise ConfigError(f"{source}: detect.rate_limit_window: must be longer than 0s")


CHANNELS = ("email", "slack", "webhook")
SEVERITIES = ("info", "warn", "critical")


def _check_delivery(config: Config, source: str) -> None:
    delivery = config.delivery
    if delivery.batch_size < 1:
        raise ConfigError(f"{source}: delivery.batch_size: must be at least 1")
    if delivery.workers < 0:
        raise ConfigError(f"{source}: delivery.workers: must be 0 (this copy does not deliver) or more")
    if delivery.pause_after_failures < 0:
        raise ConfigError(f"{source}: delivery.pause_after_failures: cannot be negative (0 turns pausing off)")
    if delivery.pause_base <= 0 or delivery.pause_max < delivery.pause_base:
        raise ConfigError(f"{source}: delivery.pause_base, pause_max: pause_base must be longer than 0s and "
                          "pause_max at least pause_base")
    for channel, limit in delivery.concurrency.items():
        if channel not in CHANNELS:
            raise ConfigError(f"{source}: delivery.concurrency.{channel}: unknown channel (known: {', '.join(CHANNELS)})")
        if limit < 1:
            raise ConfigError(f"{source}: delivery.concurrency.{channel}: must be at least 1")
    names = set()
    for index, route in enumerate(config.routes):
        where = f"{source}: routes[{index}]"
        if route.name in names:
            raise ConfigError(f"{where}.name: route {route.name!r} is defined twice")
        names.add(route.name)
        if route.channel not in CHANNELS:
            raise ConfigError(f"{where}.channel: expected one of {', '.join(CHANNELS)}, got {route.channel!r}")
        if route.min_severity not in SEVERITIES:
            raise ConfigError(f"{where}.min_severity: expected one of {', '.join(SEVERITIES)}")
        from engine.destinations import check_signing_secret, validate_target  # here: destinations imports this module
        from engine.errors import BadInput

        try:
            route.target = validate_target(route.channel, route.target, where=f"{where}.target")
            if route.secret:
                check_signing_secret(route.secret, where=f"{where}.secret")
        except BadInput as exc:
            raise ConfigError(str(exc)) from None


def _check_noise(config: Config, source: str) -> None:
    grouping = config.grouping
    checks = [("grouping.group_by", grouping.group_by), ("grouping.destinations.group_by", grouping.destinations.group_by)]
    checks += [(f"routes[{i}].group_by", r.group_by) for i, r in enumerate(config.routes) if r.group_by is not None]
    for where, labels in checks:
        for label in labels:
            if label not in GROUP_LABELS:
                raise ConfigError(f"{source}: {where}: unknown label {label!r} (known: {', '.join(GROUP_LABELS)})")
    if grouping.list_max < 1:
        raise ConfigError(f"{source}: grouping.list_max: must be at least 1")
    for name in ("destination", "tenant"):
        limit = getattr(config.rate_limits, name)
        if limit.messages < 0:
            raise ConfigError(f"{source}: rate_limits.{name}.messages: cannot be negative (0: no limit)")
        if limit.window <= 0:
            raise ConfigError(f"{source}: rate_limits.{name}.window: must be longer than 0s")


def _check_escalation(config: Config, source: str) -> None:
    from detectors import ALL_KINDS  # here: detectors import engine modules that import this one

    escalation = config.escalation
    for severity, timeout in escalation.ack_timeout.items():
        if severity not in SEVERITIES:
            raise ConfigError(f"{source}: escalation.ack_timeout.{severity}: expected a severity ({', '.join(SEVERITIES)})")
        if timeout <= 0:
            raise ConfigError(f"{source}: escalation.ack_timeout.{severity}: must be longer than 0s (leave it out: no end)")
    routes = {r.name for r in config.routes}
    for i, policy in enumerate(escalation.policies):
        where = f"{source}: escalation.policies[{i}]"
        for key, known in (("severity", SEVERITIES), ("kind", ALL_KINDS)):
            value = getattr(policy.match, key)
            values = [value] if isinstance(value, str) else value or []
            setattr(policy.match, key, values or None)
            for item in values:
                if item not in known:
                    raise ConfigError(f"{where}.match.{key}: unknown {key} {item!r} (known: {', '.join(known)})")
        for j, interval in enumerate(policy.reminders or []):
            if interval <= 0:
                raise ConfigError(f"{where}.reminders[{j}]: must be longer than 0s (an empty list turns reminders off)")
        previous = -1.0
        for j, step in enumerate(policy.steps):
            target = step.notify
            if (target.route is None) == (target.tag is None):
                raise ConfigError(f"{where}.steps[{j}].notify: expected exactly one of route or tag")
            if target.route is not None and target.route not in routes:
                raise ConfigError(f"{where}.steps[{j}].notify.route: no route {target.route!r} in routes")
            if step.after <= previous:
                raise ConfigError(f"{where}.steps[{j}].after: steps must come later one after another")
            previous = step.after


def default_inhibit_rules() -> list[InhibitRuleConfig]:
    """An open critical alert of a quota (its 100 % level) mutes the warn alert (80 %) of the same
    metric and base: the 80 % message is pointless once the 100 % one is out."""
    from detectors import QUOTA_KINDS  # here: detectors import engine modules that import this one

    return [InhibitRuleConfig(name="quota-critical-mutes-warn",
                              source_matchers={"kind": list(QUOTA_KINDS), "severity": ["critical"]},
                              target_matchers={"kind": list(QUOTA_KINDS), "severity": ["warn"]},
                              equal=["kind", "base"])]


def _check_inhibit_rules(config: Config, source: str) -> None:
    from detectors import ALL_KINDS  # here: detectors import engine modules that import this one

    if config.inhibit_rules is None:
        config.inhibit_rules = default_inhibit_rules()
        return
    names = set()
    for i, rule in enumerate(config.inhibit_rules):
        where = f"{source}: inhibit_rules[{i}]"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", rule.name):
            raise ConfigError(f"{where}.name: letters, digits, '.', '_' and '-' (at most 64), got {rule.name!r}")
        if rule.name in names:
            raise ConfigError(f"{where}.name: {rule.name!r} is used by an earlier rule")
        names.add(rule.name)
        for side in ("source_matchers", "target_matchers"):
            matchers = getattr(rule, side)
            for label, value in list(matchers.items()):
                if label not in INHIBIT_MATCHER_LABELS:
                    raise ConfigError(f"{where}.{side}.{label}: unknown label (known: {', '.join(INHIBIT_MATCHER_LABELS)})")
                values = [value] if isinstance(value, str) else list(value or [])
                known = ALL_KINDS if label == "kind" else SEVERITIES
                for item in values:
                    if item not in known:
                        raise ConfigError(f"{where}.{side}.{label}: unknown {label} {item!r} (known: {', '.join(known)})")
                if not values:
                    raise ConfigError(f"{where}.{side}.{label}: give at least one value (leave the label out: any)")
                matchers[label] = values
        for label in rule.equal:
            if label not in INHIBIT_EQUAL_LABELS:
                raise ConfigError(f"{where}.equal: unknown label {label!r} (known: {', '.join(INHIBIT_EQUAL_LABELS)}; "
                                  "the tenant is always equal)")
