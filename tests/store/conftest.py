"""Fixtures of the storage contract suite: one ``store`` fixture parametrized over every
backend (a SQLite file in tmp_path; a real Elasticsearch with an index prefix of the test's
own), and a maker of signed entries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from marketplace.store.base import Entry, Store
from marketplace.store.sqlite import SQLiteStore
from tests import factories

BACKENDS = ("sqlite", "elasticsearch")
JANE = "jane.tester@example.org"
EVE = "eve.curve@example.org"


def open_backend(request, backend: str, tmp_path) -> Store:
    """A fresh store of ``backend``; the Elasticsearch one on this test's index prefix."""
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "marketplace.db")
    cluster = request.getfixturevalue("elasticsearch")
    return cluster.store(request.getfixturevalue("es_prefix"))


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def store(request, backend, tmp_path) -> Iterator[Store]:
    """An empty store of each backend in turn."""
    opened = open_backend(request, backend, tmp_path)
    yield opened
    opened.close()


# The backends whose shared state (Store.state) the state contract suite runs on: a backend
# joins with one line, a maker of an empty store from (request, tmp_path). The key names the
# test's parameter: "elasticsearch" gets the test its marker (tests/conftest.py).
STATE_BACKENDS: dict[str, Callable[..., Store]] = {
    "sqlite": lambda request, tmp_path: open_backend(request, "sqlite", tmp_path),
    "elasticsearch": lambda request, tmp_path: open_backend(request, "elasticsearch", tmp_path),
}


@pytest.fixture(params=sorted(STATE_BACKENDS))
def state_store(request, tmp_path) -> Iterator[Store]:
    """An empty store, for its state, of each backend that has one in turn."""
    opened = STATE_BACKENDS[request.param](request, tmp_path)
    yield opened
    opened.close()


def moment(days_ago: float = 0, base: datetime | None = None) -> datetime:
    """A whole-second UTC time ``days_ago`` before ``base`` (now by default)."""
    base = base or datetime.now(UTC)
    return (base - timedelta(days=days_ago)).replace(microsecond=0)


@pytest.fixture
def make_entry(rsa_signer) -> Callable[..., Entry]:
    """``make_entry(image=None, signer=None, when=None, **fields)``: a signed entry (not yet
    stored); ``image`` fixes the identifier, ``signer`` and ``when`` the endorser and date."""

    def make(image: bytes | None = None, signer=None, when: datetime | None = None,
             **fields) -> Entry:
        document = factories.signed(signer or rsa_signer, factories.appliance(image, **fields),
                                    now=when or moment())
        return Entry.from_document(document)

    return make


@pytest.fixture
def add(store, make_entry) -> Callable[..., Entry]:
    """Make a signed entry and store it (it must be new)."""

    def add_one(image: bytes | None = None, signer=None, when: datetime | None = None,
                **fields) -> Entry:
        entry = make_entry(image, signer, when, **fields)
        assert store.add(entry) is True
        return entry

    return add_one
