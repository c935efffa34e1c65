"""notifyctl tokens add | list | revoke: shown once, listed without the secret, revoked by name."""

from __future__ import annotations

import hashlib
import json

import pytest

from engine.cli import main


@pytest.fixture
def cli(config_file, capsys):
    path = str(config_file())

    def run(*argv):
        code = main([*argv, "--config", path])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_add_prints_the_token_once_and_list_never_shows_it(cli, databases):
    code, out, _ = cli("tokens", "add", "--name", "billing", "--scope", "events", "--scope", "snapshots")
    assert code == 0
    token = out.strip()
    assert token.startswith("ne_") and len(token) >= 40
    code, out, _ = cli("tokens", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["name"], listed["scopes"], listed["active"]) == ("billing", ["events", "snapshots"], True)
    assert token not in out and hashlib.sha256(token.encode()).hexdigest() not in out
    code, out, _ = cli("tokens", "list")
    assert code == 0 and "billing" in out and token not in out


def test_revoke_by_name_and_names_are_not_reused(cli):
    assert cli("tokens", "add", "--name", "ci", "--scope", "read")[0] == 0
    assert cli("tokens", "revoke", "ci") == (0, "revoked ci\n", "")
    code, _, err = cli("tokens", "revoke", "ci")
    assert code == 2 and "already revoked" in err
    code, _, err = cli("tokens", "add", "--name", "ci", "--scope", "read")
    assert code == 2 and "exists already" in err
    listed = json.loads(cli("tokens", "list", "--json")[1])
    assert listed[0]["active"] is False and listed[0]["revoked_at"]


@pytest.mark.parametrize("argv, where", [
    (["tokens", "add", "--name", "x", "--scope", "root"], "--scope: unknown scope 'root'"),
    (["tokens", "add", "--name", "has space", "--scope", "read"], "--name:"),
    (["tokens", "revoke", "nobody"], "NAME: no token named 'nobody'"),
])
def test_bad_token_commands_exit_2_with_one_line(cli, argv, where):
    code, out, err = cli(*argv)
    assert code == 2 and out == "" and where in err and len(err.strip().splitlines()) == 1
