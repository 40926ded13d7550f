"""The store's change serial, on both backends: it grows with every add, removal and
reindex, and a read changes nothing. Exports key their caches and ``hv:version`` on it."""

from __future__ import annotations

import pytest

from marketplace.store.base import Entry
from marketplace.store.sqlite import SQLiteStore
from tests import factories


@pytest.fixture(params=("sqlite", "elasticsearch"))
def store(request, tmp_path):
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "marketplace.db")
    else:
        cluster = request.getfixturevalue("elasticsearch")
        opened = cluster.store(request.getfixturevalue("es_prefix"))
    yield opened
    opened.close()


def test_the_serial_grows_with_every_change_and_only_then(store, rsa_signer):
    entry = Entry.from_document(factories.signed(rsa_signer, factories.appliance()))
    seen = [store.change_serial()]
    assert store.change_serial() == seen[-1]
    store.add(entry)
    seen.append(store.change_serial())
    store.add(entry)  # a replay changes nothing
    assert store.change_serial() == seen[-1]
    store.remove(*entry.key[:2], entry.created)
    seen.append(store.change_serial())
    store.add(entry)
    seen.append(store.change_serial())
    store.reindex()
    seen.append(store.change_serial())
    assert seen == sorted(set(seen)), seen
