"""What only the Elasticsearch state has to prove: two stores on one cluster (two app servers)
racing through threads keep the change feed, the audit log and the transparency log gapless
and in order, lose no write, pass no mail quota twice, never serve an entry under its
tombstone, see each other's writes at once, and a publication or removal cut short by a
fault is finished by the replay or by repair."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests

from marketplace.metadata import logleaf, tlog
from marketplace.metadata.verdict import Moment, Refused
from marketplace.moderation.mail import Mailer
from marketplace.moderation.workflow import Moderation
from marketplace.store.base import Query, StoreError
from marketplace.store.elastic import latest
from marketplace.store.elastic.indices import STATE_MAPPING_VERSION
from marketplace.store.elastic.slots import Overtaken
from marketplace.store.elastic.state import UNFINISHED_AFTER, ElasticState
from marketplace.store.state import PUBLISH, REMOVE, Event, MailQuota, OverQuota, Removed, Upload
from tests.elastic import new_prefix
from tests.store.conftest import moment

ADMIN = Event("admin", "removed", "a test removal")


@pytest.fixture
def servers(elasticsearch, es_prefix):
    """Two stores on this test's prefix: two app servers, each its own client."""
    first, second = elasticsearch.store(es_prefix), elasticsearch.store(es_prefix)
    yield first, second
    first.close()
    second.close()


def race(*work) -> None:
    """Run each callable in its own thread, all released at once; re-raise the first
    error any of them met."""
    errors, start = [], threading.Barrier(len(work))

    def run(job):
        start.wait()
        try:
            job()
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def held(entry, at: datetime, email: str | None = None) -> Upload:
    return Upload(entry.identifier, email or entry.email, entry.key[2], entry.document, None,
                  entry.appliance.title, "pending", at, at + timedelta(hours=48))


def test_publications_through_two_servers_number_the_feed_and_the_log_without_gaps(
        servers, make_entry):
    first, second = servers
    entries = [make_entry(title=f"entry {n}") for n in range(24)]
    at = datetime.now(UTC).replace(microsecond=0)
    published = []

    def publish(store, share):
        for entry in share:
            published.append(store.state.publish(entry, at, Event("test", "published")))

    race(*(lambda s=store, n=n: publish(s, entries[n::4])
           for n, store in enumerate((first, second, first, second))))
    assert sorted(p.serial for p in published) == list(range(1, 25))
    assert sorted(p.leaf for p in published) == list(range(24))
    for store in servers:
        changes = store.state.changes()
        assert [c.serial for c in changes] == list(range(1, 25))
        assert Counter(c.key for c in changes) == Counter(e.key for e in entries)
        assert store.state.last_serial() == 24
        assert store.state.log_size() == 24
        leaves = [logleaf.LogEvent.parse(leaf) for leaf in store.state.log_leaves(0, 24)]
        assert {leaf.key for leaf in leaves} == {e.key for e in entries}
        assert [r.serial for r in store.state.audit(limit=100)] == list(range(24, 0, -1))
        assert store.state.leaf_indexes([e.key for e in entries]) == {
            leaf.key: n for n, leaf in enumerate(leaves)}
        assert store.search(Query(limit=100)).total == 24  # searchable with no refresh call


def test_log_tiles_across_servers_hash_as_the_tree(servers):
    """300 blocks and unblocks through two servers: one full tile, its root kept with the
    leaf that completed it, and every level agreeing with the RFC 6962 tree of the leaves."""
    first, second = servers
    at = datetime.now(UTC)

    def churn(store, name):
        for n in range(75):
            endorser = f"{name}-{n}@example.org"
            assert store.state.block(endorser, "email", Event("admin", "blocked",
                                                              endorser=endorser), at)
            assert store.state.unblock(endorser, Event("admin", "unblocked",
                                                       endorser=endorser), at)

    race(lambda: churn(first, "a"), lambda: churn(second, "b"))
    state = second.state
    assert state.log_size() == 300
    leaves = state.log_leaves(0, 300)
    assert len(leaves) == 300 and len(set(leaves)) == 300
    hashes = [tlog.leaf_hash(leaf) for leaf in leaves]
    assert state.log_hashes(0, 0, 300) == hashes
    assert state.log_hashes(1, 0, 1) == [tlog.root_of(hashes[:256])]
    tiles = tlog.HashReader(300, lambda level, index, width: b"".join(
        state.log_hashes(level, index * 256, index * 256 + width)))
    assert tiles.root() == tlog.root_of(hashes)
    assert [r.serial for r in state.audit(limit=1000)] == list(range(300, 0, -1))
    assert state.blocked() == []


