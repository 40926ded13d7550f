"""``migrate`` carries a SQLite site's whole history to Elasticsearch, not only its entries:
a site that moved must keep its feed, audit log, removals, blocks, held uploads, mail counts
and marks, and above all the same transparency log (the same leaves in the same order, the
same tile hashes and root), or every node that trusted its log would see a rollback and
``/healthz`` would answer 503. Both stores are real: a SQLite file and an Elasticsearch
node."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from marketplace.log.check import check_log
from marketplace.metadata import tlog
from marketplace.store.migrate import NotEmpty, migrate
from marketplace.store.sqlite import SQLiteStore
from marketplace.store.state import Event, MailQuota, OverQuota, Upload
from tests.store.conftest import EVE, JANE, moment
from tests.store.test_elastic import cli

NOISE = 130  # block/unblock pairs: with the rest, the log passes a full tile (256 leaves)
CHECKPOINT = "log:checkpoint:12"


def held(entry, at) -> Upload:
    return Upload(entry.identifier, entry.email, entry.key[2], entry.document, None,
                  entry.appliance.title, "pending", at, at + timedelta(hours=48))


@pytest.fixture
def site(tmp_path, make_entry):
    """A SQLite site with a history: entries published (one audited), one removed, an
    endorser blocked, many blocks lifted again (a full tile of leaves), two uploads held
    (one flagged) with their mails counted, and marks, a signed checkpoint among them."""
    source = SQLiteStore(tmp_path / "site" / "marketplace.db")
    state = source.state
    at = moment(1)
    entries = [make_entry(f"image {n}".encode(), when=moment(3 + n), title=f"entry {n}")
               for n in range(4)]
    for n, entry in enumerate(entries):
        state.publish(entry, at + timedelta(seconds=n),
                      Event("admin", "published", "by hand") if n == 0 else None)
    state.withdraw(entries[1].key, at + timedelta(minutes=1), Event("admin", "removed", "spam"))
    state.block(EVE, "email", Event("admin", "blocked", "abuse", EVE), at + timedelta(minutes=2))
    for n in range(NOISE):
        who = f"noise{n}@example.org"
        state.block(who, "email", Event("admin", "blocked", None, who), at + timedelta(hours=1))
        state.unblock(who, Event("admin", "unblocked", None, who), at + timedelta(hours=2))
    pending = make_entry(b"pending image", when=moment(0), title="pending")
    flagged = make_entry(b"flagged image", when=moment(0), title="flagged")
    now = moment(0)  # the mails counted stay inside the quota's window for the test
    for upload, token in ((held(pending, now), "a" * 64), (held(flagged, now), "b" * 64)):
        state.hold(upload, token, Event(JANE, "held"), client="192.0.2.7", quota=MailQuota())
    state.flag(flagged.key, Event("admin", "flagged", "looks odd"), now)
    state.set_mark(CHECKPOINT, "marketplace.example.org/log\n12\nroot\n\n— signed\n")
    state.set_mark("replica:note", "kept")
    assert state.log_size() > tlog.TILE_WIDTH
    assert check_log(source).problems == []
    yield source
    source.close()


def root(state) -> bytes:
    size = state.log_size()
    return tlog.HashReader(size, lambda level, index, width: b"".join(state.log_hashes(
        level, index * tlog.TILE_WIDTH, index * tlog.TILE_WIDTH + width))).root()


def test_migrate_carries_the_log_and_the_state_and_a_second_run_adds_nothing(
        site, elasticsearch, es_prefix, tmp_path):
    target = elasticsearch.store(es_prefix)
    want, got = site.state, target.state
    done = migrate(site.path, target)
    assert done.history_new and done.new == done.entries == site.count() == target.count()
    assert done.history["log leaves"] == want.log_size()

    size = want.log_size()
    assert got.log_size() == size
    assert got.log_leaves(0, size) == want.log_leaves(0, size)
    for level in (0, 1):
        count = size >> (tlog.TILE_HEIGHT * level)
        assert got.log_hashes(level, 0, count) == want.log_hashes(level, 0, count)
    assert root(got) == root(want) == tlog.root_of(
        [tlog.leaf_hash(leaf) for leaf in want.log_leaves(0, size)])
    assert got.changes(0, 1000) == want.changes(0, 1000)
    assert got.last_serial() == want.last_serial()
    assert got.audit(limit=1000) == want.audit(limit=1000)
    assert len(got.audit(limit=1000)) > 2 * NOISE
    assert got.tombstones() == want.tombstones() and len(want.tombstones()) == 1
    assert got.blocked() == want.blocked() and [b.endorser for b in got.blocked()] == [EVE]
    assert got.uploads() == want.uploads() and len(want.uploads()) == 2
    assert got.by_token("a" * 64) == want.by_token("a" * 64) is not None
    for name in (CHECKPOINT, "replica:note"):
        assert got.mark(name) == want.mark(name) is not None
    assert check_log(target).problems == []

    # the mails counted came along: the endorser's quota is as used up as on SQLite
    extra = Upload("extra", JANE, "2026-01-01T00:00:00Z", b"<x/>", None, None, "pending",
                   moment(0), moment(-2))
    with pytest.raises(OverQuota):
        got.hold(extra, "c" * 64, Event(JANE, "held"), quota=MailQuota(per_recipient=2))

    again = migrate(site.path, target)
    assert not again.history_new and again.new == 0 and again.already_there == site.count()
    assert got.log_size() == size and got.changes(0, 1000) == want.changes(0, 1000)
    assert got.audit(limit=1000) == want.audit(limit=1000)
    target.close()


def test_migrate_refuses_a_target_with_another_history_and_writes_nothing(
        site, elasticsearch, es_prefix, make_entry, tmp_path):
    target = elasticsearch.store(es_prefix)
    target.state.publish(make_entry(b"elsewhere", title="its own"), moment(0))
    before = (target.count(), target.state.log_size(), target.state.last_serial())
    with pytest.raises(NotEmpty, match="1 log leaves, 1 feed changes"):
        migrate(site.path, target)
    refused = cli(elasticsearch, es_prefix, "migrate", "--from", f"sqlite:{site.path}",
                  home=tmp_path)
    assert refused.returncode == 1
    assert "is not empty (1 log leaves, 1 feed changes)" in refused.stderr
    assert "the log's leaves differ from the source's" in refused.stderr
    assert "nothing was written" in refused.stderr
    assert (target.count(), target.state.log_size(), target.state.last_serial()) == before
    assert target.state.tombstones() == [] and target.state.blocked() == []
    target.close()


def test_the_command_says_what_it_copied_and_then_that_it_was_there(
        site, elasticsearch, es_prefix, tmp_path):
    first = cli(elasticsearch, es_prefix, "migrate", "--from", f"sqlite:{site.path}",
                "--json", home=tmp_path)
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    assert outcome["history_new"] and outcome["history"]["log leaves"] == site.state.log_size()
    again = cli(elasticsearch, es_prefix, "migrate", "--from", f"sqlite:{site.path}",
                home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already there, the same as the source's; nothing added" in again.stdout
