"""Independent verification of the log a REAL marketplace serves (issue 15, "Must show"):
``stratus-marketplace serve`` (gunicorn) with a key made by ``stratus-marketplace
init-log``; documents uploaded, one removed, an endorser blocked; then Go's
``golang.org/x/mod/sumdb`` packages check the served checkpoint with the served key,
recompute the tree from the served tiles, check every leaf's inclusion and the consistency
of the tree with a checkpoint served before the last changes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from tests.live.conftest import COMMAND_TIMEOUT, LiveServer, clean_environ, script
from tests.moderation.conftest import ADMIN_TOKEN, admin_files, bearer, signed  # noqa: F401
from tests.moderation.test_replica import configure, publish


@pytest.fixture
def marketplace(tmp_path, admin_files):  # noqa: F811
    folder = configure(tmp_path / "data", admin_token_file=admin_files["admin_token_file"],
                       public_url="https://marketplace.test", trusted_hosts="127.0.0.1")
    made = subprocess.run([script("stratus-marketplace"), "init-log", "--json", "--data-dir",
                           str(folder)], capture_output=True, text=True,
                          env=clean_environ(HOME=str(tmp_path)), timeout=COMMAND_TIMEOUT)
    assert made.returncode == 0, made.stderr
    server = LiveServer(folder, tmp_path)
    server.start()
    yield server
    server.stop()


def admin(server: LiveServer, action: str, **body) -> None:
    answer = requests.post(server.url + f"admin/api/{action}", headers=bearer(ADMIN_TOKEN),
                           json=body, timeout=30)
    assert answer.status_code in (200, 201), answer.text


def verify(binary: Path, url: str, vkey: str, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "-url", url, "-vkey", vkey, *more],
                          capture_output=True, text=True, timeout=120)


def test_go_verifies_the_log_a_marketplace_serves(go_verifier, marketplace, rsa_signer,
                                                  ec_signer, tmp_path):
    locations = [publish(marketplace, signed(signer, days_ago=days))
                 for signer, days in ((rsa_signer, 3), (ec_signer, 2), (rsa_signer, 1))]
    identifier, email, created = locations[1].split("/")[2:]
    admin(marketplace, "remove", identifier=identifier, email=email, created=created,
          reason="malware")
    previous = tmp_path / "previous-checkpoint"
    previous.write_bytes(marketplace.get("log/checkpoint").content)
    admin(marketplace, "block", endorser="mallory@example.org", reason="spam")
    publish(marketplace, signed(ec_signer))
    vkey = marketplace.get("log/key").text.strip()

    for base in ("log", "marketplace/log"):
        result = verify(go_verifier, marketplace.url + base, vkey, "-previous", str(previous))
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert (summary["size"], summary["entries_checked"], summary["previous_size"]) == \
            (6, 6, 4)
        assert summary["origin"] == summary["signer"] == "marketplace.test/log"
        assert summary["events"] == {"published": 4, "removed": 1, "blocked": 1}


def test_go_refuses_a_previous_checkpoint_the_log_does_not_extend(go_verifier, marketplace,
                                                                  rsa_signer, tmp_path):
    """A checkpoint of another tree signed by the same key (what a split view leaves in a
    client's hands) is caught by Go's consistency check."""
    from marketplace import config
    from marketplace.log import keys
    from marketplace.metadata import note
    publish(marketplace, signed(rsa_signer, days_ago=1))
    publish(marketplace, signed(rsa_signer))
    signer = keys.log_signer(config.load(str(marketplace.data_dir)))
    fork = tmp_path / "fork"
    fork.write_text(note.sign(note.Checkpoint("marketplace.test/log", 1, b"\x05" * 32,
                                              ("time 1",)).text(), signer))
    result = verify(go_verifier, marketplace.url + "log",
                    marketplace.get("log/key").text.strip(), "-previous", str(fork))
    assert result.returncode == 1
    assert "does not extend the previous one" in result.stderr
