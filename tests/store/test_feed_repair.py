"""What a crash or an older marketplace can leave behind, and how the state finishes it: an
entry stored without its feed row or log leaf (stored by :meth:`Store.add` alone, as a
marketplace with a separate moderation file could leave it) is announced by a replay of
its document, once; an entry stored under its tombstone (a reindex, or such an older
file) is taken out by :meth:`State.repair`. The crash of a real server in the middle of an
upload is in tests/live/test_feed_repair.py; here a fault inside a SQLite publication or
removal shows that the transaction is whole."""

from __future__ import annotations

import pytest

from marketplace.moderation.workflow import Moderation
from marketplace.store import sqlite_log
from marketplace.store.base import Query
from marketplace.store.sqlite import SQLiteStore
from marketplace.store.state import Event, Removed
from tests.store.conftest import moment


@pytest.fixture
def moderation(state_store):
    return Moderation(state_store)


def feed(moderation) -> list[tuple[str, tuple]]:
    return [(c.action, c.key) for c in moderation.state.changes()]


def test_a_replay_announces_a_stored_entry_once(moderation, make_entry):
    entry = make_entry()
    moderation.store.add(entry)  # stored, never announced
    assert moderation.state.leaf_indexes([entry.key]) == {}

    first = moderation.publish(entry, moment())
    assert (first.new, first.serial, first.leaf) == (False, 1, 0)
    again = moderation.publish(entry, moment())
    assert (again.new, again.serial, again.leaf) == (False, None, 0)
    assert feed(moderation) == [("publish", entry.key)]
    assert moderation.state.log_size() == 1


def test_an_entry_stored_under_its_tombstone_is_taken_out_on_repair(moderation, make_entry):
    entry = make_entry()
    moderation.publish(entry, moment())
    assert moderation.remove(entry.key, "ops", "malware", moment()) == ["published"]
    moderation.store.add(entry)  # back under its tombstone, as a reindex could bring it
    assert moderation.repair(moment()) == {"removed": 1}
    assert moderation.store.get(entry.identifier, entry.email, entry.created) is None
    assert moderation.repair(moment()) == {"removed": 0}
    assert feed(moderation) == [("publish", entry.key), ("remove", entry.key)]


def test_an_upload_after_a_removal_is_refused_and_writes_nothing(moderation, make_entry):
    entry = make_entry()
    moderation.state.withdraw(entry.key, moment(), Event("ops", "removed", "malware"))
    size = moderation.state.log_size()
    with pytest.raises(Removed) as refused:
        moderation.publish(entry, moment())
    assert refused.value.rule == "removed-by-operator"
    assert moderation.store.get(entry.identifier, entry.email, entry.created) is None
    assert feed(moderation) == []
    assert moderation.state.log_size() == size


class LogDown(Exception):
    """A fault a real disk cannot be made to produce on demand, at the last write of a
    publication: the document, its index rows and its feed row are written by then."""


@pytest.fixture
def sqlite_state_store(tmp_path):
    store = SQLiteStore(tmp_path / "marketplace.db")
    yield store
    store.close()


def fail_log_appends(monkeypatch):
    def append(db, event):
        raise LogDown(f"the log could not take the {event.event} leaf")
    monkeypatch.setattr(sqlite_log, "append", append)


def test_a_fault_inside_a_publication_leaves_none_of_it(sqlite_state_store, make_entry,
                                                        monkeypatch):
    store, entry = sqlite_state_store, make_entry()
    fail_log_appends(monkeypatch)
    with pytest.raises(LogDown):
        store.state.publish(entry, moment(), Event("jane", "published"))
    monkeypatch.undo()
    assert store.get(entry.identifier, entry.email, entry.created) is None
    assert store.count() == 0
    assert store.search(Query(status="all")).total == 0  # no index row left either
    assert store.state.changes() == [] and store.state.audit() == []
    assert store.state.log_size() == 0
    assert store.state.publish(entry, moment()).new is True  # and it can be sent again


def test_a_fault_inside_a_removal_leaves_the_entry_served(sqlite_state_store, make_entry,
                                                         monkeypatch):
    store, entry = sqlite_state_store, make_entry()
    store.state.publish(entry, moment())
    fail_log_appends(monkeypatch)
    with pytest.raises(LogDown):
        store.state.withdraw(entry.key, moment(), Event("ops", "removed", "malware"))
    monkeypatch.undo()
    assert store.get(entry.identifier, entry.email, entry.created) is not None
    assert store.state.tombstone(entry.key) is None
    assert [c.action for c in store.state.changes()] == ["publish"]
    assert store.state.log_size() == 1
