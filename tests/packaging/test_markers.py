"""The markers that split the suite (tests/conftest.py): every test that needs an outside
part carries its marker, and without that part its tests are deselected saying why.

Each check runs pytest on this checkout in a subprocess, collecting only, so it costs a few
seconds and no server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.live.conftest import COMMAND_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ["tests/ui", "tests/live", "tests/store", "tests/server/test_upload.py"]


def pytest_run(*args: str, **environ: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MARKETPLACE_TEST_ELASTICSEARCH_URL"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=REPO, env={**env, **environ},
                          timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)


def collected(marker: str) -> list[str]:
    done = pytest_run("--collect-only", "-q", "-m", marker, *FOLDERS)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_each_folder_and_fixture_gets_its_marker():
    browser, live, elastic = collected("browser"), collected("live"), collected("elasticsearch")
    assert browser and all(test.startswith("tests/ui/") for test in browser)
    assert live and all(test.startswith("tests/live/") for test in live)
    assert any(test.startswith("tests/store/test_elastic.py::") for test in elastic)
    assert any(test.startswith("tests/store/test_two_servers.py::") for test in elastic)
    on_backend = [test for test in elastic if test.startswith("tests/server/")]
    assert on_backend and all("elasticsearch" in test for test in on_backend)
    assert not any("[sqlite" in test for test in elastic)


def test_without_elasticsearch_its_tests_are_deselected_saying_why_and_the_run_fails():
    done = pytest_run("-q", "tests/store/test_elastic.py",
                      MARKETPLACE_ES_CACHE="/nonexistent", MARKETPLACE_ES_HOME="")
    assert done.returncode == 5, done.stdout + done.stderr  # no test ran: not a success
    assert "elasticsearch tests: Elasticsearch is not installed under /nonexistent" \
        in done.stdout
    assert "failed" not in done.stdout and "error" not in done.stdout.lower()