def test_no_write_is_lost_when_two_servers_change_one_document(servers):
    """Marks, the blocked list and the mail counters are read-modify-write documents: the
    servers' writes all land."""
    first, second = servers
    at = datetime.now(UTC)
    names = [f"endorser-{n}@example.org" for n in range(20)]
    race(*(lambda s=store, n=name: s.state.block(n, "email", Event("admin", "blocked",
                                                                   endorser=n), at)
           for store, name in zip((first, second) * 10, names, strict=True)))
    assert sorted(b.endorser for b in first.state.blocked()) == sorted(names)
    assert second.state.log_size() == 20


def test_a_mail_quota_is_not_passed_twice_through_two_servers(servers, make_entry):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    quota = MailQuota(per_recipient=3, per_client=100)
    entries = [make_entry(title=f"held {n}") for n in range(8)]
    outcomes = []

    def hold(store, entry):
        try:
            store.state.hold(held(entry, at, "Jane@Example.org"), f"token-{entry.identifier}",
                             Event("jane", "held"), "192.0.2.1", quota)
            outcomes.append("held")
        except OverQuota as exc:
            outcomes.append(exc.retry_after)

    race(*(lambda s=store, e=entry: hold(s, e)
           for store, entry in zip((first, second) * 4, entries, strict=True)))
    assert outcomes.count("held") == 3
    assert all(0 < wait <= 86400 + 1 for wait in outcomes if wait != "held")
    assert len(second.state.uploads()) == 3
    # a mail that could not be sent is not counted: one more fits
    kept = second.state.uploads()[0]
    first.state.release_mail(kept.key)
    second.state.hold(held(entries[-1], at, "jane@example.org"), "token-last",
                      Event("jane", "held"), "192.0.2.1", quota)


def test_a_removal_racing_a_publication_never_leaves_the_entry_served(servers, make_entry):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    for n in range(12):
        entry = make_entry(title=f"raced {n}")
        outcome = []

        def publish(entry=entry, outcome=outcome):
            try:
                first.state.publish(entry, at)
                outcome.append("published")
            except Removed:
                outcome.append("refused")

        race(publish, lambda entry=entry: second.state.withdraw(entry.key, at, ADMIN))
        for store in servers:
            assert store.state.tombstone(entry.key) is not None
            assert store.get(entry.identifier, entry.email, entry.created) is None
            assert store.search(Query(q=f"raced {n}")).total == 0
        # The feed never ends with the entry published. (A removal may follow a publication
        # that stored the entry for an instant and was refused before announcing it: the
        # feed then has the removal alone, which a replica applies as a no-op.)
        actions = [c.action for c in first.state.changes() if c.key == entry.key]
        assert actions in ([], [REMOVE], [PUBLISH, REMOVE]), (outcome, actions)


