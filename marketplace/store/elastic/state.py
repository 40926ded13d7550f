"""The shared state of an Elasticsearch store, in the cluster: what one app server writes,
every other one reads at its next request, with no lock held in any process.

Everything lives in the one ``PREFIX-state`` index (indices.py), one document per thing:
``upload:KEY`` (held uploads), ``tombstone:KEY``, ``blocked`` (every blocked endorser, in one
document changed under its sequence number), ``mark:NAME``, ``mails:recipient:R`` and
``mails:client:C`` (the mails sent in the quota's window, changed under their sequence
number, so two servers cannot both pass a limit), ``note:KEY`` (a publication in progress),
and the numbered slots of the change feed, the audit log and the transparency log
(slots.py: ``change:N``, ``audit:N``, ``leaf:N``). A leaf slot also keeps the roots of the
tiles its leaf completes (:func:`~marketplace.metadata.tlog.completed_tiles`), so that any
hash tile is one ``mget``.

Elasticsearch has no multi-document transaction, so a change is written in an order that a
crash can only cut at a point :meth:`ElasticState.repair` (or the client's retry, a replay)
finishes from:

- a publication notes itself (``note:KEY``) before the entry is stored; then the entry and
  its pair's latest copy are written without a refresh, the tombstone is read again in
  the ``mget`` that finds the slots' heads (a removal that came meanwhile takes the entry
  out again, and no slot is claimed: a removal is never undone by a race), and the feed,
  audit and log slots are claimed in one bulk request. The note is
  deleted in the next bulk this process sends: a note left behind is finished by repair.
  The upload was judged with this process's copy of the blocked endorsers
  (:meth:`ElasticState.blocked_to_judge`): the first ``mget`` of the publication, before
  the note, reads the list again and checks the endorser against it if it changed.
- a removal writes its tombstone (``announced: false``) first, takes the entry out, claims
  its slots, then marks the tombstone announced.

Searches see a write once a slot announced it (slots.Freshness): gets by id are realtime.
What a crash can still lose, where SQLite's one transaction loses nothing: the audit record
of a hold, flag, block or lift whose document was written (the audit slot comes second).
Two replays of one document racing through two servers may both announce it (the feed
then names the publication twice); one upload and its replay cannot.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from marketplace.metadata import logleaf, tlog
from marketplace.metadata.model import format_date, parse_date
from marketplace.metadata.verdict import Endorser, check_not_blocked, identify
from marketplace.store.base import Conflict, Entry, StoreError
from marketplace.store.elastic.documents import pair_id
from marketplace.store.elastic.indices import PAGE, Indices
from marketplace.store.elastic.serving import ServingLeaves
from marketplace.store.elastic.slots import Appender, Freshness, Overtaken, Slots, SlotSource
from marketplace.store.state import (
    PUBLISH,
    REMOVE,
    REMOVED_BY_OPERATOR,
    AuditRecord,
    Blocked,
    Change,
    Event,
    Key,
    MailQuota,
    OverQuota,
    Publication,
    Removed,
    State,
    Tombstone,
    Upload,
    log_event,
    serving_event,
)

# A note or an unannounced tombstone older than this belongs to no running request (each
# of its calls gives up after ELASTICSEARCH_TIMEOUT): repair finishes or drops it.
UNFINISHED_AFTER = timedelta(minutes=2)
ADOPT_BATCH = 2000  # slots per bulk round of adopt_history (a tile's end splits it further)
CAS_ATTEMPTS = 30  # rewrites of one document lost in a row to other servers before giving up
UNJUDGED = object()  # no upload was judged in this thread since its last publication

AddEntry = Callable[[Entry, dict | None], bool]  # the store's add, without a refresh,
#                                                  given the pair's latest copy
TakeOut = Callable[[Key], bytes | None]     # the store's removal: the document it held
Calls = Callable[[], AbstractContextManager[None]]


def key_id(key: Key) -> str:
    return "|".join(key)


def _key_fields(key: Key | None) -> dict:
    if key is None:
        return {}
    return {"key": key_id(key), "identifier": key[0], "email": key[1], "created": key[2]}


def _key_of(source: dict) -> Key:
    return source["identifier"], source["email"], source["created"]


class ElasticState(State):
    """The state of one Elasticsearch store, in its cluster's ``PREFIX-state`` index."""

    def __init__(self, indices: Indices, add: AddEntry, take_out: TakeOut, calls: Calls):
        self.indices = indices
        self.client = indices.client
        self.index = indices.state
        self._add = add
        self._take_out = take_out
        self._calls = calls
        self.feed = Slots(self.client, self.index, "change", 1)
        # a leaf that completes a tile keeps the tile's root, read from the leaves below it
        self.log = Slots(self.client, self.index, "leaf", 0,
                         alone=lambda number: (number + 1) % tlog.TILE_WIDTH == 0)
        self.audit_log = Slots(self.client, self.index, "audit", 1)
        self.fresh = Freshness(self.client, [self.index],
                               [self.audit_log, self.log, self.feed])
        self.appender = Appender(self.client, self.index, indices.writes)
        self.serving = ServingLeaves(self.log)
        self._blocked_copy: tuple[tuple | None, list[Blocked]] | None = None
        self._copy_lock = threading.Lock()
        self._judged = threading.local()  # .version: of the copy this thread judged with

    # --- uploads ---

    def hold(self, upload: Upload, token_hash: str, event: Event, client: str = "",
             quota: MailQuota | None = None) -> tuple[Upload, bool]:
        with self._calls():
            existing = self.upload(upload.key)
            if existing is not None:
                return existing, False
            self._count_mails(upload, client, quota)
            source = {"kind": "upload", **_key_fields(upload.key), "state": upload.state,
                      "token_hash": token_hash, "submitted": format_date(upload.submitted),
                      "expires": format_date(upload.expires),
                      "data": {"document": base64.b64encode(upload.document).decode(),
                               "subject": upload.subject, "title": upload.title,
                               "client": client}}
            if not self._put(f"upload:{key_id(upload.key)}", source, op_type="create"):
                self._uncount_mails(upload.key, client)
                return self.upload(upload.key), False
            self._append((self.audit_log, self._audit_source(upload.submitted, event,
                                                             upload.key)))
        return upload, True

    def release_mail(self, key: Key) -> None:
        with self._calls():
            held = self._get(f"upload:{key_id(key)}")
            self._uncount_mails(key, held["_source"]["data"]["client"] if held else "")

    def upload(self, key: Key) -> Upload | None:
        with self._calls():
            hit = self._get(f"upload:{key_id(key)}")
        return _upload_of(hit["_source"]) if hit else None

    def by_token(self, token_hash: str) -> Upload | None:
        found = list(self._search({"bool": {"filter": [
            {"term": {"kind": "upload"}}, {"term": {"token_hash": token_hash}},
            {"term": {"state": "pending"}}]}}, ["submitted"], size=1))
        return _upload_of(found[0]["_source"]) if found else None

    def uploads(self, state: str | None = None) -> list[Upload]:
        filters = [{"term": {"kind": "upload"}}] + ([{"term": {"state": state}}] if state
                                                     else [])
        return [_upload_of(hit["_source"]) for hit in
                self._search({"bool": {"filter": filters}}, ["submitted", "identifier"])]

    def resolve(self, key: Key, event: Event, at: datetime) -> bool:
        with self._calls():
            if not self._delete(f"upload:{key_id(key)}"):
                return False
            wanted = [(self.audit_log, self._audit_source(at, event, key))]
            if event.action == logleaf.CONFIRMED:
                wanted.append((self.log, self._leaf_source(
                    log_event(logleaf.CONFIRMED, at, key, event))))
            self._append(*wanted)
        return True

    def flag(self, key: Key, event: Event, at: datetime) -> bool:
        def to_flagged(source: dict | None) -> dict | None:
            if source is None or source["state"] != "pending":
                return None
            source = {k: v for k, v in source.items() if k != "token_hash"}
            source["state"] = "flagged"
            source["data"] = {**source["data"], "flagged": format_date(at)}
            return source

        with self._calls():
            if not self._rewrite(f"upload:{key_id(key)}", to_flagged):
                return False
            self._append((self.audit_log, self._audit_source(at, event, key)))
        return True

    def purge(self, now: datetime, actor: str) -> list[Upload]:
        expired = []
        hits = self._search({"bool": {"filter": [
            {"term": {"kind": "upload"}}, {"term": {"state": "pending"}},
            {"range": {"expires": {"lte": format_date(now)}}}]}}, ["submitted", "identifier"])
        with self._calls():
            for hit in hits:
                upload = _upload_of(hit["_source"])
                if self._delete(hit["_id"], if_seq_no=hit["_seq_no"],
                                if_primary_term=hit["_primary_term"]):
                    self._append((self.audit_log, self._audit_source(
                        now, Event(actor, "expired", "not confirmed in time"), upload.key)))
                    expired.append(upload)
        return expired

    # --- publications and removals ---

    def publish(self, entry: Entry, at: datetime, event: Event | None = None) -> Publication:
        key = entry.key
        note = f"note:{key_id(key)}"
        with self._calls():
            current = self._refuse_buried(entry)
            self._put(note, {"kind": "note", **_key_fields(key), "at": format_date(at)})
            try:
                new = self._add(entry, current)
            except Conflict:
                self._delete(note)
                raise
            try:
                serial, leaf = self._announce(entry, at, event, replay=not new,
                                              unless=f"tombstone:{key_id(key)}")
            except Overtaken as exc:  # a removal came between the check and the write
                self._take_out(key)
                self._delete(note)
                raise Removed(_tombstone_of(exc.source)) from None
            self.appender.delete_later(note)
        return Publication(new, serial, leaf)

    def _announce(self, entry: Entry, at: datetime, event: Event | None,
                  replay: bool, unless: str | None = None) -> tuple[int | None, int]:
        """Put a stored entry in the feed (audited when an ``event`` is given) and the log,
        where they do not have it yet (a replay: as far as an interrupted publication got);
        its serial (None: the feed had it) and its serving leaf. Overtaken, and nothing
        announced, when the document ``unless`` names exists once the entry was written
        (read with the slots' heads: slots.Appender)."""
        last, leaf = self._history(entry.key) if replay else (None, None)
        wanted = []
        if last != PUBLISH:
            wanted.append((self.feed, self._change_source(at, PUBLISH, entry.key)))
            if event is not None:
                wanted.append((self.audit_log, self._audit_source(at, event, entry.key)))
        if leaf is None:
            wanted.append((self.log, self._leaf_source(log_event(
                serving_event(entry), at, entry.key, event, entry.document))))
        taken = dict(zip((sequence.name for sequence, _ in wanted),
                         self.appender.append(wanted, unless), strict=True))
        return taken.get(self.feed.name), taken.get(self.log.name, leaf)

    def withdraw(self, key: Key, at: datetime, event: Event, rule: str = REMOVED_BY_OPERATOR
                 ) -> bool:
        doc_id = f"tombstone:{key_id(key)}"
        source = {"kind": "tombstone", **_key_fields(key), "at": format_date(at),
                  "announced": False,
                  "data": {"rule": rule, "actor": event.actor, "reason": event.reason or ""}}
        with self._calls():
            self._put(doc_id, source)
            document = self._take_out(key)
            self._announce_removal(key, at, event, document, document is not None, True)
            self._put(doc_id, {**source, "announced": True})
        return document is not None

    def _announce_removal(self, key: Key, at: datetime, event: Event, document: bytes | None,
                          in_feed: bool, in_log: bool) -> None:
        """Audit a removal, and put it in the feed and/or the log."""
        wanted = [(self.audit_log, self._audit_source(at, event, key))]
        if in_feed:
            wanted.append((self.feed, self._change_source(at, REMOVE, key)))
        if in_log:
            wanted.append((self.log, self._leaf_source(
                log_event(logleaf.REMOVED, at, key, event, document))))
        self._append(*wanted)

    def repair(self, now: datetime) -> dict[str, int]:
        """Finish what a crash interrupted, in any server: publication notes (the entry
        stored: its missing feed and log slots are added; not stored: dropped) and
        tombstones whose removal was not announced, once older than UNFINISHED_AFTER (a
        younger one may belong to a request still running on another server); and an entry
        stored under its tombstone is taken out again; changes of the blocked list and
        lifts whose announcement failed are announced. The count of those (``removed``,
        as on SQLite) always; the others when not zero."""
        done = {"published": 0, "abandoned": 0, "announced": 0, "removed": 0}
        with self._calls():
            self._delete_notes()
            self.fresh.refresh()
            settled = format_date(now - UNFINISHED_AFTER)
            for hit in self._search({"bool": {"filter": [
                    {"term": {"kind": "note"}}, {"range": {"at": {"lt": settled}}}]}}, ["at"]):
                done[self._finish_note(hit)] += 1
            blocked = self._get("blocked")
            for endorser, pending in (blocked["_source"]["data"].get("unannounced", {})
                                      if blocked else {}).items():
                if pending["at"] < settled:
                    self._announce_blocked(endorser, pending)
                    done["announced"] += 1
            for hit in self._search({"term": {"kind": "tombstone"}}, ["at", "identifier"]):
                source = hit["_source"]
                if self._take_out(_key_of(source)) is not None:
                    done["removed"] += 1
                if not source["announced"] and source["at"] < settled:
                    self._finish_removal(hit)
                    done["announced"] += 1
                elif source["data"].get("lifting", {}).get("at", settled) < settled:
                    self._finish_lift(_key_of(source), source["data"]["lifting"])
                    done["announced"] += 1
        return {name: count for name, count in done.items() if count or name == "removed"}

    def _finish_note(self, hit: dict) -> str:
        key, since = _key_of(hit["_source"]), parse_date(hit["_source"]["at"])
        stored = self.indices.document(key)
        if stored is not None:
            self._announce(Entry.from_document(stored), since, None, replay=True)
        self._delete(hit["_id"], if_seq_no=hit["_seq_no"], if_primary_term=hit["_primary_term"])
        return "published" if stored is not None else "abandoned"

    def _finish_removal(self, hit: dict) -> None:
        source = hit["_source"]
        key, at = _key_of(source), parse_date(source["at"])
        event = Event(source["data"]["actor"], "removed", source["data"]["reason"] or None)
        last, leaf = self._history(key)
        in_feed = last == PUBLISH
        in_log = leaf is not None or not self._removed_since(key, at)
        if in_feed or in_log:
            self._announce_removal(key, at, event, None, in_feed, in_log)
        self._put(hit["_id"], {**source, "announced": True}, if_seq_no=hit["_seq_no"],
                  if_primary_term=hit["_primary_term"])

    def _history(self, key: Key) -> tuple[str | None, int | None]:
        """The key's last change-feed action and the leaf that serves it now (the newest
        that published or deprecated it, if no ``removed`` leaf came after it)."""
        last = leaf = removed = None
        for hit in self._search({"bool": {"filter": [
                {"term": {"key": key_id(key)}}, {"terms": {"kind": ["change", "leaf"]}}]}},
                ["number"]):
            source = hit["_source"]
            if source["kind"] == "change":
                last = source["action"]
            elif source["action"] in logleaf.SERVES:
                leaf = source["number"]
            elif source["action"] == logleaf.REMOVED:
                removed = source["number"]
        return last, leaf if leaf is not None and (removed is None or removed < leaf) else None

    def _removed_since(self, key: Key, at: datetime) -> bool:
        """Whether the log has a ``removed`` leaf of the key from ``at`` on."""
        return any(self._search({"bool": {"filter": [
            {"term": {"key": key_id(key)}}, {"term": {"kind": "leaf"}},
            {"term": {"action": logleaf.REMOVED}},
            {"range": {"at": {"gte": format_date(at)}}}]}}, ["number"]))

    # --- tombstones, confirmations ---

    def tombstone(self, key: Key) -> Tombstone | None:
        with self._calls():
            hit = self._get(f"tombstone:{key_id(key)}")
        return _tombstone_of(hit["_source"]) if hit else None

    def tombstones(self) -> list[Tombstone]:
        return [_tombstone_of(hit["_source"]) for hit in
                self._search({"term": {"kind": "tombstone"}}, ["at", "identifier"])]

    def lift(self, key: Key, event: Event, at: datetime) -> bool:
        """Mark the tombstone as lifting (in the one write that claims the lift), announce
        the lift (audit row, log leaf), then delete the tombstone. A lift whose
        announcement failed is finished by the retry that finds the mark, or by repair:
        the log never keeps a removal the state has lifted, nor the reverse."""
        doc_id = f"tombstone:{key_id(key)}"
        pending = {"at": format_date(at), "actor": event.actor, "audited": event.action,
                   "reason": event.reason}

        def lifting(source: dict | None) -> dict | None:
            if source is None or "lifting" in source["data"]:
                return None
            return {**source, "data": {**source["data"], "lifting": pending}}

        with self._calls():
            lifted = self._rewrite(doc_id, lifting)
            if not lifted:
                hit = self._get(doc_id)
                if hit is None or "lifting" not in hit["_source"]["data"]:
                    return False
                pending = hit["_source"]["data"]["lifting"]
            self._finish_lift(key, pending)
        return lifted

    def _finish_lift(self, key: Key, pending: dict) -> None:
        """Audit and log a lift, then delete its tombstone unless a removal replaced it."""
        at = parse_date(pending["at"])
        event = Event(pending["actor"], pending["audited"], pending["reason"])
        self._append((self.audit_log, self._audit_source(at, event, key)),
                     (self.log, self._leaf_source(log_event(logleaf.LIFTED, at, key, event))))
        hit = self._get(f"tombstone:{key_id(key)}")
        if hit is not None and hit["_source"]["data"].get("lifting") == pending:
            self._delete(hit["_id"], if_seq_no=hit["_seq_no"],
                         if_primary_term=hit["_primary_term"])

    def confirmed(self, key: Key) -> bool:
        return any(self._search({"bool": {"filter": [
            {"term": {"kind": "audit"}}, {"term": {"key": key_id(key)}},
            {"term": {"action": logleaf.CONFIRMED}}]}}, ["number"], size=1))

    # --- blocked endorsers ---

    def block(self, endorser: str, kind: str, event: Event, at: datetime) -> bool:
        def add(listed: dict) -> dict | None:
            if endorser in listed:
                return None
            return {**listed, endorser: {"kind": kind, "at": format_date(at),
                                         "actor": event.actor, "reason": event.reason or ""}}

        return self._change_blocked(endorser, add, logleaf.BLOCKED, event, at)

    def unblock(self, endorser: str, event: Event, at: datetime) -> bool:
        def remove(listed: dict) -> dict | None:
            if endorser not in listed:
                return None
            return {name: value for name, value in listed.items() if name != endorser}

        return self._change_blocked(endorser, remove, logleaf.UNBLOCKED, event, at)

    def _change_blocked(self, endorser: str, change: Callable[[dict], dict | None],
                        action: str, event: Event, at: datetime) -> bool:
        """Change the list (``change``: the new endorsers, None when it has the change
        already) with the change marked unannounced in the same write, then audit it, log
        it and drop the mark. A change whose announcement failed (a node lost between the
        two) is announced by the retry that finds the list changed already, or by repair:
        the list and the log never disagree for good."""
        pending = {"action": action, "at": format_date(at), "actor": event.actor,
                   "audited": event.action, "reason": event.reason, "endorser": event.endorser}

        def noted(source: dict | None) -> dict | None:
            data = (source or {"kind": "blocked", "data": {"endorsers": {}}})["data"]
            listed = change(data["endorsers"])
            if listed is None:
                return None
            unannounced = {**data.get("unannounced", {}), endorser: pending}
            return {"kind": "blocked", "data": {"endorsers": listed,
                                                "unannounced": unannounced}}

        with self._calls():
            changed = self._rewrite("blocked", noted)
            with self._copy_lock:
                self._blocked_copy = None  # this process reads its own change at once
            if not changed:
                hit = self._get("blocked")
                pending = (hit["_source"]["data"].get("unannounced", {}).get(endorser)
                           if hit else None)
                if pending is None or pending["action"] != action:
                    return False
            self._announce_blocked(endorser, pending)
        return changed

    def _announce_blocked(self, endorser: str, pending: dict) -> None:
        """Audit and log a change of the blocked list, then drop its unannounced mark."""
        at = parse_date(pending["at"])
        event = Event(pending["actor"], pending["audited"], pending["reason"],
                      pending["endorser"])
        self._append((self.audit_log, self._audit_source(at, event)),
                     (self.log, self._leaf_source(log_event(pending["action"], at, None,
                                                            event))))

        def announced(source: dict | None) -> dict | None:
            unannounced = dict(source["data"].get("unannounced", {})) if source else {}
            if unannounced.get(endorser) != pending:
                return None
            del unannounced[endorser]
            return {**source, "data": {**source["data"], "unannounced": unannounced}}

        self._rewrite("blocked", announced)

    def blocked(self) -> list[Blocked]:
        with self._calls():
            hit = self._get("blocked")
        return _blocked_of(hit)

    def blocked_to_judge(self, fresh: bool = False) -> list[Blocked]:
        """The blocked endorsers from this process's copy of the list, with no request
        (``fresh``: read now): the publication that follows in this thread reads the list
        again in its first ``mget`` and, if it changed since this copy, checks the
        endorser against the new one (:meth:`_refuse_buried`) -- before anything is
        written, later than a read here would have been. One request fewer per upload."""
        with self._copy_lock:
            copy = None if fresh else self._blocked_copy
        if copy is None:
            with self._calls():
                copy = self._remember_blocked(self._get("blocked"))
        self._judged.version = copy[0]
        return copy[1]

    def _remember_blocked(self, hit: dict | None) -> tuple[tuple | None, list[Blocked]]:
        """Keep the ``blocked`` document as read (None: there is none) as this process's
        copy; the copy, as (its version, the list)."""
        version = (hit["_seq_no"], hit["_primary_term"]) if hit else None
        copy = version, _blocked_of(hit)
        with self._copy_lock:
            self._blocked_copy = copy
        return copy

    # --- audit log, change feed, marks ---

    def audit(self, limit: int = 100, before: int | None = None) -> list[AuditRecord]:
        with self._calls():
            top = self.audit_log.head() - 1
            if before is not None:
                top = min(top, before - 1)
            numbers = range(top, max(0, top - limit), -1)
            sources = self.audit_log.read(numbers)
        return [_audit_of(source) for source in sources if source is not None]

    def changes(self, after: int = 0, limit: int = 500) -> list[Change]:
        with self._calls():
            found = self.feed.run(after + 1, after + 1 + limit)
        return [Change(s["number"], parse_date(s["at"]), s["action"], *_key_of(s))
                for s in found]

    def last_serial(self) -> int:
        with self._calls():
            return self.feed.head() - 1

    def mark(self, name: str) -> str | None:
        with self._calls():
            hit = self._get(f"mark:{name}")
        return hit["_source"]["data"]["value"] if hit else None

    def set_mark(self, name: str, value: str) -> None:
        with self._calls():
            self._put(f"mark:{name}", {"kind": "mark", "data": {"value": value}})

    # --- the transparency log ---

    def log_size(self) -> int:
        with self._calls():
            return self.log.head()

    def log_leaves(self, start: int, end: int) -> list[bytes]:
        with self._calls():
            found = self.log.run(start, end)
        return [base64.b64decode(source["data"]["leaf"]) for source in found]

    def log_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        with self._calls():
            return self._hashes(level, start, end)

    def _hashes(self, level: int, start: int, end: int) -> list[bytes]:
        """Level 0: the leaf hashes; level L: the root of tile (L - 1, j) for each j, kept
        with the leaf that completed it (the last leaf of its 2^(8L) leaves)."""
        if level == 0:
            return [base64.b64decode(s["data"]["hash"]) for s in self.log.run(start, end)]
        span = 1 << (tlog.TILE_HEIGHT * level)
        found = []
        for j, source in zip(range(start, end), self.log.read(
                (j + 1) * span - 1 for j in range(start, end)), strict=True):
            if source is None:
                break
            found += [base64.b64decode(root) for lvl, index, root in source["data"]["tiles"]
                      if lvl == level and index == j]
        return found

    def leaf_indexes(self, keys: list[Key]) -> dict[Key, int]:
        """From what this process remembers of the log, followed up to its head
        (serving.ServingLeaves: one realtime ``mget``); keys it does not know are searched."""
        if not keys:
            return {}
        with self._calls():
            newest = self.serving.of([key_id(k) for k in keys], self._search_serving)
        return {key: newest[key_id(key)] for key in keys if key_id(key) in newest}

    def _search_serving(self, ids: list[str]) -> dict[str, int]:
        """The newest serving leaf of each key id that has one, by an aggregation over the
        leaves, as fresh as the newest slot."""
        self.fresh.ensure()
        found = self.client.search(
            index=self.index, size=0, query={"bool": {"filter": [
                {"term": {"kind": "leaf"}}, {"terms": {"key": ids}},
                {"terms": {"action": list(logleaf.SERVES)}}]}},
            aggs={"keys": {"terms": {"field": "key", "size": len(ids)},
                           "aggs": {"newest": {"max": {"field": "number"}}}}})
        return {b["key"]: int(b["newest"]["value"])
                for b in found["aggregations"]["keys"]["buckets"]}

    # --- a history brought from another store (stratus-marketplace migrate) ---

    def adopt_history(self, *, leaves: list[bytes], changes: list[Change],
                      audit: list[AuditRecord], tombstones: list[Tombstone],
                      blocked: list[Blocked], uploads: list[tuple[Upload, str | None, str]],
                      mails: list[tuple[datetime, str, str, Key]],
                      marks: dict[str, str]) -> None:
        """Take in another store's history, into a state whose feed, audit log and log are
        empty (the caller checks): the log leaves byte for byte in their order (the same
        tree: checkpoints signed before stay consistent), the feed and the audit log with
        their serials (each 1, 2, ...), then tombstones (announced), blocked endorsers, held
        uploads (each with its token hash, None when flagged, and the client its mail was
        counted for), the mails counted (at, recipient, client, key) and marks. The slots go
        through the slot writer like every other (the tile roots computed as a leaf is
        claimed); StoreError when a slot did not get its serial (another writer in this
        state meanwhile)."""
        wanted = ([(self.log, self._leaf_source(logleaf.LogEvent.parse(leaf)))
                   for leaf in leaves]
                  + [(self.feed, self._change_source(c.at, c.action, c.key)) for c in changes]
                  + [(self.audit_log, self._audit_source(
                      r.at, Event(r.actor, r.action, r.reason, r.endorser),
                      None if r.identifier is None else (r.identifier, r.email, r.created)))
                     for r in audit])
        expected = ([*range(len(leaves))] + [c.serial for c in changes]
                    + [r.serial for r in audit])
        with self._calls():
            for first in range(0, len(wanted), ADOPT_BATCH):
                taken = self.appender.append_each(
                    [[one] for one in wanted[first:first + ADOPT_BATCH]])
                got = [numbers[0] for numbers in taken]
                if got != expected[first:first + ADOPT_BATCH]:
                    raise StoreError("another writer took slots of this state during the "
                                     "migration: the copy is not the source's history")
            for t in tombstones:
                self._put(f"tombstone:{key_id(t.key)}", {
                    "kind": "tombstone", **_key_fields(t.key), "at": format_date(t.at),
                    "announced": True,
                    "data": {"rule": t.rule, "actor": t.actor, "reason": t.reason}})
            if blocked:
                self._put("blocked", {"kind": "blocked", "data": {"endorsers": {
                    b.endorser: {"kind": b.kind, "at": format_date(b.at), "actor": b.actor,
                                 "reason": b.reason} for b in blocked}}})
            for upload, token_hash, client in uploads:
                data = {"document": base64.b64encode(upload.document).decode(),
                        "subject": upload.subject, "title": upload.title, "client": client}
                if upload.flagged is not None:
                    data["flagged"] = format_date(upload.flagged)
                self._put(f"upload:{key_id(upload.key)}", {
                    "kind": "upload", **_key_fields(upload.key), "state": upload.state,
                    **({"token_hash": token_hash} if token_hash else {}),
                    "submitted": format_date(upload.submitted),
                    "expires": format_date(upload.expires), "data": data})
            counters: dict[str, list] = {}
            for at, recipient, client, key in mails:
                for doc_id in [f"mails:recipient:{recipient.lower()}",
                               *([f"mails:client:{client}"] if client else [])]:
                    counters.setdefault(doc_id, []).append([format_date(at), key_id(key)])
            for doc_id, sent in counters.items():
                self._put(doc_id, {"kind": "mails", "data": {"sent": sent}})
            for name, value in marks.items():
                self.set_mark(name, value)
            self.fresh.refresh()

    def close(self) -> None:
        """Delete the notes of finished publications this process still holds."""
        with self._calls():
            self._delete_notes()

    def _delete_notes(self) -> None:
        for note in self.appender.take_deletes():
            self._delete(note)

    # --- writing ----------------------------------------------------------------------------

    def _append(self, *wanted: tuple[Slots, SlotSource]) -> list[int]:
        """Claim the next slot of each sequence, its source made for its number (with the
        other threads of this process: slots.Appender); the numbers taken."""
        return self.appender.append(list(wanted))

    def _change_source(self, at: datetime, action: str, key: Key) -> SlotSource:
        return lambda number: {"kind": "change", "number": number, **_key_fields(key),
                               "action": action, "at": format_date(at)}

    def _audit_source(self, at: datetime, event: Event, key: Key | None = None) -> SlotSource:
        return lambda number: {"kind": "audit", "number": number, **_key_fields(key),
                               "action": event.action, "at": format_date(at),
                               "data": {"actor": event.actor, "endorser": event.endorser,
                                        "reason": event.reason}}

    def _leaf_source(self, event: logleaf.LogEvent) -> SlotSource:
        leaf = event.leaf()
        leaf_hash = tlog.leaf_hash(leaf)

        def make(number: int) -> dict:
            tiles, last = [], leaf_hash
            for level, tile in tlog.completed_tiles(number + 1):
                first = tile * tlog.TILE_WIDTH
                hashes = self._hashes(level, first, first + tlog.TILE_WIDTH - 1)
                if len(hashes) != tlog.TILE_WIDTH - 1:
                    raise StoreError(f"the log's tile {level}/{tile} is missing hashes")
                last = tlog.root_of([*hashes, last])
                tiles.append([level + 1, tile, base64.b64encode(last).decode()])
            return {"kind": "leaf", "number": number, **_key_fields(
                        None if event.identifier is None else event.key),
                    "action": event.event, "at": event.time,
                    "data": {"leaf": base64.b64encode(leaf).decode(),
                             "hash": base64.b64encode(leaf_hash).decode(), "tiles": tiles}}

        return make

    def _count_mails(self, upload: Upload, client: str, quota: MailQuota | None) -> None:
        """Count the mail an upload will send, for its recipient and its client, each under
        its quota (OverQuota: nothing counted)."""
        quota = quota or MailQuota(per_recipient=0, per_client=0)
        counted = []
        try:
            for doc_id, limit, window, who in self._counters(upload.email, client, quota):
                self._rewrite(doc_id, _counting(upload.key, upload.submitted, limit, window,
                                                who))
                counted.append(doc_id)
        except OverQuota:
            for doc_id in counted:
                self._rewrite(doc_id, _uncounting(upload.key))
            raise

    def _uncount_mails(self, key: Key, client: str) -> None:
        for doc_id, *_ in self._counters(key[1], client, MailQuota()):
            self._rewrite(doc_id, _uncounting(key))

    @staticmethod
    def _counters(recipient: str, client: str, quota: MailQuota) -> Iterator[tuple]:
        yield (f"mails:recipient:{recipient.lower()}", quota.per_recipient,
               quota.recipient_window, recipient)
        if client:
            yield (f"mails:client:{client}", quota.per_client, quota.client_window,
                   f"the client {client}")

    def _rewrite(self, doc_id: str, change: Callable[[dict | None], dict | None]) -> bool:
        """Change one document from what it is now (``change``: the new source, or None to
        leave it), under its sequence number: a write another server made meanwhile makes
        it read and change again. Whether it was written."""
        for _ in range(CAS_ATTEMPTS):
            hit = self._get(doc_id)
            source = change(hit["_source"] if hit else None)
            if source is None:
                return False
            guard = ({"op_type": "create"} if hit is None else
                     {"if_seq_no": hit["_seq_no"], "if_primary_term": hit["_primary_term"]})
            if self._put(doc_id, source, **guard):
                return True
        raise StoreError(f"could not change {doc_id}: {CAS_ATTEMPTS} concurrent changes in a "
                         "row; try again")

    def _refuse_buried(self, entry: Entry) -> dict | None:
        """Raise Refused for an endorser blocked since this thread judged the entry with
        its copy of the list (:meth:`blocked_to_judge`), then Removed for a key under a
        tombstone (the order of the judge and the moderation); else the pair's latest copy
        (None: it has none). All read in one realtime ``mget``. Reading the latest copy
        before the note is written instead of after changes nothing: it was always read
        before the entry is created, and the copy is replaced only under the sequence
        number read (latest.promote reads again when it moved)."""
        key = entry.key
        judged = getattr(self._judged, "version", UNJUDGED)
        self._judged.version = UNJUDGED
        docs = [{"_index": self.index, "_id": f"tombstone:{key_id(key)}"},
                {"_index": self.indices.latest, "_id": pair_id(key[0], key[1]),
                 "_source": ["created"]}]
        if judged is not UNJUDGED:
            docs.append({"_index": self.index, "_id": "blocked"})
        found = self.client.mget(docs=docs)["docs"]
        for doc in found:
            if "error" in doc:
                raise StoreError(f"Elasticsearch could not read {doc['_index']}/{doc['_id']}: "
                                 f"{doc['error'].get('type')}: {doc['error'].get('reason')}")
        buried, current, *blocked = found
        if blocked:
            version, listed = self._remember_blocked(blocked[0] if blocked[0].get("found")
                                                     else None)
            if version != judged:
                check_not_blocked(identify(entry.document),
                                  [Endorser.parse(b.endorser) for b in listed])
        if buried.get("found"):
            raise Removed(_tombstone_of(buried["_source"]))
        return current if current.get("found") else None

    # --- one document -----------------------------------------------------------------------

    def _get(self, doc_id: str) -> dict | None:
        from elasticsearch import NotFoundError
        try:
            return self.client.get(index=self.index, id=doc_id)
        except NotFoundError as exc:
            if exc.error == "index_not_found_exception":
                raise
            return None

    def _put(self, doc_id: str, source: dict, **guard) -> bool:
        """Write a document; False when ``guard`` (op_type=create, if_seq_no) refused it."""
        from elasticsearch import ConflictError
        try:
            self.client.index(index=self.index, id=doc_id, document=source,
                              **guard, **self.indices.writes)
        except ConflictError:
            return False
        return True

    def _delete(self, doc_id: str, **guard) -> bool:
        """Delete a document; False when it was not there (or changed, with ``guard``)."""
        from elasticsearch import ConflictError, NotFoundError
        try:
            self.client.delete(index=self.index, id=doc_id, **guard, **self.indices.writes)
        except NotFoundError as exc:
            if exc.error == "index_not_found_exception":
                raise
            return False
        except ConflictError:
            return False
        return True

    def _search(self, query: dict, sort: list[str], size: int | None = None) -> Iterator[dict]:
        """Every hit of a query on the state index, in ``sort`` order, as fresh as the newest
        slot (slots.Freshness); ``size``: at most that many."""
        with self._calls():
            self.fresh.ensure()
        after = None
        order = [*({name: "asc"} for name in sort), {"key": "asc"}, {"number": "asc"}]
        while True:
            extra = {"search_after": after} if after is not None else {}
            with self._calls():
                hits = self.client.search(index=self.index, query=query, sort=order,
                                          size=size or PAGE, seq_no_primary_term=True,
                                          track_total_hits=False, **extra)["hits"]["hits"]
            yield from hits
            if size is not None or len(hits) < PAGE:
                return
            after = hits[-1]["sort"]


