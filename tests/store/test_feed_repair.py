"""The change feed (in the moderation database) and the store (SQLite or Elasticsearch)
are two databases: what a crash between their writes leaves is repaired, on each backend --
by :meth:`Moderation.repair` at start, and by uploading the same document again. A removal
is never undone by an upload racing it. The crash itself is shown on a real server in
tests/live/test_feed_repair.py; here its leftovers are made by calling the steps it cut."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.moderation.workflow import ABANDONED_AFTER, Moderation
from marketplace.store.state import Event, Removed, SQLiteModerationStore
from tests.store.conftest import moment


@pytest.fixture
def moderation(store, tmp_path):
    db = SQLiteModerationStore(tmp_path / "moderation.db")
    yield Moderation(store, db)
    db.close()


def feed(moderation) -> list[tuple[str, tuple, str]]:
    return [(c.action, c.key, c.as_dict()["at"]) for c in moderation.db.changes()]


def test_an_entry_stored_before_a_crash_is_put_in_the_feed_on_repair(moderation, make_entry):
    entry = make_entry()
    noted = moment(0.01)
    moderation.db.publishing(entry.key, noted)
    moderation.store.add(entry)  # ...and the process died before the feed row
    assert feed(moderation) == []

    assert moderation.repair(moment())["published"] == 1
    assert feed(moderation) == [("publish", entry.key, noted.strftime("%Y-%m-%dT%H:%M:%SZ"))]
    assert moderation.repair(moment()) == {"published": 0, "abandoned": 0, "removed": 0}
    assert moderation.db.unfinished() == []


def test_a_replay_puts_a_stored_entry_in_the_feed_once(moderation, make_entry):
    entry = make_entry()
    moderation.store.add(entry)  # stored, never announced (a crash, or a migration)
    assert moderation.publish(entry, moment()) is False
    assert moderation.publish(entry, moment()) is False
    assert [action for action, *_ in feed(moderation)] == ["publish"]


def test_a_publication_that_stored_nothing_is_dropped_once_abandoned(moderation, make_entry):
    young, old = make_entry(), make_entry()
    now = moment()
    moderation.db.publishing(young.key, now - timedelta(minutes=1))
    moderation.db.publishing(old.key, now - ABANDONED_AFTER - timedelta(minutes=1))
    assert moderation.repair(now)["abandoned"] == 1
    assert [key for key, _ in moderation.db.unfinished()] == [young.key]  # may still run
    assert feed(moderation) == []


def test_an_upload_racing_a_removal_is_taken_out_again(moderation, make_entry):
    entry = make_entry()
    moderation.db.publishing(entry.key, moment())
    moderation.store.add(entry)
    moderation.db.removed(entry.key, moment(), Event("ops", "removed", "malware"),
                          published=False)  # the operator came in between
    with pytest.raises(Removed):
        moderation.record_published(entry, moment())
    assert moderation.store.get(entry.identifier, entry.email, entry.created) is None
    assert feed(moderation) == []


def test_an_entry_stored_under_its_tombstone_is_removed_on_repair(moderation, make_entry):
    entry = make_entry()
    moderation.publish(entry, moment())
    moderation.db.removed(entry.key, moment(), Event("ops", "removed", "malware"))
    # the process died before the store removed it (or a reindex brought it back)
    assert moderation.repair(moment())["removed"] == 1
    assert moderation.store.get(entry.identifier, entry.email, entry.created) is None
    assert [action for action, *_ in feed(moderation)] == ["publish", "remove"]
    with pytest.raises(Removed) as refused:
        moderation.publish(entry, moment())
    assert refused.value.rule == "removed-by-operator"
    assert moderation.store.get(entry.identifier, entry.email, entry.created) is None