def test_each_server_reads_the_others_writes_at_once(servers, make_entry):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry, pending = make_entry(title="read at once"), make_entry(title="pending")
    publication = first.state.publish(entry, at)
    assert [e.key for e in second.search(Query(q="once")).entries] == [entry.key]
    assert second.state.leaf_indexes([entry.key]) == {entry.key: publication.leaf}
    first.state.hold(held(pending, at), "the-token", Event(pending.email, "held"))
    assert second.state.by_token("the-token").key == pending.key
    assert [u.key for u in second.state.uploads("pending")] == [pending.key]
    assert second.state.resolve(pending.key, Event(pending.email, "confirmed"), at)
    assert first.state.confirmed(pending.key)
    assert first.state.by_token("the-token") is None
    second.state.block("eve@example.org", "email", Event("admin", "blocked"), at)
    assert [b.endorser for b in first.state.blocked()] == ["eve@example.org"]
    first.state.withdraw(entry.key, at, ADMIN)
    assert second.search(Query(q="once")).total == 0
    assert [t.key for t in second.state.tombstones()] == [entry.key]
    second.state.set_mark("replica", "17")
    assert first.state.mark("replica") == "17"


def test_concurrent_versions_published_through_two_servers_keep_the_newest(
        servers, make_entry):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    versions = [make_entry(b"one image", when=moment(0.01 * (20 - n)), title=f"v{n}")
                for n in range(20)]

    def publish(store, share):
        for entry in share:
            try:
                store.state.publish(entry, at)
            except Exception as exc:  # an older version than the stored latest: Conflict
                assert "newer entry" in str(exc)

    race(*(lambda s=store, n=n: publish(s, versions[n::4])
           for n, store in enumerate((first, second, first, second))))
    for store in servers:
        assert [e.appliance.title for e in store.search(Query()).entries] == ["v19"]
    serials = [c.serial for c in first.state.changes()]
    assert serials == list(range(1, len(serials) + 1))


class Fault(Exception):
    """A crash of the app server at a chosen point (a real cluster cannot be made to)."""


def test_an_interrupted_publication_is_finished_by_the_replay_or_by_repair(
        servers, make_entry, monkeypatch):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    replayed, repaired = make_entry(title="replayed"), make_entry(title="repaired")
    with monkeypatch.context() as patch:
        patch.setattr(ElasticState, "_announce", lambda *args, **kw: (_ for _ in ()).throw(
            Fault("crashed after storing the entry")))
        for entry in (replayed, repaired):
            with pytest.raises(Fault):
                first.state.publish(entry, at)
    for entry in (replayed, repaired):
        assert second.get(entry.identifier, entry.email, entry.created) is not None
    assert second.state.last_serial() == 0 and second.state.log_size() == 0
    # the client's retry, through the other server, finishes its own upload
    publication = second.state.publish(replayed, at)
    assert (publication.new, publication.serial, publication.leaf) == (False, 1, 0)
    # the other note may belong to a request still running
    assert second.state.repair(at) == {"removed": 0}
    assert second.state.repair(at + UNFINISHED_AFTER * 2) == {"published": 1, "removed": 0}
    assert [c.key for c in first.state.changes()] == [replayed.key, repaired.key]
    assert first.state.log_size() == 2
    assert first.state.repair(at + UNFINISHED_AFTER * 2) == {"removed": 0}  # nothing left


def test_an_interrupted_removal_is_finished_by_repair(servers, make_entry, monkeypatch):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry = make_entry(title="half removed")
    first.state.publish(entry, at)
    with monkeypatch.context() as patch:
        patch.setattr(ElasticState, "_announce_removal", lambda *args, **kw: (
            _ for _ in ()).throw(Fault("crashed after taking the entry out")))
        with pytest.raises(Fault):
            first.state.withdraw(entry.key, at, ADMIN)
    assert second.get(entry.identifier, entry.email, entry.created) is None
    assert [c.action for c in second.state.changes()] == [PUBLISH]
    # (the note of the publication, whose deletion first deferred to its next bulk, is
    # dropped too: its entry is no longer stored)
    assert second.state.repair(at + UNFINISHED_AFTER * 2) == {
        "announced": 1, "abandoned": 1, "removed": 0}
    assert [c.action for c in second.state.changes()] == [PUBLISH, REMOVE]
    events = [logleaf.LogEvent.parse(leaf).event for leaf in second.state.log_leaves(0, 9)]
    assert events == [logleaf.PUBLISHED, logleaf.REMOVED]
    assert second.state.repair(at + UNFINISHED_AFTER * 2) == {"removed": 0}


