"""The behaviour every backend's shared state (:class:`~marketplace.store.state.State`, through
``Store.state``) must show, run on each backend of ``STATE_BACKENDS`` in conftest.py: a
publication stores the entry, announces it in the change feed and appends its log leaf,
once; a replay adds nothing; a conflict or a tombstone writes nothing; a removal leaves a
tombstone, a feed row, an audit row and a leaf; blocks, marks, held uploads and mail quotas
hold across calls; the log's hashes are those of its leaves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.metadata import logleaf, tlog
from marketplace.store.base import Conflict
from marketplace.store.state import (
    PENDING,
    REMOVED_ON_PRIMARY,
    Event,
    MailQuota,
    OverQuota,
    Removed,
    Upload,
)
from tests.store.conftest import moment

OPS = Event("ops", "removed", "malware")


@pytest.fixture
def state(state_store):
    return state_store.state


def leaves(state) -> list[logleaf.LogEvent]:
    return [logleaf.LogEvent.parse(leaf) for leaf in state.log_leaves(0, state.log_size())]


def feed(state) -> list[tuple[int, str, tuple]]:
    return [(c.serial, c.action, c.key) for c in state.changes()]


def stored(store, entry) -> bool:
    return store.get(entry.identifier, entry.email, entry.created) is not None


def held(entry, submitted=None, days: float = 2) -> Upload:
    submitted = submitted or moment()
    return Upload(*entry.key, entry.document, "CN=someone", "a title", PENDING, submitted,
                  submitted + timedelta(days=days))


# --- publications ---


def test_a_publication_stores_announces_and_logs_the_entry(state_store, state, make_entry):
    entry = make_entry()
    at = moment()
    done = state.publish(entry, at, Event("jane", "published"))
    assert (done.new, done.serial, done.leaf) == (True, 1, 0)
    assert stored(state_store, entry)
    assert feed(state) == [(1, "publish", entry.key)]
    assert state.last_serial() == 1
    assert [(r.action, r.actor) for r in state.audit()] == [("published", "jane")]
    leaf, = leaves(state)
    assert (leaf.event, leaf.key, leaf.time) == ("published", entry.key, at.strftime(
        "%Y-%m-%dT%H:%M:%SZ"))
    assert leaf.document_sha256 == logleaf.digest(entry.document)
    assert state.leaf_indexes([entry.key, make_entry().key]) == {entry.key: 0}


def test_a_replay_adds_nothing(state, make_entry):
    entry = make_entry()
    state.publish(entry, moment())
    again = state.publish(entry, moment())
    assert (again.new, again.serial, again.leaf) == (False, None, 0)
    assert len(feed(state)) == 1 and state.log_size() == 1


def test_a_deprecating_document_is_a_deprecated_leaf(state, make_entry):
    entry = make_entry(deprecated="superseded by a newer image")
    state.publish(entry, moment())
    assert [leaf.event for leaf in leaves(state)] == ["deprecated"]
    assert state.leaf_indexes([entry.key]) == {entry.key: 0}


def test_a_conflict_writes_nothing(state_store, state, make_entry):
    image = b"one image"
    newer = make_entry(image, when=moment(1))
    state.publish(newer, moment())
    older = make_entry(image, when=moment(2))
    with pytest.raises(Conflict):
        state.publish(older, moment())
    assert not stored(state_store, older)
    assert len(feed(state)) == 1 and state.log_size() == 1


def test_an_entry_with_a_tombstone_is_refused_and_nothing_written(state_store, state,
                                                                   make_entry):
    entry = make_entry()
    assert state.withdraw(entry.key, moment(), OPS) is False  # held, never published
    size = state.log_size()
    with pytest.raises(Removed) as refused:
        state.publish(entry, moment())
    assert refused.value.tombstone.key == entry.key
    assert not stored(state_store, entry)
    assert feed(state) == [] and state.log_size() == size


# --- removals ---


def test_a_withdrawal_takes_the_entry_out_with_feed_audit_and_leaf(state_store, state,
                                                                   make_entry):
    entry = make_entry()
    state.publish(entry, moment())
    assert state.withdraw(entry.key, moment(), OPS) is True
    assert not stored(state_store, entry)
    assert [action for _, action, _ in feed(state)] == ["publish", "remove"]
    assert state.audit(1)[0].action == "removed"
    removed = leaves(state)[-1]
    assert (removed.event, removed.key, removed.actor) == ("removed", entry.key, "ops")
    assert removed.reason_sha256 == logleaf.digest("malware")
    assert removed.document_sha256 == logleaf.digest(entry.document)
    tombstone = state.tombstone(entry.key)
    assert (tombstone.rule, tombstone.reason) == ("removed-by-operator", "malware")


def test_a_withdrawal_of_what_was_never_stored_leaves_a_tombstone_and_no_feed_row(
        state, make_entry):
    entry = make_entry()
    assert state.withdraw(entry.key, moment(), OPS, REMOVED_ON_PRIMARY) is False
    assert feed(state) == []
    assert [t.rule for t in state.tombstones()] == [REMOVED_ON_PRIMARY]
    assert [leaf.event for leaf in leaves(state)] == ["removed"]


def test_a_lifted_removal_lets_the_entry_back_with_a_leaf_of_its_own(state, make_entry):
    entry = make_entry()
    state.publish(entry, moment())
    state.withdraw(entry.key, moment(), OPS)
    assert state.lift(entry.key, Event("ops", "lifted", "a mistake"), moment()) is True
    assert state.lift(entry.key, Event("ops", "lifted", "again"), moment()) is False
    again = state.publish(entry, moment())
    assert (again.new, again.serial, again.leaf) == (True, 3, 3)
    assert [leaf.event for leaf in leaves(state)] == ["published", "removed", "lifted",
                                                     "published"]
    assert state.leaf_indexes([entry.key]) == {entry.key: 3}


def test_repair_has_nothing_to_do_on_an_untouched_state(state, make_entry):
    state.publish(make_entry(), moment())
    assert not any(state.repair(moment()).values())


# --- the change feed and the audit log ---


def test_the_feed_is_in_order_and_pages(state, make_entry):
    entries = [make_entry() for _ in range(3)]
    for entry in entries:
        state.publish(entry, moment())
    state.withdraw(entries[0].key, moment(), OPS)
    assert [serial for serial, *_ in feed(state)] == [1, 2, 3, 4]
    assert [c.serial for c in state.changes(after=1, limit=2)] == [2, 3]
    assert state.changes(after=4) == []
    assert state.last_serial() == 4


def test_the_audit_log_is_newest_first_and_pages(state, make_entry):
    for number in range(3):
        state.block(f"user{number}@example.org", "email",
                    Event("ops", "blocked", "spam", f"user{number}@example.org"), moment())
    records = state.audit()
    assert [r.endorser for r in records] == [f"user{n}@example.org" for n in (2, 1, 0)]
    assert [r.endorser for r in state.audit(1, before=records[0].serial)] == [
        "user1@example.org"]


# --- blocked endorsers, marks ---


def test_blocks_and_unblocks_are_kept_and_logged(state):
    event = Event("ops", "blocked", "spam", "eve@example.org")
    assert state.block("eve@example.org", "email", event, moment()) is True
    assert state.block("eve@example.org", "email", event, moment()) is False
    assert [(b.endorser, b.kind, b.reason) for b in state.blocked()] == [
        ("eve@example.org", "email", "spam")]
    assert state.unblock("eve@example.org", Event("ops", "unblocked", "ok",
                                                  "eve@example.org"), moment()) is True
    assert state.unblock("eve@example.org", event, moment()) is False
    assert state.blocked() == []
    assert [(leaf.event, leaf.endorser) for leaf in leaves(state)] == [
        ("blocked", "eve@example.org"), ("unblocked", "eve@example.org")]


def test_marks_are_remembered(state):
    assert state.mark("replica:x") is None
    state.set_mark("replica:x", "7")
    state.set_mark("replica:x", "9")
    assert state.mark("replica:x") == "9"


# --- held uploads and mail quotas ---


def test_a_held_upload_is_found_by_key_and_token_once(state, make_entry):
    entry = make_entry()
    upload = held(entry)
    assert state.hold(upload, "a" * 64, Event(entry.email, "held")) == (upload, True)
    other = held(entry, moment(0.1))
    assert state.hold(other, "b" * 64, Event(entry.email, "held")) == (upload, False)
    assert state.upload(entry.key) == upload
    assert state.by_token("a" * 64) == upload and state.by_token("b" * 64) is None
    assert state.flag(entry.key, Event("x", "abuse-reported"), moment()) is True
    assert state.by_token("a" * 64) is None
    assert [u.state for u in state.uploads("flagged")] == ["flagged"]


def test_a_confirmation_is_a_leaf_and_other_endings_are_not(state, make_entry):
    confirmed, aborted = make_entry(), make_entry()
    for entry, token in ((confirmed, "c" * 64), (aborted, "d" * 64)):
        state.hold(held(entry), token, Event(entry.email, "held"))
    assert state.resolve(confirmed.key, Event("jane", "confirmed"), moment()) is True
    assert state.resolve(aborted.key, Event("jane", "aborted"), moment()) is True
    assert state.resolve(aborted.key, Event("jane", "aborted"), moment()) is False
    assert [(leaf.event, leaf.key) for leaf in leaves(state)] == [("confirmed",
                                                                   confirmed.key)]
    assert state.confirmed(confirmed.key) and not state.confirmed(aborted.key)
    assert state.uploads() == []


def test_expired_uploads_are_purged(state, make_entry):
    entry = make_entry()
    state.hold(held(entry, moment(3), days=2), "e" * 64, Event(entry.email, "held"))
    assert [u.key for u in state.purge(moment(), "marketplace")] == [entry.key]
    assert state.upload(entry.key) is None


def test_mails_over_the_quota_are_refused_until_one_is_released(state, make_entry):
    quota = MailQuota(per_recipient=2, per_client=10)
    entries = [make_entry() for _ in range(3)]
    for number, entry in enumerate(entries[:2]):
        state.hold(held(entry), f"{number}" * 64, Event(entry.email, "held"), "10.0.0.1",
                   quota)
    with pytest.raises(OverQuota) as over:
        state.hold(held(entries[2]), "9" * 64, Event(entries[2].email, "held"), "10.0.0.1",
                   quota)
    assert over.value.retry_after > 0
    assert state.upload(entries[2].key) is None
    state.release_mail(entries[0].key)
    assert state.hold(held(entries[2]), "9" * 64, Event(entries[2].email, "held"),
                      "10.0.0.1", quota)[1] is True


# --- the log ---


def test_the_log_hashes_are_those_of_its_leaves_and_full_tiles(state):
    event = Event("ops", "blocked", "spam", "eve@example.org")
    for _ in range(tlog.TILE_WIDTH // 2):
        state.block("eve@example.org", "email", event, moment())
        state.unblock("eve@example.org", event, moment())
    size = state.log_size()
    assert size == tlog.TILE_WIDTH
    hashes = [tlog.leaf_hash(leaf) for leaf in state.log_leaves(0, size)]
    assert state.log_hashes(0, 0, size) == hashes
    assert state.log_hashes(1, 0, 1) == [tlog.root_of(hashes)]
    assert state.log_leaves(10, 12) == state.log_leaves(0, size)[10:12]
