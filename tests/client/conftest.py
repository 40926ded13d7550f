"""Fixtures of the command tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOME of the test alone, and no STRATUSLAB_* setting from the caller's environment;
    the test runs in it (build writes its default file name in the current folder). The
    modules that run commands use it for every test (``pytestmark``)."""
    directory = tmp_path / "home"
    directory.mkdir()
    monkeypatch.setenv("HOME", str(directory))
    monkeypatch.chdir(directory)
    for key in list(os.environ):
        if key.startswith("STRATUSLAB_"):
            monkeypatch.delenv(key)
    return directory
