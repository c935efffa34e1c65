"""The embedded default: first start initialises, later starts reuse, the last user stops it."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from engine.app import App
from engine.config import Config, EmbeddedConfig
from engine.embedded import EmbeddedCluster
from engine.errors import NotifyError
from tests.conftest import make_reachable_tempdir


@pytest.fixture
def data_dir():
    root = make_reachable_tempdir("ne-emb-")
    yield root / "pg"
    cluster = EmbeddedCluster.from_config(EmbeddedConfig(data_dir=str(root / "pg")))
    if cluster.is_running():
        cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


def embedded_app(data_dir) -> App:
    return App(Config(embedded=EmbeddedConfig(data_dir=str(data_dir))))


def count_probe_rows(app):
    with psycopg.connect(app.databases.urls["notify"]) as conn:
        return conn.execute("SELECT count(*) FROM notify.alerts").fetchone()[0]


def test_first_start_initialises_creates_four_databases_and_applies_the_schema_then_reuse(data_dir):
    with embedded_app(data_dir) as app:
        assert (data_dir / "PG_VERSION").exists()
        if os.geteuid() == 0:
            assert data_dir.stat().st_uid != 0  # initdb refuses root: the cluster is not root's
        for section, url in app.databases.urls.items():
            assert f"/{section}?" in url and "host=" in url  # a Unix socket, no TCP port
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (section,)).fetchone()[0]
        with psycopg.connect(app.databases.urls["notify"]) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""
            # A small buffer cache: the kernel's page cache holds the data files anyway.
            assert conn.execute("SHOW shared_buffers").fetchone()[0] == "32MB"
            conn.execute("INSERT INTO notify.alerts (tenant_id, kind, dedupe_key) "
                         "VALUES (gen_random_uuid(), 'WALLET_LOW', 'wallet:low')")
        cluster = app.embedded
    assert not cluster.is_running()  # we started it and were its last user

    pg_version_mtime = (data_dir / "PG_VERSION").stat().st_mtime
    with embedded_app(data_dir) as app:  # restart: no new initdb, the row is still there
        assert count_probe_rows(app) == 1
    assert (data_dir / "PG_VERSION").stat().st_mtime == pg_version_mtime


def test_a_second_user_keeps_the_cluster_running_until_it_is_done(data_dir):
    first = embedded_app(data_dir).open()
    second = embedded_app(data_dir).open()
    first.close()
    assert count_probe_rows(second) == 0  # still up for the second user
    cluster = second.embedded
    second.close()
    assert not cluster.is_running()


def test_a_cluster_started_by_hand_is_left_running(data_dir):
    with embedded_app(data_dir) as app:
        cluster = app.embedded
        # Simulate "already running before we came": no marker saying we started it.
        (data_dir.parent / "pg.started-by-notify-engine").unlink()
    assert cluster.is_running()


def test_a_wrong_bin_dir_says_what_to_do(tmp_path):
    with pytest.raises(NotifyError, match=r"embedded.bin_dir: .* does not hold initdb"):
        EmbeddedCluster.from_config(EmbeddedConfig(data_dir=str(tmp_path / "pg"), bin_dir=str(tmp_path)))


def test_a_data_dir_too_long_for_a_socket_is_refused_up_front(tmp_path):
    with pytest.raises(NotifyError, match="too long for a Unix socket path"):
        EmbeddedCluster.from_config(EmbeddedConfig(data_dir=str(tmp_path / ("x" * 120))))


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_notifyd_starts_on_the_embedded_default_and_stops_cleanly_on_sigterm(data_dir):
    workdir = data_dir.parent  # no config.yaml there: every default, data_dir .notify/pg
    notifyd = Path(sys.executable).parent / "notifyd"
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_CONFIG"}
    proc = subprocess.Popen([str(notifyd)], cwd=workdir, env=env, stderr=subprocess.PIPE, text=True)
    cluster = EmbeddedCluster.from_config(EmbeddedConfig(data_dir=str(workdir / ".notify" / "pg")))
    try:
        assert wait_for(cluster.is_running), "the embedded cluster never came up"
        assert wait_for(lambda: _has_partitions(cluster)), "the maintenance job never ran"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not cluster.is_running()
    shutil.rmtree(workdir / ".notify", ignore_errors=True)


def _has_partitions(cluster):
    try:
        with psycopg.connect(cluster.url("notify"), connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM partitions.list(ARRAY['notify']) "
                                "WHERE NOT is_default").fetchone()[0] > 0
    except psycopg.Error:
        return False


def test_destinations_add_secret_works_with_the_shipped_config_on_the_embedded_default(data_dir, capsys, monkeypatch):
    from cryptography.fernet import Fernet

    from engine.cli import main

    monkeypatch.delenv("NOTIFY_SECRET_KEY", raising=False)
    shipped = (Path(__file__).parent.parent / "config.yaml").read_text()
    assert "data_dir: .notify/pg " in shipped
    config = data_dir.parent / "config.yaml"
    config.write_text(shipped.replace("data_dir: .notify/pg ", f"data_dir: {data_dir} "))
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    code = main(["destinations", "add", "--tenant", "6f1c2d3e-0000-4000-8000-000000000001", "--channel", "webhook",
                 "--target", "https://hooks.example.com/x", "--secret", secret, "--config", str(config)])
    assert code == 0, capsys.readouterr().err
    key_file = data_dir.parent / "pg.secret-key"   # beside the data directory, not in it
    assert (key_file.stat().st_mode & 0o777) == 0o600
    with embedded_app(data_dir) as app, psycopg.connect(app.databases.urls["notify"]) as conn:
        stored = conn.execute("SELECT secret_ciphertext FROM notify.destinations").fetchone()[0]
    assert Fernet(key_file.read_text().strip()).decrypt(stored.encode()).decode() == secret
