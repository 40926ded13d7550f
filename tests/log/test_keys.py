"""``stratus-marketplace init-log``: the log key (and a replica's witness key) made once,
mode 0600, never overwritten without --force; a server refuses to sign with a key file
others can read, or without knowing its own name (PUBLIC_URL)."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from marketplace import cli
from marketplace.log import keys
from marketplace.metadata import note
from marketplace.web.app import create_app
from tests.live.conftest import clean_environ, script
from tests.moderation.test_replica import configure
from tests.processes import free_port


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path))  # the command exports it
    return configure(tmp_path / "data", public_url="https://marketplace.example.org:8443/x")


def init_log(folder, capsys, *more: str) -> tuple[int, str, str]:
    status = cli.main(["init-log", "--data-dir", str(folder), *more])
    out, err = capsys.readouterr()
    return status, out, err


def test_init_log_makes_a_private_key_named_after_the_public_host(folder, capsys):
    status, out, _ = init_log(folder, capsys, "--json")
    assert status == 0
    made = json.loads(out)
    path = folder / "log-key"
    assert made["key_file"] == str(path) and made["name"] == "marketplace.example.org/log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signer = note.Signer.parse(path.read_text())
    assert signer.verifier.vkey() == made["vkey"] and signer.kind == note.ED25519


def test_init_log_never_overwrites_a_key_without_force(folder, capsys):
    assert init_log(folder, capsys)[0] == 0
    first = (folder / "log-key").read_text()
    status, _, err = init_log(folder, capsys)
    assert status == 1 and "exists" in err and "--force" in err
    assert (folder / "log-key").read_text() == first
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    assert init_log(folder, capsys, "--force")[0] == 0
    assert (folder / "log-key").read_text() != first
    assert stat.S_IMODE((folder / "log-key").stat().st_mode) == 0o600


def test_init_log_needs_the_public_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path))
    status, _, err = init_log(configure(tmp_path / "bare"), capsys)
    assert status == 1 and "MARKETPLACE_PUBLIC_URL" in err
    assert not (tmp_path / "bare" / "log-key").exists()


def test_the_key_file_setting_names_where_it_goes(folder, tmp_path, capsys):
    configure(folder, public_url="https://marketplace.example.org",
              log_key=str(tmp_path / "keys" / "marketplace-log"))
    assert init_log(folder, capsys)[0] == 0
    assert (tmp_path / "keys" / "marketplace-log").exists()
    assert not (folder / "log-key").exists()


def test_a_server_refuses_a_key_file_others_can_read(folder, capsys):
    assert init_log(folder, capsys)[0] == 0
    os.chmod(folder / "log-key", 0o644)
    with pytest.raises(keys.KeyFileError, match="readable by others"):
        create_app(data_dir=str(folder))
    served = subprocess.run(
        [script("stratus-marketplace"), "serve", "--port", str(free_port()), "--data-dir",
         str(folder)], capture_output=True, text=True, timeout=120,
        env=clean_environ(HOME=str(folder)), stdin=subprocess.DEVNULL)
    assert served.returncode == 1
    assert "readable by others" in served.stderr and "chmod 600" in served.stderr


def test_a_witness_key_is_a_cosigning_key_and_not_the_log_key(folder, tmp_path, capsys):
    configure(folder, public_url="https://replica.example.org",
              replica_witness_key=str(tmp_path / "witness"))
    status, out, _ = init_log(folder, capsys, "--witness", "--json")
    assert status == 0 and json.loads(out)["name"] == "replica.example.org/witness"
    assert note.Signer.parse((tmp_path / "witness").read_text()).kind == note.COSIGNATURE
    with pytest.raises(keys.KeyFileError, match="a cosigning key; a signing key"):
        keys.load(tmp_path / "witness", note.ED25519)
