"""The daemon's config keys: shipped defaults, validation that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config, parse_config
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_config_listens_on_loopback_and_documents_the_daemon_keys():
    config = load_config(ROOT / "config.yaml", environ={})
    assert config.http.listen == "127.0.0.1:9464"
    assert config.jobs.cleanup == 3600
    assert config.retention.resolved_alerts == 90 * 86400
    assert config.daemon.shutdown_grace == 10


@pytest.mark.parametrize("raw, where", [
    ({"daemon": {"shutdown_grace": "a while"}}, "daemon.shutdown_grace"),
    ({"retention": {"batch_size": 0}}, "retention.batch_size"),
    ({"retention": {"resolved_alerts": "-1d"}}, "retention.resolved_alerts"),
    ({"daemon": {"health_interval": 0}}, "daemon.health_interval"),
])
def test_a_bad_daemon_key_is_named(raw, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        parse_config(raw, environ={})
