"""A hypervisor node or an image creator installs the package without any extra: no Flask,
no gunicorn, no prometheus-client, and yet every base command works.

A fresh virtualenv gets a plain (not editable) install of the project's files, as a node
would get it from a package index, so a file the commands need at run time but the package
does not carry (the XML Schema, say) fails here. Its commands run with no PYTHONPATH, so
they use the installed copy and not this checkout. The whole creator and node path runs with
them: build -> sign -> validate an image, upload it to a real marketplace (this session's
server, which has the server extra), pull it into an image cache from its file:// location,
and list the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import pki
from tests.live.conftest import COMMAND_TIMEOUT, LiveServer, clean_environ

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# What a build of the distribution reads; copied so that no build debris lands in the checkout.
DISTRIBUTION = ("pyproject.toml", "README.md", "marketplace", "client")
INSTALL_TIMEOUT = 600


def run(command: list[str], timeout: float = COMMAND_TIMEOUT, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, **kwargs)


def copy_distribution(source: Path) -> None:
    for name in DISTRIBUTION:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """The bin folder of a fresh virtualenv holding the project installed without extras."""
    root = tmp_path_factory.mktemp("base-install")
    (root / "source").mkdir()
    copy_distribution(root / "source")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True,
                   timeout=COMMAND_TIMEOUT)
    bin_dir = root / "venv" / "bin"
    done = run([str(bin_dir / "python"), "-m", "pip", "install", "-q",
                "--disable-pip-version-check", str(root / "source")],
               timeout=INSTALL_TIMEOUT, env=base_environ(root), cwd=root)
    assert done.returncode == 0, done.stderr
    return bin_dir


def base_environ(home: Path) -> dict[str, str]:
    """No PYTHONPATH (the installed copy, not this checkout), no marketplace or StratusLab
    settings, a HOME of the test's own."""
    env = clean_environ(HOME=str(home))
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture
def command(venv, tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """Run one of the virtualenv's commands in ``tmp_path``: ``command(name, *args)``."""
    home = tmp_path / "home"
    home.mkdir()

    def call(name: str, *args: str) -> subprocess.CompletedProcess:
        return run([str(venv / name), *map(str, args)], env=base_environ(home), cwd=tmp_path)

    return call


@pytest.fixture(scope="module")
def marketplace(tmp_path_factory) -> Iterator[LiveServer]:
    """A real marketplace (this environment's, with the server extra) to upload to."""
    root = tmp_path_factory.mktemp("base-install-marketplace")
    server = LiveServer(root / "data", root).start()
    yield server
    server.stop()


def test_the_server_is_not_installed(command):
    done = command("python", "-c", "import flask")
    assert done.returncode != 0 and "No module named 'flask'" in done.stderr
    for module in ("gunicorn", "prometheus_client", "elasticsearch"):
        assert command("python", "-c", f"import {module}").returncode != 0, module


def test_the_server_command_says_in_one_line_which_extra_is_missing(command):
    done = command("stratus-marketplace", "serve")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "stratus-marketplace[server]" in done.stderr


def test_the_node_command_answers(command):
    done = command("stratus-image-cache", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: stratus-image-cache" in done.stdout


def test_build_sign_validate_upload_pull_and_list(command, marketplace, rsa_signer, tmp_path):
    image = tmp_path / "tiny.img"
    image.write_bytes(os.urandom(200_000))
    key, certificate = pki.write_pem(rsa_signer, tmp_path)
    document = tmp_path / "tiny.xml"

    steps = [
        ("stratus-build-metadata", image, "--os", "ttylinux", "--os-version", "16.1",
         "--os-arch", "x86_64", "--title", "Tiny", "--location", image.as_uri(), "-o",
         document),
        ("stratus-sign-metadata", document, "--pem-key", key, "--pem-cert", certificate),
        ("stratus-validate-metadata", document),
        ("stratus-upload-metadata", document, "--marketplace-endpoint", marketplace.url),
    ]
    for step in steps:
        done = command(*step)
        assert done.returncode == 0, f"{step[0]}: {done.stderr}"

    identifier = json.loads(command("stratus-validate-metadata", document, "--json").stdout)[0][
        "identifier"]
    config = tmp_path / "fetcher.cfg"
    config.write_text(f"[fetcher]\ncache_dir = {tmp_path / 'cache'}\n"
                      f"local_lock_dir = {tmp_path / 'locks'}\n"
                      f"marketplace_endpoint = {marketplace.url}\n"
                      "location_schemes = http https file\n")  # the image is a local file
    pulled = command("stratus-image-cache", "pull", identifier, "--config", config, "--json")
    assert pulled.returncode == 0, pulled.stderr
    listed = command("stratus-image-cache", "list", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr
    images = json.loads(listed.stdout)["images"]
    assert [entry["identifier"] for entry in images] == [identifier]
    assert (tmp_path / "cache").is_dir()