def test_an_entry_stored_under_its_tombstone_is_taken_out_by_repair(servers, make_entry):
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry = make_entry(title="came back")
    first.state.publish(entry, at)
    first.state.withdraw(entry.key, at, ADMIN)
    first.add(entry)  # as a reindex made during the removal would bring it back
    assert second.state.repair(at) == {"removed": 1}
    assert second.get(entry.identifier, entry.email, entry.created) is None


def test_init_store_creates_the_state_index_and_migrates_an_older_mapping(
        elasticsearch, make_entry):
    prefix = new_prefix()
    store = elasticsearch.store(prefix)
    try:
        store.init()
        index = f"{prefix}-state"
        mapping = requests.get(f"{elasticsearch.url}/{index}/_mapping", timeout=30).json()
        assert mapping[index]["mappings"]["_meta"] == {"version": STATE_MAPPING_VERSION}
        settings = requests.get(f"{elasticsearch.url}/{index}/_settings", timeout=30).json()
        assert settings[index]["settings"]["index"]["translog"]["durability"] == "request"
        requests.put(f"{elasticsearch.url}/{index}/_mapping", json={"_meta": {"version": 0}},
                     timeout=30).raise_for_status()
        other = elasticsearch.store(prefix)
        with pytest.raises(Exception, match="init-store"):
            other.state.log_size()
        other.init()
        mapping = requests.get(f"{elasticsearch.url}/{index}/_mapping", timeout=30).json()
        assert mapping[index]["mappings"]["_meta"] == {"version": STATE_MAPPING_VERSION}
        assert other.state.publish(make_entry(), datetime.now(UTC)).leaf == 0
        other.close()
    finally:
        store.drop()
        store.close()


def test_removing_an_old_version_while_a_new_one_is_published_keeps_the_new_one_served(
        servers, make_entry):
    """A publication writes without a refresh; the removal settling the pair's latest copy
    must still count the new version (it reads the entries after a refresh)."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    for n in range(8):
        old = make_entry(f"image {n}".encode(), when=moment(1), title=f"old {n}")
        new = make_entry(f"image {n}".encode(), when=moment(), title=f"new {n}")
        first.state.publish(old, at)
        race(lambda new=new: first.state.publish(new, at),
             lambda old=old: second.state.withdraw(old.key, at, ADMIN))
        for store in servers:
            served = store.search(Query(limit=100)).entries
            assert [e.key for e in served if e.identifier == new.identifier] == [new.key]
            assert store.newest(new.identifier, new.email) == new.key[2]


def test_a_publication_undone_by_a_racing_removal_leaves_no_latest_copy(
        servers, make_entry, monkeypatch):
    """The removal ran between the entry's write and its latest copy's (it settled the pair
    before the copy existed); the publication then finds the tombstone and must take that
    copy out again."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry = make_entry(title="overtaken")
    promote = latest.promote

    def removed_first(indices, source, *args):
        second.state.withdraw(entry.key, at, ADMIN)
        promote(indices, source, *args)

    monkeypatch.setattr(latest, "promote", removed_first)
    with pytest.raises(Removed):
        first.state.publish(entry, at)
    for store in servers:
        assert store.get(entry.identifier, entry.email, entry.created) is None
        assert store.newest(entry.identifier, entry.email) is None
        assert store.search(Query(q="overtaken")).total == 0


