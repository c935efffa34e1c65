"""The first README command as root in root's home: a clone under a 0700 directory starts the
embedded cluster without editing config.yaml and without changing the permissions of the user's
directories (the cluster goes where embedded.run_as can reach it, and one log line says where)."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine.config import EmbeddedConfig
from engine.embedded import EmbeddedCluster, find_bin_dir, relocated_data_dir
from engine.errors import NotifyError

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the case is root's: initdb refuses root")


@pytest.fixture
def private_home():
    """A directory like /root: mode 0700, owned by root."""
    home = Path(tempfile.mkdtemp(prefix="ne-home-"))
    assert home.stat().st_mode & 0o777 == 0o700
    yield home
    shutil.rmtree(home, ignore_errors=True)


def notifyctl(*argv, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_CONFIG", "NOTIFY_LOG_LEVEL")}
    return subprocess.run([str(Path(sys.executable).parent / "notifyctl"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_clone_in_a_0700_home_starts_the_embedded_default_as_root(private_home):
    clone = private_home / "notify-engine"
    clone.mkdir()
    shutil.copy(REPO / "config.yaml", clone / "config.yaml")  # as cloned: no databases, data_dir .notify/pg
    clone_mode = clone.stat().st_mode
    relocated = relocated_data_dir(clone / ".notify" / "pg", pwd.getpwnam("postgres"))
    try:
        first = notifyctl("db", "init", cwd=clone)
        assert first.returncode == 0, first.stderr
        # One line, naming where the cluster went and why.
        [line] = first.stderr.strip().splitlines()
        assert str(relocated) in line and f"{private_home} is not searchable by others" in line
        assert (relocated / "PG_VERSION").stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert relocated.parent.stat().st_mode & 0o777 == 0o700
        assert (relocated.parent / "origin").read_text().strip() == str(clone / ".notify" / "pg")
        initialised_at = (relocated / "PG_VERSION").stat().st_mtime

        # The next command finds the same cluster (no second initdb) and answers.
        second = notifyctl("alerts", "--json", cwd=clone)
        assert (second.returncode, second.stdout.strip()) == (0, "[]"), second.stderr
        assert (relocated / "PG_VERSION").stat().st_mtime == initialised_at

        # Nobody's permissions changed.
        assert private_home.stat().st_mode & 0o777 == 0o700
        assert clone.stat().st_mode == clone_mode
    finally:
        cluster = EmbeddedCluster(relocated, find_bin_dir(), "postgres")
        if cluster.is_running():
            cluster.stop()
        shutil.rmtree(relocated.parent, ignore_errors=True)


def test_an_explicit_absolute_data_dir_out_of_reach_keeps_the_clear_error(private_home):
    # A path the operator chose (a mounted volume, say) is never silently replaced by another.
    cluster = EmbeddedCluster.from_config(EmbeddedConfig(data_dir=str(private_home / "pg")))
    assert cluster.data_dir == private_home / "pg"
    with pytest.raises(NotifyError, match=r"not reachable by user postgres \(.* is not searchable by others\)"):
        cluster.acquire()
    assert private_home.stat().st_mode & 0o777 == 0o700
