"""The Elasticsearch store: the marketplace on a cluster shared by several app servers.

Split as Warehouse splits its search: this module is the service, :class:`ElasticStore`,
which implements the :class:`Store` contract by calling on

- ``client``: the official client built from the settings, and what its errors mean;
- ``indices``: the mapping, the generations behind the ``entries`` and ``latest`` aliases,
  the mapping version check, document reads;
- ``documents``: what an entry becomes in the indices (ids, fields, free-text tokens);
- ``latest``: writing an entry and keeping its pair's latest copy, under concurrency;
- ``bulk``: rebuilding the indices (reindex, migration) and importing many entries;
- ``queries``: a :class:`Query` as a search request, pure and testable without a cluster;
- ``state``: the shared state beside the entries (:attr:`ElasticStore.state`), over
  ``slots``: the numbered, gapless sequences (change feed, audit log, transparency log) and
  how searches learn that they must refresh; ``serving``: the entries' serving leaves, kept
  by following the log.

Failure: any transport error or an unavailable cluster becomes :class:`StoreError` (the API
answers 503 with Retry-After, /healthz red). A write is the entry, then the latest copy; if the
cluster fails between the two the upload is answered 503, and the client's retry (a replay of
the same document) repairs the latest copy before answering; ``reindex`` repairs every pair.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from marketplace.metadata.model import format_date
from marketplace.store.base import EndorserStats, Entry, Page, Query, Store, StoreError, is_new
from marketplace.store.elastic import bulk, latest
from marketplace.store.elastic import health as cluster_health
from marketplace.store.elastic.client import connect, missing_index, store_error
from marketplace.store.elastic.documents import fields, pair_id
from marketplace.store.elastic.indices import PAGE, Indices, generation_of
from marketplace.store.elastic.queries import read_facets, search_body
from marketplace.store.elastic.slots import Freshness
from marketplace.store.elastic.state import ElasticState
from marketplace.store.state import Key


class ElasticStore(Store):
    """A store in two Elasticsearch indices, shared by any number of app servers."""

    def __init__(self, client, prefix: str = "marketplace", replicas: str = "0-1",
                 shards: int = 1, url: str = "", active_shards: str = "all",
                 write_timeout: str = "5s", translog: str = "auto"):
        self.indices = Indices(client, prefix, replicas, shards, active_shards, write_timeout,
                               translog)
        self.client = client
        self.prefix = prefix
        self.entries = self.indices.entries
        self.latest = self.indices.latest
        self.url = url
        self._ready = False
        self._lock = threading.Lock()
        self._state = ElasticState(self.indices, self._publish, self._take_out, self._calls)
        # Searches of the entries refresh them once the change feed moved (a publication
        # writes without a refresh, then takes its feed slot).
        self._fresh = Freshness(client, [self.entries, self.latest], [self._state.feed])

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> ElasticStore:
        """A store on the cluster the ``ELASTICSEARCH_*`` settings name (nothing is asked of
        the cluster yet: the app starts, and answers 503, while it is down). A write gives
        up waiting for its copies after half the client's timeout, so that the cluster
        answers (503) before the client stops listening and nothing is written unseen."""
        timeout = float(settings["ELASTICSEARCH_TIMEOUT"])
        return cls(connect(settings), settings["ELASTICSEARCH_INDEX_PREFIX"],
                   settings["ELASTICSEARCH_REPLICAS"], int(settings["ELASTICSEARCH_SHARDS"]),
                   settings["ELASTICSEARCH_URL"],
                   settings["ELASTICSEARCH_WAIT_FOR_ACTIVE_SHARDS"],
                   f"{max(1, int(timeout * 500))}ms",
                   settings["ELASTICSEARCH_TRANSLOG_DURABILITY"])

    @property
    def state(self) -> ElasticState:
        return self._state

    # --- the Store interface --------------------------------------------------------------

    def add(self, entry: Entry) -> bool:
        """Store an entry, visible to every search when this returns (a refresh: no feed
        slot announces it; publications go through :meth:`ElasticState.publish`)."""
        return self._add(entry, latest.REFRESH)

    def _publish(self, entry: Entry, current: dict | None) -> bool:
        """:meth:`add` for a publication, which announces itself in the feed (``current``:
        the pair's latest copy, read by the publication with its tombstone)."""
        return self._add(entry, latest.NO_REFRESH, current)

    def _add(self, entry: Entry, refresh: str, current: dict | None = latest.UNREAD) -> bool:
        identifier, email, created = entry.key
        with self._calls():
            if current is latest.UNREAD:
                current = latest.latest_of(self.indices, pair_id(identifier, email))
            newest = current["_source"]["created"] if current else None
            # Only a pair with an entry as new as this one can hold its key (or an add
            # interrupted before its latest copy: then creating it finds the key taken).
            stored = self.indices.document(entry.key) if newest and newest >= created else None
            if is_new(entry, stored, newest):
                source = fields(entry, time.time_ns())
                if latest.create(self.indices, entry.key, source, refresh):
                    latest.promote(self.indices, source, current, refresh)
                    return True
                latest.judge_taken(self.indices, entry)
            self._repair(entry, refresh)
            return False

    def _repair(self, entry: Entry, refresh: str) -> None:
        """A replay finishes what an interrupted add left: the pair's latest copy."""
        current = latest.latest_of(self.indices, pair_id(entry.identifier, entry.email))
        if current is None or current["_source"]["created"] < entry.key[2]:
            latest.promote(self.indices, fields(entry, self.indices.seq(entry.key)), current,
                           refresh)

    def _take_out(self, key: Key) -> bytes | None:
        """Remove a stored entry for the state (a withdrawal, a publication a removal
        overtook); the document it held, None when none was stored. The pair's latest copy
        is settled either way: a publication racing the removal may have promoted its entry
        after the removal settled the pair."""
        with self._calls():
            stored = self.indices.document(key)
            if stored is not None and latest.delete(self.indices, key):
                return stored
            latest.settle(self.indices, key[0], key[1])
            return None

    def newest(self, identifier: str, email: str) -> str | None:
        with self._calls():
            current = latest.latest_of(self.indices, pair_id(identifier, email))
        return current["_source"]["created"] if current else None

    def get(self, identifier: str, email: str, created: datetime) -> Entry | None:
        with self._calls():
            stored = self.indices.document((identifier, email, format_date(created)))
        return Entry.from_document(stored) if stored is not None else None

    def search(self, query: Query) -> Page:
        index = self.latest if query.latest_only and query.created is None else self.entries
        with self._calls():
            self._fresh.ensure()
            found = self.client.search(index=index, **search_body(query))
        entries = [Entry.from_dict(base64.b64decode(hit["_source"]["document"]),
                                   hit["_source"]["summary"]) for hit in found["hits"]["hits"]]
        facets = read_facets(found.get("aggregations", {})) if query.facets else {}
        return Page(entries, found["hits"]["total"]["value"], facets)

    def endorsers(self) -> list[EndorserStats]:
        aggs = {"subject": {"terms": {"field": "subject", "size": 1, "order": {"_key": "desc"}}},
                "latest": {"max": {"field": "created"}}}
        found = []
        for bucket in self._buckets("email", {"match_all": {}}, aggs):
            subjects = bucket["subject"]["buckets"]
            found.append(EndorserStats(
                bucket["key"]["email"], subjects[0]["key"] if subjects else None,
                bucket["doc_count"], datetime.fromtimestamp(bucket["latest"]["value"] / 1000, UTC)))
        return found

    def tags(self, email: str) -> dict[str, int]:
        return {b["key"]["tag"]: b["doc_count"]
                for b in self._buckets("tag", {"term": {"email": email}}, {})}

    def remove(self, identifier: str, email: str, created: datetime) -> bool:
        with self._calls():
            return latest.delete(self.indices, (identifier, email, format_date(created)))

    def reindex(self) -> int:
        """Rebuild both indices, with the current mapping, from the stored documents: a new
        generation filled beside the old one, then both aliases swapped at once. Uploads made
        meanwhile are copied over after the swap; a removal made meanwhile may come back
        (``stratus-marketplace reindex`` then removes it again: its tombstone remains)."""
        with self._calls(ensure=False):
            if not self.client.indices.exists_alias(name=self.entries):
                self._ensure()
                return 0
            count = bulk.rebuild(self.indices)
            self._ready = True
            return count

    def count(self) -> int:
        with self._calls():
            self._fresh.ensure()
            return self.client.count(index=self.entries)["count"]

    def change_serial(self) -> int:
        """The entries index's generation, then the sum of its primary shards' highest
        sequence numbers: every write and delete takes the next one, and a reindex moves to
        a higher generation."""
        with self._calls():
            stats = self.client.indices.stats(index=self.entries, level="shards")
        name, index = next(iter(stats["indices"].items()))
        writes = sum(copy["seq_no"]["max_seq_no"] + 1 for copies in index["shards"].values()
                     for copy in copies if copy["routing"]["primary"])
        return generation_of(name) << 48 | writes

    def health(self) -> dict:
        """Whether the cluster serves, its status, and which configured node is missing
        (:mod:`.health`)."""
        try:
            with self._calls():
                answers = cluster_health.ask(self.client, [self.entries, self.latest,
                                                          self.indices.state])
        except Exception:  # any failure to answer is "unavailable", never a 500
            answers = None
        return cluster_health.report(self.url, answers)

    def healthy(self) -> bool:
        return self.health()["store"]

    def close(self) -> None:
        with contextlib.suppress(StoreError):  # notes left are finished by the next repair
            self._state.close()
        self.client.close()

    # --- setting up -------------------------------------------------------------------------

    def init(self, migrate: bool = True) -> int:
        """Create the indices if they are missing, and (``migrate``) move indices of an older
        mapping to the current one by reindexing; how many entries the store holds."""
        with self._calls(ensure=False):
            self._ensure(migrate=migrate)
            return self.client.count(index=self.entries)["count"]

    def mapping_version(self) -> int | None:
        """The mapping version of the live entries index; None when there is none."""
        with self._calls(ensure=False):
            if not self.client.indices.exists_alias(name=self.entries):
                return None
            return self.indices.mapping_version()

    def drop(self) -> None:
        """Delete every index of this prefix (tests; a site starting over)."""
        with self._calls(ensure=False):
            self.indices.drop()
        self._ready = False

    def import_entries(self, rows: Iterable[tuple[Entry, int]],
                       progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Add many entries at once (``migrate``): see :func:`bulk.import_entries`. Visible
        once it returns."""
        with self._calls():
            self._ensure()
            return bulk.import_entries(self.indices, rows, progress)

    def _ensure(self, migrate: bool = False) -> None:
        if not self.indices.exist():
            self.indices.create_generation(1, aliases=True)
        elif self.indices.need_migration(migrate):
            bulk.rebuild(self.indices)
        self.indices.ensure_state(migrate)
        self.indices.ensure_durability()
        self.indices.wait_ready()
        self._ready = True

    # --- reading groups ---------------------------------------------------------------------

    def _buckets(self, name: str, query: dict, aggs: dict) -> Iterator[dict]:
        """Every bucket of a terms grouping over all entries, in key order."""
        after = None
        while True:
            composite = {"size": PAGE, "sources": [{name: {"terms": {"field": name}}}]}
            if after is not None:
                composite["after"] = after
            with self._calls():
                self._fresh.ensure()
                found = self.client.search(index=self.entries, size=0, query=query,
                                           aggs={"groups": {"composite": composite,
                                                            "aggs": aggs}})
            groups = found["aggregations"]["groups"]
            yield from groups["buckets"]
            after = groups.get("after_key")
            if after is None or len(groups["buckets"]) < PAGE:
                return

    # --- errors -----------------------------------------------------------------------------

    @contextmanager
    def _calls(self, ensure: bool = True) -> Iterator[None]:
        """Run calls to the cluster, with the indices checked (created if missing) once per
        process; a transport failure, an unavailable cluster or missing indices become
        StoreError."""
        from elasticsearch import ApiError, NotFoundError, TransportError
        try:
            if ensure and not self._ready:
                with self._lock:
                    if not self._ready:
                        self._ensure()
            yield
        except NotFoundError as exc:
            if not missing_index(exc):
                raise
            self._ready = False
            raise StoreError(f"the Elasticsearch indices {self.prefix}-* are missing; they are "
                             "created again on the next request (or run "
                             "`stratus-marketplace init-store`)") from exc
        except (TransportError, ApiError) as exc:
            error = store_error(exc, self.url)
            if error is None:
                raise
            raise error from exc