def test_a_new_server_finds_the_head_of_a_long_feed_in_a_few_reads(servers, monkeypatch):
    """A process starts with no hint: it finds the feed's head by bisection, not by reading
    every slot."""
    first, _ = servers
    first.state.set_mark("ready", "1")  # the indices exist
    lines = "".join(
        f'{{"create":{{"_index":"{first.indices.state}","_id":"change:{n}"}}}}\n'
        f'{{"kind":"change","number":{n},"action":"publish","at":"2026-01-01T00:00:00Z",'
        f'"identifier":"i{n}","email":"e@example.org","created":"2026-01-01T00:00:00Z"}}\n'
        for n in range(1, 5001))
    first.client.bulk(operations=lines)
    reads = []
    newcomer = type(first)(first.client, first.prefix, url=first.url)  # no hint yet
    real_mget = newcomer.client.mget

    def counted(**kwargs):
        reads.append(len(kwargs["ids"]))
        return real_mget(**kwargs)

    monkeypatch.setattr(newcomer.client, "mget", counted)
    assert newcomer.state.last_serial() == 5000
    assert len(reads) <= 8
    assert [c.serial for c in newcomer.state.changes(after=4990)] == list(range(4991, 5001))


def test_an_upload_reads_its_tombstone_and_the_blocked_list_in_no_request_of_their_own(
        servers, make_entry):
    """An upload judged and published: six requests, the tombstone with the pair's latest
    copy and the blocked endorsers, the note, the entry, its latest copy, the slots' heads
    with the tombstone again (after the write), the bulk of slots."""
    first, _ = servers
    at = datetime.now(UTC).replace(microsecond=0)
    moderation = Moderation(first)
    moderation.judge(make_entry(title="first").document, Moment.upload(at))  # the copy
    first.state.publish(make_entry(title="first"), at)  # the indices exist, the hints hold
    entry = make_entry(title="counted")
    sent = []
    transport = first.client.transport
    real = transport.perform_request

    def counted(method, target, *args, **kwargs):
        sent.append((method, target.split("?")[0], json.dumps(kwargs.get("body"))))
        return real(method, target, *args, **kwargs)

    transport.perform_request = counted
    try:
        moderation.judge(entry.document, Moment.upload(at))
        moderation.publish(entry, at)
    finally:
        transport.perform_request = real
    tombstone = f"tombstone:{'|'.join(entry.key)}"
    assert len(sent) == 6, sent
    assert tombstone in sent[0][2] and '"blocked"' in sent[0][2]
    assert [path.rsplit("/", 1)[-1] for _, path, _ in sent if path.endswith("_mget")] == \
        ["_mget", "_mget"]
    entry_written = next(n for n, (method, path, _) in enumerate(sent)
                         if method == "PUT" and first.indices.entries in path)
    assert tombstone in sent[-2][2] and sent[-2][1].endswith("_mget")
    assert entry_written < len(sent) - 2
    assert sent[-1][1].endswith("_bulk")


def test_a_replay_overtaken_by_a_removal_is_refused_and_not_served(servers, make_entry,
                                                                   monkeypatch):
    """A replay has no slot to claim (the feed and the log have it): the tombstone is read
    after its write all the same."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry = make_entry(title="replayed then removed")
    first.state.publish(entry, at)
    add = first.state._add

    def removed_meanwhile(*args):
        stored = add(*args)
        second.state.withdraw(entry.key, at, ADMIN)
        return stored

    monkeypatch.setattr(first.state, "_add", removed_meanwhile)
    with pytest.raises(Removed):
        first.state.publish(entry, at)
    for store in servers:
        assert store.get(entry.identifier, entry.email, entry.created) is None
        assert store.search(Query(q="replayed then removed")).total == 0
    assert [c.action for c in second.state.changes()] == [PUBLISH, REMOVE]


def test_claims_refused_for_an_existing_document_take_no_slot_and_leave_no_gap(servers):
    """Claims racing through one process's slot writer, half of them to be refused for a
    document that exists: those get Overtaken, the others numbers without a gap."""
    first, _ = servers
    state = first.state
    state.set_mark("refusing", "1")
    taken, refused = [], []

    def claim(n: int) -> None:
        def slot(number: int) -> dict:
            return {"kind": "change", "number": number, "action": "publish",
                    "at": "2026-01-01T00:00:00Z"}
        try:
            taken.extend(state.appender.append([(state.feed, slot)],
                                               unless="mark:refusing" if n % 2 else None))
        except Overtaken as exc:
            refused.append(exc.doc_id)

    race(*(lambda n=n: claim(n) for n in range(8)))
    assert refused == ["mark:refusing"] * 4
    assert sorted(taken) == [1, 2, 3, 4]
    assert [s["number"] for s in state.feed.run(1, 20)] == [1, 2, 3, 4]


def test_an_endorser_blocked_through_another_server_is_refused_before_anything_is_written(
        servers, make_entry):
    """A server judges uploads with its copy of the blocked list; the publication reads
    the list again, and refuses an endorser blocked since through another server."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    here, there = Moderation(first), Moderation(second)
    entry = make_entry(title="blocked meanwhile")
    here.judge(entry.document, Moment.upload(at))  # this server's copy: nobody blocked
    there.block(entry.email, "admin", "a test block", at)
    here.judge(entry.document, Moment.upload(at))  # with the copy, as the upload's judge
    with pytest.raises(Refused) as refused:
        here.publish(entry, at)
    assert refused.value.rule == "blocked"
    assert first.get(entry.identifier, entry.email, entry.created) is None
    assert first.state.changes() == [] and first.state.uploads() == []
    with pytest.raises(Refused):  # the copy is the new list now
        here.judge(entry.document, Moment.upload(at))
    there.unblock(entry.email, "admin", "a test unblock", at)
    here.judge(entry.document, Moment.upload(at))  # refused by the copy, judged again
    assert here.publish(entry, at).new


