"""Shared fixtures: test PKI (CAs, signers, CRLs) made at run time, and the interop documents.

Key generation is slow, so the CAs and the common signers are made once per session; a
test that needs its own certificate asks ``make_signer(...)``, which reuses a session key
of the requested kind unless ``fresh_key=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests import pki

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop" / "stratuslab"


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
    assert INTEROP.is_dir(), f"interop documents not found at {INTEROP}"
    return INTEROP


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


# A real Elasticsearch, started once per session by the first test that asks for it.
from tests.elastic import elasticsearch, es_prefix  # noqa: E402, F401
