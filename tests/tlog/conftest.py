"""The Go verifier of the transparency log tests, built once from tests/tlog/verifier."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

VERIFIER = Path(__file__).with_name("verifier")


def go() -> str | None:
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)),
        None)


def missing() -> str | None:
    """Why the Go verifier cannot be built here, or None (the root conftest then deselects
    the ``golang`` tests with this reason)."""
    return None if go() else "Go is not installed (Debian: apt-get install golang-go)"


@pytest.fixture(scope="session")
def go_verifier(tmp_path_factory) -> Path:
    """The Go verifier, built once (the Go module proxy serves golang.org/x/mod)."""
    binary = tmp_path_factory.mktemp("go") / "verifier"
    environment = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    subprocess.run([go(), "build", "-o", str(binary), "."], cwd=VERIFIER, check=True,
                   env=environment, timeout=600)
    return binary