def test_a_block_through_this_server_is_judged_at_once(servers, make_entry):
    first, _ = servers
    at = datetime.now(UTC).replace(microsecond=0)
    moderation = Moderation(first)
    entry = make_entry(title="blocked here")
    moderation.judge(entry.document, Moment.upload(at))
    moderation.block(entry.email, "admin", "a test block", at)
    with pytest.raises(Refused):
        moderation.judge(entry.document, Moment.upload(at))


def test_the_log_indexes_of_a_page_seen_before_cost_one_read(servers, make_entry):
    first, _ = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entries = [make_entry(title=f"listed {n}") for n in range(3)]
    leaves = {e.key: first.state.publish(e, at).leaf for e in entries}
    assert first.state.leaf_indexes([e.key for e in entries]) == leaves
    sent = []
    real = first.client.transport.perform_request

    def counted(method, target, *args, **kwargs):
        sent.append((method, target))
        return real(method, target, *args, **kwargs)

    first.client.transport.perform_request = counted
    try:
        assert first.state.leaf_indexes([e.key for e in entries]) == leaves
    finally:
        first.client.transport.perform_request = real
    assert [method for method, _ in sent] == ["POST"] and sent[0][1].endswith("/_mget")


def test_a_new_serving_leaf_through_another_server_is_read_at_once(servers, make_entry):
    """A server remembers an entry's serving leaf; the entry removed, let back and
    published again through another server has a newer one, read at the next call; and so
    after more new leaves than one read covers."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry = make_entry(title="published again")
    assert first.state.publish(entry, at).leaf == 0
    assert first.state.leaf_indexes([entry.key]) == {entry.key: 0}
    second.state.withdraw(entry.key, at, ADMIN)
    second.state.lift(entry.key, Event("admin", "lifted"), at)
    assert second.state.publish(entry, at).leaf == 3
    assert first.state.leaf_indexes([entry.key]) == {entry.key: 3}
    others = [make_entry(title=f"other {n}") for n in range(20)]
    for other in others:
        second.state.publish(other, at)
    second.state.withdraw(entry.key, at, ADMIN)
    second.state.lift(entry.key, Event("admin", "lifted"), at)
    newest = second.state.publish(entry, at).leaf
    assert newest == 26
    assert first.state.leaf_indexes([entry.key, others[0].key]) == {entry.key: 26,
                                                                   others[0].key: 4}


def test_an_endorser_blocked_through_another_server_is_refused_before_a_mail(servers,
                                                                            make_entry):
    """An upload held for a mailed confirmation is never published by the thread that
    judged it, so the copy of the blocked list that judged it is checked again before the
    mail: the SMTP server named here does not listen, and no mail is tried."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    nowhere = Mailer("127.0.0.1", closed_port(), "marketplace@example.org")
    here = Moderation(first, unlisted="confirm", mailer=nowhere,
                      public_url="https://marketplace.example.org")
    entry = make_entry(title="held for a blocked endorser")
    here.judge(entry.document, Moment.upload(at))  # this server's copy: nobody blocked
    Moderation(second).block(entry.email, "admin", "a test block", at)
    verdict = here.judge(entry.document, Moment.upload(at))  # with the copy
    with pytest.raises(Refused) as refused:
        here.admit(entry, verdict, at)
    assert refused.value.rule == "blocked"
    assert first.state.uploads() == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("retried_through", ["the same server", "repair"])