def _counting(key: Key, at: datetime, limit: int, window: timedelta, who: str
              ) -> Callable[[dict | None], dict]:
    """A mail counter's change that adds one mail at ``at`` (OverQuota when ``limit`` mails,
    0: no limit, were sent in the ``window`` before)."""
    def change(source: dict | None) -> dict:
        since = format_date(at - window)
        sent = [mail for mail in (source or {"data": {"sent": []}})["data"]["sent"]
                if mail[0] > since]
        if limit and len(sent) >= limit:
            frees = parse_date(sorted(mail[0] for mail in sent)[-limit]) + window
            raise OverQuota(who, limit, window, int((frees - at).total_seconds()) + 1)
        return {"kind": "mails", "data": {"sent": [*sent, [format_date(at), key_id(key)]]}}
    return change


def _uncounting(key: Key) -> Callable[[dict | None], dict | None]:
    def change(source: dict | None) -> dict | None:
        if source is None:
            return None
        sent = source["data"]["sent"]
        kept = [mail for mail in sent if mail[1] != key_id(key)]
        return None if len(kept) == len(sent) else {**source, "data": {"sent": kept}}
    return change


def _blocked_of(hit: dict | None) -> list[Blocked]:
    """The blocked endorsers of the ``blocked`` document (None: there is none), oldest
    first."""
    listed = hit["_source"]["data"]["endorsers"] if hit else {}
    found = [Blocked(name, value["kind"], parse_date(value["at"]), value["actor"],
                     value["reason"]) for name, value in listed.items()]
    return sorted(found, key=lambda b: (b.at, b.endorser))


def _upload_of(source: dict) -> Upload:
    data = source["data"]
    return Upload(source["identifier"], source["email"], source["created"],
                  base64.b64decode(data["document"]), data["subject"], data["title"],
                  source["state"], parse_date(source["submitted"]),
                  parse_date(source["expires"]),
                  parse_date(data["flagged"]) if data.get("flagged") else None)


def _tombstone_of(source: dict) -> Tombstone:
    data = source["data"]
    return Tombstone(*_key_of(source), data["rule"], parse_date(source["at"]), data["actor"],
                     data["reason"])


def _audit_of(source: dict) -> AuditRecord:
    data = source["data"]
    return AuditRecord(source["number"], parse_date(source["at"]), data["actor"],
                       source["action"], source.get("identifier"), source.get("email"),
                       source.get("created"), data["endorser"], data["reason"])
