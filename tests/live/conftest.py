"""Live tests: the real server (``stratus-marketplace serve``, gunicorn) on a free 127.0.0.1
port with a temporary data dir, driven over HTTP by the real commands run as subprocesses.

Every wait is bounded and fails with the server's log; no test measures speed. The
commands run with a temporary HOME and no inherited ``STRATUSLAB_*`` variables, so the
user's own config never leaks in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests import factories, pki
from tests.elastic import CACHE, INSTALL_HINT, LocalCluster, find_home
from tests.processes import free_port, group_alive, stop_group

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 120.0


def script(name: str) -> str:
    """The installed console script ``name`` (beside this Python, else on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"the command {name} is not installed: run `pip install -e .`")
    return found


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without marketplace or StratusLab settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MARKETPLACE_", "STRATUSLAB_", "PROMETHEUS_MULTIPROC"))}
    env.update(extra)
    return env


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until it returns a true value; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class LiveServer:
    """One ``stratus-marketplace`` server process group and its data dir."""

    data_dir: Path
    home: Path
    port: int = field(default_factory=free_port)
    command: str = "serve"
    workers: int = 2
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server-{self.starts}.log"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except OSError:
            return "(no log)"

    def start(self) -> LiveServer:
        """Start the server and wait until /healthz answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [script("stratus-marketplace"), self.command, "--host", "127.0.0.1",
                 "--port", str(self.port), "--data-dir", str(self.data_dir),
                 "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=clean_environ(HOME=str(self.home)), start_new_session=True)
        wait_for(self._ready, START_TIMEOUT, f"the server on port {self.port} to answer "
                 "/healthz")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited with status {self.process.returncode}:\n"
                        f"{self.log_text()}")
        try:
            return requests.get(self.url + "healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL if it does not go in time."""
        if self.process is None or self.process.poll() is not None:
            return
        stop_group(self.process, STOP_TIMEOUT)
        self._wait_group_gone(self.process.pid)

    def kill(self) -> None:
        """SIGKILL the master and every worker at once (the whole process group)."""
        pgid = self.process.pid
        os.killpg(pgid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        self._wait_group_gone(pgid)

    def _wait_group_gone(self, pgid: int) -> None:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        wait_for(lambda: not group_alive(pgid), STOP_TIMEOUT,
                 f"the server's processes (group {pgid}) to exit")

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET a path (or a full URL, as a Location header may give) of this server."""
        url = path if path.startswith("http") else self.url + path.lstrip("/")
        return requests.get(url, timeout=30, **kwargs)

    def search(self, **params) -> dict:
        response = self.get("api/v1/appliances", params=params,
                            headers={"Accept": "application/json"})
        assert response.status_code == 200, response.text
        return response.json()


@dataclass
class Commands:
    """Runs the installed commands as a user of one marketplace would."""

    endpoint: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return clean_environ(HOME=str(self.home), STRATUSLAB_MARKETPLACE_ENDPOINT=self.endpoint,
                             **extra)

    def run(self, name: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([script(name), *map(str, args)], capture_output=True, text=True,
                              env=self.env(**extra_env), timeout=COMMAND_TIMEOUT,
                              stdin=subprocess.DEVNULL)


@pytest.fixture
def unique() -> str:
    """A short word no other test uses, to tell this test's entries apart."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """A server shared by the tests of one module (each test uses its own entries)."""
    root = tmp_path_factory.mktemp("live")
    server = LiveServer(root / "data", root)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path) -> Iterator[LiveServer]:
    """A server of this test alone, not started: the test starts, stops and kills it."""
    server = LiveServer(tmp_path / "data", tmp_path)
    yield server
    server.stop()


@pytest.fixture
def commands(live_server, tmp_path) -> Commands:
    home = tmp_path / "home"
    home.mkdir()
    return Commands(live_server.url, home)


@pytest.fixture
def pem_files(tmp_path):
    """Write a signer's key and certificate as PEM files: ``pem_files(signer, stem)``."""
    def write(signer: pki.Issued, stem: str = "signer") -> list[str]:
        key, certificate = pki.write_pem(signer, tmp_path, stem)
        return ["--pem-key", str(key), "--pem-cert", str(certificate)]
    return write


@pytest.fixture
def write_signed(tmp_path):
    """Sign an entry and write it to a file: ``write_signed(signer, name, **fields)``."""
    def write(signer: pki.Issued, name: str, now=None, **fields) -> Path:
        path = tmp_path / name
        path.write_bytes(factories.signed(signer, factories.appliance(**fields), now=now))
        return path
    return write


@pytest.fixture(scope="session")
def three_nodes() -> Iterator[LocalCluster]:
    """A real three-node Elasticsearch cluster of its own (tests/elastic.py), for the
    scale-out tests alone: started when one of them first asks, stopped at the end."""
    home = find_home()
    if home is None:
        pytest.fail(f"Elasticsearch is not installed under {CACHE}: {INSTALL_HINT}")
    cluster = LocalCluster(home)
    try:
        cluster.start_all()
    except RuntimeError as exc:
        cluster.cleanup()
        pytest.fail(str(exc))
    yield cluster
    cluster.cleanup()
