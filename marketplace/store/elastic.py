"""The Elasticsearch store: the marketplace on a cluster shared by several app servers.

Two indices, each reached through an alias (``PREFIX-entries``, ``PREFIX-latest``) that points
at one generation (``PREFIX-entries-N``) so that :meth:`ElasticStore.reindex` can build a new
generation beside the old one and swap both aliases in one atomic call:

- ``entries`` holds every accepted entry, document id ``identifier|email|created``: the
  signed document byte for byte (a ``binary`` field: base64 in ``_source``, neither indexed
  nor in doc values) and the fields derived from it. It is the truth; everything else is
  rebuilt from its documents.
- ``latest`` holds, per identifier and endorser (document id ``identifier|email``), a copy of
  the newest entry. Listings of latest entries (the default) search this index, so totals,
  paging and facet counts are plain Elasticsearch counts.

Why a separate "latest" index and not a query-time ``collapse`` on the pair: collapse gives
the right hits, but ``hits.total`` and aggregations count documents, not groups, so totals
and facets of latest entries would be wrong (or approximate with ``cardinality``). Why not a
``latest`` flag on the entries: moving the flag changes two documents, which Elasticsearch
cannot do atomically, so a reader could see two latest entries or none. One document per pair
changes atomically.

Concurrent uploads from several app servers: an entry is created with ``op_type=create`` (two
servers storing the same key: one wins, the other compares bytes: replay or conflict). Then the
pair's latest document is replaced with optimistic concurrency control: read it with its
``_seq_no``/``_primary_term``, keep it if it is as new as ours, else write ours with
``if_seq_no``/``if_primary_term`` (``op_type=create`` when there is none) and retry on a version
conflict. Whatever the interleaving, the pair ends with its newest entry: no lost update.
Every write refreshes the shard it changed before it returns (``refresh=true``; ``wait_for``
would wait up to the 1 s refresh interval), so the next read from any app server sees it; the
translog is fsynced before a write is acknowledged (the default ``index.translog.durability:
request``), so an acknowledged upload survives a crash.

Failure: any transport error or an unavailable cluster becomes :class:`StoreError` (the API
answers 503 with Retry-After, /healthz red). A write is the entry, then the latest copy; if the
cluster fails between the two the upload is answered 503, and the client's retry (a replay of
the same document) repairs the latest copy before answering; ``reindex`` repairs every pair.
The client marks a failed node dead and retries it by itself, so the store recovers when the
cluster returns, with nothing to restart.

Free text follows the SQLite store's FTS5 ``unicode61`` rules: the words are split here into
lowercase letter-and-digit tokens (Latin diacritics removed) and indexed with the
``whitespace`` analyzer, one array element per source field (so a phrase cannot run across
two fields); each query word must match, as a prefix (``prefix`` for one token,
``match_phrase_prefix`` for a word such as ``cloud-init`` that makes several).
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from marketplace.metadata.model import format_date
from marketplace.store.base import (
    FACET_FIELDS,
    FILTER_FIELDS,
    SORT_FIELDS,
    Conflict,
    EndorserStats,
    Entry,
    Page,
    Query,
    Store,
    StoreError,
    query_words,
)

MAPPING_VERSION = 2  # 2: the entry as JSON in `summary`, served without parsing XML
DATE_FORMAT = "strict_date_time_no_millis"
KEYWORD = {"type": "keyword", "ignore_above": 8191}
FLAG = {"type": "boolean"}
DATE = {"type": "date", "format": DATE_FORMAT}
MAPPING = {
    "dynamic": "strict",
    "_meta": {"version": MAPPING_VERSION},
    "properties": {
        "key": {"type": "keyword"},
        **{name: KEYWORD for name in ("identifier", "email", "os", "os_version", "os_arch",
                                      "kind", "type", "format", "hypervisor", "tag", "title",
                                      "subject")},
        "created": DATE, "valid": DATE, "deprecated": FLAG, "web": FLAG, "pdisk": FLAG,
        "bytes": {"type": "long"}, "seq": {"type": "long"},
        "text": {"type": "text", "analyzer": "whitespace", "norms": False},
        "document": {"type": "binary"},
        "summary": {"type": "object", "enabled": False},
    },
}
TEXT_FIELDS = ("identifier", "email", "subject", "title", "description", "os", "tag")
MAX_WINDOW = 10_010_000          # the API's largest offset plus its largest page
FACET_SIZE = 10_000              # values counted per facet (SQLite counts all)
PHRASE_EXPANSIONS = 1024         # terms a phrase's last word may expand to as a prefix
PAGE = 1000                      # documents or buckets per scan request
PROMOTE_ATTEMPTS = 30
DEFAULT_TIMEOUT = 10.0
LONG_TIMEOUT = 300.0
# Refresh the touched shard before a write returns: visible at once to every reader. With
# "wait_for" a write waits for the next periodic refresh (up to refresh_interval, 1 s), which
# would cap one client at about one upload a second for no gain at a marketplace's rate.
REFRESH = "true"
_PREFIX = re.compile(r"[a-z0-9][a-z0-9_.-]{0,150}")
_TOKEN = re.compile(r"[^\W_]+")


class ElasticStore(Store):
    """A store in two Elasticsearch indices, shared by any number of app servers."""

    def __init__(self, client, prefix: str = "marketplace", replicas: str = "0-1",
                 shards: int = 1, url: str = ""):
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"index prefix {prefix!r}: use lowercase letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")
        self.client = client
        self.prefix = prefix
        self.entries = f"{prefix}-entries"
        self.latest = f"{prefix}-latest"
        self.replicas = replicas
        self.shards = shards
        self.url = url
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> ElasticStore:
        """A store on the cluster the ``ELASTICSEARCH_*`` settings name (nothing is asked of
        the cluster yet: the app starts, and answers 503, while it is down)."""
        from elasticsearch import Elasticsearch
        url = settings["ELASTICSEARCH_URL"]
        options = {"request_timeout": float(settings["ELASTICSEARCH_TIMEOUT"]),
                   "max_retries": 2, "retry_on_timeout": False}
        user = settings["ELASTICSEARCH_USERNAME"]
        password = _secret(settings, "ELASTICSEARCH_PASSWORD")
        api_key = _secret(settings, "ELASTICSEARCH_API_KEY")
        if api_key:
            options["api_key"] = api_key
        elif user:
            options["basic_auth"] = (user, password)
        if settings["ELASTICSEARCH_CA_CERTS"]:
            options["ca_certs"] = settings["ELASTICSEARCH_CA_CERTS"]
        if settings["ELASTICSEARCH_VERIFY_CERTS"].lower() in ("false", "0", "no"):
            options["verify_certs"] = False
            options["ssl_show_warn"] = False
        hosts = [u.strip() for u in url.split(",") if u.strip()]
        return cls(Elasticsearch(hosts, **options), settings["ELASTICSEARCH_INDEX_PREFIX"],
                   settings["ELASTICSEARCH_REPLICAS"], int(settings["ELASTICSEARCH_SHARDS"]),
                   url)

    # --- the Store interface --------------------------------------------------------------

    def add(self, entry: Entry) -> bool:
        identifier, email, created = entry.key
        pair = pair_id(identifier, email)
        with self._calls():
            current = self._latest_of(pair)
            latest = current["_source"]["created"] if current else ""
            stored = None
            if latest >= created:  # a replay, a changed copy, or an older entry
                stored = self._document(entry.key)
                if stored is None and latest > created:
                    raise Conflict(f"a newer entry ({latest}) of {identifier} by {email} is "
                                   f"stored; this one is from {created}")
            if stored is None:
                source = fields(entry, time.time_ns())
                if self._create(entry.key, source):
                    self._promote(source, current)
                    return True
                stored = self._document(entry.key)  # another server stored that key first
            if stored != entry.document:
                raise Conflict(f"another document is stored for {identifier} by {email} at "
                               f"{created}")
            self._repair(entry)
            return False

    def _repair(self, entry: Entry) -> None:
        """A replay finishes what an interrupted add left: the pair's latest copy."""
        current = self._latest_of(pair_id(entry.identifier, entry.email))
        if current is None or current["_source"]["created"] < entry.key[2]:
            self._promote(fields(entry, self._seq(entry.key)), current)

    def get(self, identifier: str, email: str, created: datetime) -> Entry | None:
        with self._calls():
            stored = self._document((identifier, email, format_date(created)))
        return Entry.from_document(stored) if stored is not None else None

    def search(self, query: Query) -> Page:
        index = self.latest if query.latest_only and query.created is None else self.entries
        body = search_body(query)
        with self._calls():
            found = self.client.search(index=index, **body)
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
            found.append(EndorserStats(bucket["key"]["email"],
                                       subjects[0]["key"] if subjects else None,
                                       bucket["doc_count"],
                                       datetime.fromtimestamp(bucket["latest"]["value"] / 1000,
                                                              UTC)))
        return found

    def tags(self, email: str) -> dict[str, int]:
        return {b["key"]["tag"]: b["doc_count"]
                for b in self._buckets("tag", {"term": {"email": email}}, {})}

    def remove(self, identifier: str, email: str, created: datetime) -> bool:
        from elasticsearch import NotFoundError
        key = (identifier, email, format_date(created))
        with self._calls():
            try:
                self.client.delete(index=self.entries, id=entry_id(key), refresh=REFRESH)
            except NotFoundError as exc:
                if _missing_index(exc):
                    raise
                return False
            self._settle_latest(identifier, email)
        return True

    def reindex(self) -> int:
        """Rebuild both indices, with the current mapping, from the stored documents: a new
        generation filled beside the old one, then both aliases swapped at once. Uploads made
        meanwhile are copied over after the swap; a removal made meanwhile may come back
        (``stratus-marketplace reindex`` then removes it again: its tombstone remains)."""
        with self._calls(ensure=False):
            if not self.client.indices.exists_alias(name=self.entries):
                self._ensure()
                return 0
            count = self._rebuild()
            self._ready = True
            return count

    def count(self) -> int:
        with self._calls():
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
        return _generation(name) << 48 | writes

    def healthy(self) -> bool:
        try:
            with self._calls():
                health = self.client.options(request_timeout=5).cluster.health(
                    index=[self.entries, self.latest], timeout="2s")
        except Exception:  # any failure to answer is "not healthy", never a 500
            return False
        return not health["timed_out"] and health["status"] in ("green", "yellow")

    def close(self) -> None:
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
            return self._mapping_version()

    def _mapping_version(self) -> int:
        mappings = self.client.indices.get_mapping(index=self.entries)
        return min(m["mappings"].get("_meta", {}).get("version", 0) for m in mappings.values())

    def drop(self) -> None:
        """Delete every index of this prefix (tests; a site starting over)."""
        with self._calls(ensure=False):
            names = list(self.client.indices.get(index=f"{self.entries}-*,{self.latest}-*",
                                                 expand_wildcards="all"))
            if names:  # wildcards may not delete (action.destructive_requires_name)
                self.client.options(ignore_status=404).indices.delete(index=names)
        self._ready = False

    def _ensure(self, migrate: bool = False) -> None:
        exists = self.client.indices.exists_alias(name=self.entries)
        if exists and not self.client.indices.exists_alias(name=self.latest):
            raise StoreError(f"the index alias {self.latest} is missing beside {self.entries} "
                             "(another server may be creating it now); if this lasts, run "
                             "`stratus-marketplace reindex` to rebuild it")
        if not exists:
            self._create_generation(1, aliases=True)
            self._ready = True
            return
        version = self._mapping_version()
        if version > MAPPING_VERSION:
            raise StoreError(f"the indices {self.prefix}-* have mapping version {version}, "
                             f"newer than this marketplace's ({MAPPING_VERSION}): upgrade it")
        if version < MAPPING_VERSION:
            if not migrate:
                raise StoreError(f"the indices {self.prefix}-* have mapping version {version}; "
                                 f"this marketplace needs {MAPPING_VERSION}: run "
                                 "`stratus-marketplace init-store` to migrate them")
            self._rebuild()
        self._ready = True

    def _create_generation(self, number: int, aliases: bool) -> tuple[str, str]:
        """Create ``PREFIX-entries-N`` and ``PREFIX-latest-N`` (with their aliases when
        ``aliases``; two servers doing it at once is fine: one creates, one finds them)."""
        from elasticsearch import BadRequestError
        names = (f"{self.entries}-{number}", f"{self.latest}-{number}")
        settings = {"number_of_shards": self.shards, "max_result_window": MAX_WINDOW}
        if "-" in self.replicas:
            settings["auto_expand_replicas"] = self.replicas
        else:
            settings["number_of_replicas"] = int(self.replicas)
        for name, alias in zip(names, (self.entries, self.latest), strict=True):
            try:
                self.client.indices.create(index=name, settings=settings, mappings=MAPPING,
                                           aliases={alias: {}} if aliases else None,
                                           wait_for_active_shards="1")
            except BadRequestError as exc:
                if exc.error != "resource_already_exists_exception" or not aliases:
                    raise
        return names

    def _generations(self) -> tuple[list[str], list[str]]:
        """The indices behind each alias."""
        latest = self.client.options(ignore_status=404).indices.get_alias(name=self.latest)
        return (list(self.client.indices.get_alias(name=self.entries)),
                [name for name in latest if name not in ("error", "status")])

    # --- writing ----------------------------------------------------------------------------

    def _create(self, key: tuple[str, str, str], source: dict) -> bool:
        """Create the entry document; False when another server created that key first."""
        from elasticsearch import ConflictError
        try:
            self.client.index(index=self.entries, id=entry_id(key), document=source,
                              op_type="create", refresh=REFRESH, require_alias=True)
        except ConflictError:
            return False
        return True

    def _promote(self, source: dict, current: dict | None = None) -> None:
        """Make ``source`` the latest of its pair unless a newer entry already is
        (``current``: the pair's latest copy as just read, saving the first read)."""
        pair = pair_id(source["identifier"], source["email"])
        for attempt in range(PROMOTE_ATTEMPTS):
            if attempt or current is None:
                current = self._latest_of(pair)
            if current is not None and current["_source"]["created"] >= source["created"]:
                return
            if self._replace_latest(pair, source, current):
                return
            _backoff(attempt)
        raise StoreError(f"could not update the latest entry of {source['identifier']} by "
                         f"{source['email']}: {PROMOTE_ATTEMPTS} concurrent changes in a row")

    def _settle_latest(self, identifier: str, email: str) -> None:
        """After a removal: the pair's latest copy is its newest remaining entry, or none."""
        from elasticsearch import ConflictError, NotFoundError
        pair = pair_id(identifier, email)
        for attempt in range(PROMOTE_ATTEMPTS):
            current = self._latest_of(pair)
            newest = self._newest(identifier, email, full=True)
            try:
                if newest is None and current is not None:
                    self.client.delete(index=self.latest, id=pair, refresh=REFRESH,
                                       if_seq_no=current["_seq_no"],
                                       if_primary_term=current["_primary_term"])
                    return
                if newest is None or (current is not None and
                                      current["_source"]["created"] == newest["created"]):
                    return
            except (ConflictError, NotFoundError):
                _backoff(attempt)
                continue
            if self._replace_latest(pair, newest, current):
                return
            _backoff(attempt)
        raise StoreError(f"could not settle the latest entry of {identifier} by {email}")

    def _replace_latest(self, pair: str, source: dict, current: dict | None) -> bool:
        """Write the pair's latest copy if nobody changed it since ``current`` was read."""
        from elasticsearch import ConflictError
        guard = ({"op_type": "create"} if current is None else
                 {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]})
        try:
            self.client.index(index=self.latest, id=pair, document=source, refresh=REFRESH,
                              require_alias=True, **guard)
        except ConflictError:
            return False
        return True

    # --- reading ----------------------------------------------------------------------------

    def _document(self, key: tuple[str, str, str]) -> bytes | None:
        source = self._get(self.entries, entry_id(key), ["document"])
        return None if source is None else base64.b64decode(source["_source"]["document"])

    def _seq(self, key: tuple[str, str, str]) -> int:
        source = self._get(self.entries, entry_id(key), ["seq"])
        return source["_source"].get("seq", 0) if source else 0

    def _latest_of(self, pair: str) -> dict | None:
        return self._get(self.latest, pair, ["created"])

    def _get(self, index: str, doc_id: str, include: list[str]) -> dict | None:
        from elasticsearch import NotFoundError
        try:
            return self.client.get(index=index, id=doc_id, source_includes=include)
        except NotFoundError as exc:
            if _missing_index(exc):
                raise
            return None

    def _newest(self, identifier: str, email: str, full: bool = False) -> dict | None:
        """The newest stored entry of a pair (its ``created``, or every field)."""
        found = self.client.search(
            index=self.entries, size=1, source=True if full else ["created"],
            query={"bool": {"filter": [{"term": {"identifier": identifier}},
                                       {"term": {"email": email}}]}},
            sort=[{"created": "desc"}])["hits"]["hits"]
        return found[0]["_source"] if found else None

    def _buckets(self, name: str, query: dict, aggs: dict) -> Iterator[dict]:
        """Every bucket of a terms grouping over all entries, in key order."""
        after = None
        while True:
            composite = {"size": PAGE, "sources": [{name: {"terms": {"field": name}}}]}
            if after is not None:
                composite["after"] = after
            with self._calls():
                found = self.client.search(index=self.entries, size=0, query=query,
                                           aggs={"groups": {"composite": composite,
                                                            "aggs": aggs}})
            groups = found["aggregations"]["groups"]
            yield from groups["buckets"]
            after = groups.get("after_key")
            if after is None or len(groups["buckets"]) < PAGE:
                return

    def scan(self, index: str | None = None, source: list[str] | None = None) -> Iterator[dict]:
        """Every document's ``_source`` of an index (the entries by default), by key."""
        after = None
        while True:
            extra = {"search_after": after} if after is not None else {}
            found = self.client.options(request_timeout=LONG_TIMEOUT).search(
                index=index or self.entries, size=PAGE, sort=[{"key": "asc"}],
                source=source if source is not None else True, query={"match_all": {}},
                track_total_hits=False, **extra)["hits"]["hits"]
            for hit in found:
                yield hit["_source"]
            if len(found) < PAGE:
                return
            after = found[-1]["sort"]

    # --- bulk: reindex, migration -------------------------------------------------------------

    def _rebuild(self) -> int:
        old_entries, old_latest = self._generations()
        number = 1 + max(_generation(name) for name in (*old_entries, *old_latest))
        new_entries, new_latest = self._create_generation(number, aliases=False)
        try:
            newest: dict[str, dict] = {}
            count = self._copy(old_entries, new_entries, newest)
            self._bulk(({"_index": new_latest, "_id": pair, "_source": source}
                        for pair, source in newest.items()), "index")
            self.client.indices.refresh(index=[new_entries, new_latest])
            actions = [{"remove": {"index": name, "alias": alias}}
                       for names, alias in ((old_entries, self.entries),
                                            (old_latest, self.latest)) for name in names]
            actions += [{"add": {"index": new_entries, "alias": self.entries}},
                        {"add": {"index": new_latest, "alias": self.latest}}]
            self.client.indices.update_aliases(actions=actions)
        except BaseException:
            self.client.options(ignore_status=404).indices.delete(
                index=[new_entries, new_latest])
            raise
        count += self._catch_up(old_entries, new_entries, count)
        self.client.options(ignore_status=404).indices.delete(index=old_entries + old_latest)
        return count

    def _copy(self, sources: list[str], target: str, newest: dict[str, dict]) -> int:
        """Re-derive every entry of ``sources`` into ``target``; newest entry per pair."""
        count = 0

        def actions() -> Iterator[dict]:
            nonlocal count
            for index in sources:
                for old in self.scan(index, ["document", "seq"]):
                    entry = Entry.from_document(base64.b64decode(old["document"]))
                    source = fields(entry, old.get("seq", 0))
                    pair = pair_id(source["identifier"], source["email"])
                    if pair not in newest or newest[pair]["created"] < source["created"]:
                        newest[pair] = source
                    count += 1
                    yield {"_index": target, "_id": source["key"], "_source": source}

        self._bulk(actions(), "create")
        return count

    def _catch_up(self, old_entries: list[str], new_entries: str, copied: int) -> int:
        """Copy the entries uploaded into the old generation while it was being copied."""
        now = sum(self.client.count(index=name)["count"] for name in old_entries)
        if now <= copied:
            return 0
        added = 0
        for index in old_entries:
            for old in self.scan(index, ["document", "seq"]):
                entry = Entry.from_document(base64.b64decode(old["document"]))
                source = fields(entry, old.get("seq", 0))
                if self._create(entry.key, source):
                    self._promote(source)
                    added += 1
        return added

    def import_entries(self, rows: Iterable[tuple[Entry, int]],
                       progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Add many entries at once (``migrate``): bulk-create them, then bring each pair's
        latest copy up to date with the same optimistic concurrency as :meth:`add`. Rows are
        (entry, sequence number for ties). Returns (new, already there); raises Conflict for
        a different document under a stored key. Visible once it returns."""
        from elasticsearch.helpers import streaming_bulk
        new = same = 0
        with self._calls():
            self._ensure()
            for chunk in _chunks(rows, 500):
                sources = {entry_id(e.key): (e, fields(e, seq)) for e, seq in chunk}
                created = []
                for ok, item in streaming_bulk(
                        self.client.options(request_timeout=LONG_TIMEOUT),
                        ({"_op_type": "create", "_index": self.entries, "_id": doc_id,
                          "_source": source} for doc_id, (_, source) in sources.items()),
                        raise_on_error=False, max_retries=3):
                    result = item["create"]
                    if ok:
                        created.append(sources[result["_id"]][1])
                    elif result.get("status") == 409:
                        entry = sources[result["_id"]][0]
                        if self._document(entry.key) != entry.document:
                            raise Conflict(f"another document is stored for "
                                           f"{' '.join(entry.key)}")
                        same += 1
                    else:
                        raise StoreError(f"Elasticsearch refused {result['_id']}: "
                                         f"{result.get('error')}")
                self._promote_many(created)
                new += len(created)
                if progress:
                    progress(new + same)
            self.client.indices.refresh(index=[self.entries, self.latest])
        return new, same

    def _promote_many(self, sources: list[dict]) -> None:
        """:meth:`_promote` for many entries: one mget, one bulk, then one by one for the
        pairs that someone else changed meanwhile."""
        from elasticsearch.helpers import streaming_bulk
        best: dict[str, dict] = {}
        for source in sources:
            pair = pair_id(source["identifier"], source["email"])
            if pair not in best or best[pair]["created"] < source["created"]:
                best[pair] = source
        if not best:
            return
        found = self.client.mget(index=self.latest, ids=list(best),
                                 source_includes=["created"])["docs"]
        actions = []
        for doc in found:
            source = best[doc["_id"]]
            if not doc.get("found"):
                actions.append({"_op_type": "create", "_id": doc["_id"], "_source": source})
            elif doc["_source"]["created"] < source["created"]:
                actions.append({"_op_type": "index", "_id": doc["_id"], "_source": source,
                                "if_seq_no": doc["_seq_no"],
                                "if_primary_term": doc["_primary_term"]})
        for ok, item in streaming_bulk(self.client, ({"_index": self.latest, **a}
                                                     for a in actions),
                                       raise_on_error=False, max_retries=3):
            if not ok:
                result = next(iter(item.values()))
                if result.get("status") != 409:
                    raise StoreError(f"Elasticsearch refused {result['_id']}: "
                                     f"{result.get('error')}")
                self._promote(best[result["_id"]])

    def _bulk(self, actions: Iterable[dict], op_type: str) -> None:
        from elasticsearch.helpers import streaming_bulk
        for ok, item in streaming_bulk(self.client.options(request_timeout=LONG_TIMEOUT),
                                       ({"_op_type": op_type, **a} for a in actions),
                                       raise_on_error=False, max_retries=3, chunk_size=500):
            if not ok:
                raise StoreError(f"Elasticsearch refused a document: {item}")

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
            if not _missing_index(exc):
                raise
            self._ready = False
            raise StoreError(f"the Elasticsearch indices {self.prefix}-* are missing; they are "
                             "created again on the next request (or run "
                             "`stratus-marketplace init-store`)") from exc
        except TransportError as exc:
            raise StoreError(f"Elasticsearch at {self.url or 'its address'} does not answer: "
                             f"{type(exc).__name__}: {exc.message}") from exc
        except ApiError as exc:
            if exc.status_code in (401, 403):
                raise StoreError(f"Elasticsearch at {self.url or 'its address'} refused this "
                                 f"marketplace's credentials ({exc.status_code} {exc.error}): "
                                 "check the MARKETPLACE_ELASTICSEARCH_* settings") from exc
            if exc.status_code in (408, 429) or exc.status_code >= 500:
                raise StoreError(f"Elasticsearch at {self.url or 'its address'} cannot serve "
                                 f"now ({exc.status_code} {exc.error})") from exc
            raise


# --- documents ------------------------------------------------------------------------------


def entry_id(key: tuple[str, str, str]) -> str:
    return "|".join(key)


def pair_id(identifier: str, email: str) -> str:
    return f"{identifier}|{email}"


def fields(entry: Entry, seq: int) -> dict:
    """The indexed fields of an entry (its document included), with ``seq`` as the order of
    arrival that breaks ties in sorting, as the SQLite store's row id does."""
    a = entry.appliance
    identifier, email, created = entry.key
    locations = a.locations
    values = {"identifier": identifier, "email": email, "subject": a.endorsement.subject,
              "title": a.title, "description": a.description, "os": a.os, "tag": a.tag}
    source = {
        "key": entry_id(entry.key), "identifier": identifier, "email": email,
        "created": created, "valid": format_date(a.valid) if a.valid else None,
        "deprecated": a.deprecated is not None, "os": a.os, "os_version": a.os_version,
        "os_arch": a.os_arch, "kind": a.kind, "type": a.type, "format": a.format,
        "hypervisor": a.hypervisor, "tag": a.tag, "title": a.title,
        "subject": a.endorsement.subject, "bytes": a.bytes, "seq": seq,
        "web": any(not u.startswith("pdisk:") for u in locations),
        "pdisk": any(u.startswith("pdisk:") for u in locations),
        "text": [" ".join(tokens(values[name])) for name in TEXT_FIELDS if values[name]],
        "document": base64.b64encode(entry.document).decode("ascii"),
        "summary": entry.as_dict(),
    }
    return {k: v for k, v in source.items() if v is not None}


def tokens(text: str) -> list[str]:
    """Lowercase runs of letters and digits, Latin diacritics removed (FTS5 ``unicode61``)."""
    folded = []
    for char in unicodedata.normalize("NFD", text.lower()):
        if unicodedata.combining(char) and folded and _latin(folded[-1]):
            continue
        folded.append(char)
    return _TOKEN.findall(unicodedata.normalize("NFC", "".join(folded)))


def _latin(char: str) -> bool:
    return char < "\u0250" or "\u1e00" <= char <= "\u1eff"


# --- queries --------------------------------------------------------------------------------


def search_body(query: Query) -> dict:
    """The search request of a query: constraints on facet fields go to ``post_filter`` when
    facets are asked, so that each facet is counted without its own constraint."""
    plain, faceted = constraints(query)
    order = "desc" if query.descending else "asc"
    sort = query.sort if query.sort in SORT_FIELDS else "created"
    body = {
        "from": query.offset, "size": query.limit, "track_total_hits": True,
        "source": ["document", "summary"],
        "sort": [{sort: {"order": order, "missing": "_last" if query.descending else "_first"}},
                 {"seq": {"order": order}}, {"key": {"order": order}}],
    }
    if query.facets:
        body["query"] = {"bool": {"filter": plain}}
        body["post_filter"] = {"bool": {"filter": list(faceted.values())}}
        body["aggs"] = {name: {"filter": {"bool": {"filter": [
            clause for other, clause in faceted.items() if other != name]}},
            "aggs": {"values": facet_agg(name, query.now)}} for name in FACET_FIELDS}
    else:
        body["query"] = {"bool": {"filter": plain + list(faceted.values())}}
    return body


def constraints(query: Query) -> tuple[list[dict], dict[str, dict]]:
    """The query's clauses: those on non-facet fields, and those on facets by facet name."""
    plain, faceted = [], {}
    for name, value in query.filters.items():
        if name in FILTER_FIELDS and value:
            clause = {"term": {name: value}}
            if name in FACET_FIELDS:
                faceted[name] = clause
            else:
                plain.append(clause)
    if query.status != "all":
        faceted["status"] = status_clause(query.status, query.now)
    if query.location in ("web", "pdisk"):
        plain.append({"term": {query.location: True}})
    if query.created is not None:
        plain.append({"term": {"created": format_date(query.created)}})
    for name, bound, operator in (("created", query.created_from, "gte"),
                                  ("created", query.created_to, "lte"),
                                  ("valid", query.valid_from, "gte"),
                                  ("valid", query.valid_to, "lte")):
        if bound is not None:
            plain.append({"range": {name: {operator: format_date(bound)}}})
    plain.extend(text_clause(word) for word in query_words(query.q or ""))
    return plain, faceted


def text_clause(word: str) -> dict:
    """One word of free text: its tokens, in order, the last as a prefix, in one field."""
    parts = tokens(word)
    if not parts:
        return {"match_none": {}}
    if len(parts) == 1:
        return {"prefix": {"text": parts[0]}}
    return {"match_phrase_prefix": {"text": {"query": " ".join(parts), "analyzer": "whitespace",
                                             "max_expansions": PHRASE_EXPANSIONS}}}


def status_clause(status: str, now: datetime) -> dict:
    """Deprecated, else expired (``valid`` passed at ``now``), else valid."""
    expired = {"range": {"valid": {"lt": format_date(now)}}}
    deprecated = {"term": {"deprecated": True}}
    if status == "deprecated":
        return deprecated
    if status == "expired":
        return {"bool": {"filter": [expired], "must_not": [deprecated]}}
    return {"bool": {"must_not": [deprecated, expired]}}


def facet_agg(name: str, now: datetime) -> dict:
    if name == "status":
        return {"filters": {"filters": {s: status_clause(s, now)
                                        for s in ("valid", "expired", "deprecated")}}}
    return {"terms": {"field": name, "size": FACET_SIZE,
                      "order": [{"_count": "desc"}, {"_key": "asc"}]}}


def read_facets(aggregations: dict) -> dict[str, dict[str, int]]:
    facets = {}
    for name in FACET_FIELDS:
        values = aggregations[name]["values"]
        if name == "status":
            counts = sorted(((-b["doc_count"], s) for s, b in values["buckets"].items()
                             if b["doc_count"]))
            facets[name] = {s: -c for c, s in counts}
        else:
            facets[name] = {b["key"]: b["doc_count"] for b in values["buckets"]}
    return facets


# --- helpers --------------------------------------------------------------------------------


def _missing_index(exc) -> bool:
    return exc.error == "index_not_found_exception"


def _generation(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _secret(settings: dict[str, str], key: str) -> str:
    """A secret from its setting, else from the file its ``_FILE`` setting names."""
    if settings[key]:
        return settings[key]
    path = settings[key + "_FILE"]
    return Path(path).read_text(encoding="utf-8").strip() if path else ""
