"""Shared fixtures and markers.

Fixtures: the test PKI (CAs, signers, CRLs) made at run time, the original StratusLab test
documents (``tests/data/stratuslab``), and a real Elasticsearch (``tests/elastic.py``, loaded
as a plugin). Key generation is slow, so the CAs and the common signers are made once per
session; a test that needs its own certificate asks ``make_signer(...)``, which reuses a
session key of the requested kind unless ``fresh_key=True``.

Markers (declared in pyproject.toml) are set here from what a test uses, not written on each
test, so that new test files get them too: ``elasticsearch`` for every test on the
Elasticsearch store, ``browser`` for tests/ui, ``live`` for tests/live. A test whose outside
part (Java and Elasticsearch, Chromium) is missing is deselected with one line saying why,
rather than failed: ``make install`` provides them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests import pki
from tests.data import STRATUSLAB

pytest_plugins = ["tests.elastic"]

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"ui": "browser", "live": "live"}
UNAVAILABLE = pytest.StashKey[list[str]]()


def markers_of(item: pytest.Item) -> set[str]:
    """The markers a test needs: by its folder, and ``elasticsearch`` for the Elasticsearch
    suites (a module named after it), for tests that use the cluster fixture, and for those
    on the Elasticsearch backend of a parametrized store fixture (which asks for the cluster
    only at run time)."""
    found = set()
    folder = item.path.relative_to(TESTS).parts[0]
    if folder in FOLDER_MARKERS:
        found.add(FOLDER_MARKERS[folder])
    callspec = getattr(item, "callspec", None)
    params = list(callspec.params.values()) if callspec else []
    if ("elastic" in item.path.stem or "elasticsearch" in item.fixturenames
            or "elasticsearch" in params):
        found.add("elasticsearch")
    return found


# Marker -> the module of its fixtures, whose ``missing()`` says why they cannot run here.
# Imported only when a collected test carries the marker (pytest imports them as plugins and
# conftests itself, rewriting their asserts).
FIXTURES_OF = {"elasticsearch": "tests.elastic", "browser": "tests.ui.conftest"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test, then deselect the marked tests whose outside part is missing."""
    for item in items:
        for marker in markers_of(item):
            item.add_marker(marker)
    config.stash[UNAVAILABLE] = []
    for marker, fixtures in FIXTURES_OF.items():
        marked = [item for item in items if item.get_closest_marker(marker)]
        reason = importlib.import_module(fixtures).missing() if marked else None
        if reason:
            config.hook.pytest_deselected(items=marked)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]
            config.stash[UNAVAILABLE].append(
                f"deselected {len(marked)} {marker} tests: {reason}")


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return config.stash.get(UNAVAILABLE, [])


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands run in-process export settings (MARKETPLACE_*, PROMETHEUS_MULTIPROC_DIR) for
    their workers; no test may leave them to the next one."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def interop() -> Path:
    """The directory of the original StratusLab test documents and keys."""
    return STRATUSLAB


@pytest.fixture(scope="session")
def ca() -> pki.Issued:
    """A self-signed root CA (RSA), valid from 30 days ago for ten years."""
    return pki.make_ca("Test Root CA")


@pytest.fixture(scope="session")
def intermediate_ca(ca) -> pki.Issued:
    """An intermediate CA (ECDSA) signed by ``ca``."""
    return pki.make_ca("Test Intermediate CA", key_kind=pki.EC, issuer=ca)


@pytest.fixture(scope="session")
def other_ca() -> pki.Issued:
    """A root CA that no trust store of the tests knows."""
    return pki.make_ca("Unknown Root CA", key_kind=pki.EC)


@pytest.fixture(scope="session")
def session_keys() -> dict[str, object]:
    """One key of each kind, reused by ``make_signer`` for speed."""
    return {kind: pki.make_key(kind) for kind in pki.KEY_KINDS}


@pytest.fixture(scope="session")
def rsa_signer(ca) -> pki.Issued:
    """RSA 2048 end-entity certificate of Jane Tester (jane.tester@example.org) from ``ca``."""
    return pki.make_certificate(ca, "Jane Tester", pki.RSA, email="jane.tester@example.org")


@pytest.fixture(scope="session")
def ec_signer(ca) -> pki.Issued:
    """ECDSA P-256 end-entity certificate of Eve Curve (eve.curve@example.org) from ``ca``."""
    return pki.make_certificate(ca, "Eve Curve", pki.EC, email="eve.curve@example.org")


@pytest.fixture(scope="session")
def signer_without_email(ca) -> pki.Issued:
    """RSA end-entity certificate of Noah Mail from ``ca``, with no SubjectAltName."""
    return pki.make_certificate(ca, "Noah Mail", pki.RSA)


@pytest.fixture
def make_signer(ca, session_keys) -> Callable[..., pki.Issued]:
    """Factory of end-entity certificates.

    ``make_signer(common_name="Test Signer", key_kind="rsa", email="signer@example.org",
    issuer=ca, not_before=..., not_after=..., serial=..., fresh_key=False)``; validity
    defaults to one day ago .. a year ahead; ``email=None`` gives no SubjectAltName.
    """

    def make(common_name: str = "Test Signer", key_kind: str = pki.RSA,
             email: str | None = "signer@example.org", issuer: pki.Issued | None = None,
             not_before: datetime | None = None, not_after: datetime | None = None,
             serial: int | None = None, fresh_key: bool = False) -> pki.Issued:
        default_before, default_after = pki.window()
        key = None if fresh_key else session_keys[key_kind]
        return pki.make_certificate(
            issuer or ca, common_name, key_kind, email=email,
            validity=(not_before or default_before, not_after or default_after),
            serial=serial, key=key)

    return make