def test_a_block_whose_announcement_failed_is_announced_once(servers, monkeypatch,
                                                            retried_through):
    """The cluster fails after the blocked list is written and before its audit row and
    log leaf are (a node lost in between: a fault added by hand); the operator's retry, or
    repair, announces it, once, and an unblock after it still counts."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    event = Event("admin", "blocked", "a test block", "mallory@example.org")
    appended = first.state._append

    def lost(*wanted):
        raise StoreError("the cluster is unavailable (a node was lost)")

    monkeypatch.setattr(first.state, "_append", lost)
    with pytest.raises(StoreError):
        first.state.block("mallory@example.org", "email", event, at)
    monkeypatch.setattr(first.state, "_append", appended)
    if retried_through == "repair":
        second.state.repair(at + UNFINISHED_AFTER + timedelta(seconds=1))
    else:
        assert not first.state.block("mallory@example.org", "email", event, at)
    assert not first.state.block("mallory@example.org", "email", event, at)
    assert second.state.unblock("mallory@example.org", Event("admin", "unblocked"), at)
    actions = [record.action for record in second.state.audit()]
    assert sorted(actions) == ["blocked", "unblocked"]
    leaves = [logleaf.LogEvent.parse(leaf).event for leaf in
              second.state.log_leaves(0, second.state.log_size())]
    assert sorted(leaves) == [logleaf.BLOCKED, logleaf.UNBLOCKED]


@pytest.mark.parametrize("retried_through", ["the same server", "repair"])
def test_a_lift_whose_announcement_failed_is_finished_once(servers, make_entry, monkeypatch,
                                                          retried_through):
    """As for a block: the cluster fails after the lift is claimed and before its audit row
    and log leaf are written; the retry, or repair, announces the lift once and deletes
    the tombstone, and the entry can be published again."""
    first, second = servers
    at = datetime.now(UTC).replace(microsecond=0)
    entry = make_entry(title="lifted after a failure")
    first.state.publish(entry, at)
    first.state.withdraw(entry.key, at, ADMIN)
    appended = first.state._append

    def lost(*wanted):
        raise StoreError("the cluster is unavailable (a node was lost)")

    monkeypatch.setattr(first.state, "_append", lost)
    with pytest.raises(StoreError):
        first.state.lift(entry.key, Event("admin", "lifted"), at)
    monkeypatch.setattr(first.state, "_append", appended)
    if retried_through == "repair":
        second.state.repair(at + UNFINISHED_AFTER + timedelta(seconds=1))
    else:
        assert not first.state.lift(entry.key, Event("admin", "lifted"), at)
    assert not first.state.lift(entry.key, Event("admin", "lifted"), at)
    assert second.state.tombstone(entry.key) is None
    leaves = [logleaf.LogEvent.parse(leaf).event for leaf in
              second.state.log_leaves(0, second.state.log_size())]
    assert leaves.count(logleaf.LIFTED) == 1
    assert [r.action for r in second.state.audit()].count("lifted") == 1
    assert second.state.publish(entry, at).leaf is not None
