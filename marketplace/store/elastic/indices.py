"""The indices of one prefix: mapping, generations and aliases, the check of the mapping
version, and reads of single documents or of every document.

Two indices, each reached through an alias (``PREFIX-entries``, ``PREFIX-latest``) that points
at one generation (``PREFIX-entries-N``), so that a rebuild (bulk.py) can fill a new
generation beside the old one and swap both aliases in one atomic call:

- ``entries`` holds every accepted entry, document id ``identifier|email|created``: the
  signed document byte for byte (a ``binary`` field: base64 in ``_source``, neither indexed
  nor in doc values) and the fields derived from it. It is the truth; everything else is
  rebuilt from its documents.
- ``latest`` holds, per identifier and endorser (document id ``identifier|email``), a copy of
  the newest entry (latest.py keeps it so).

Beside them, ``PREFIX-state`` holds the marketplace's shared state (state.py): held uploads,
tombstones, blocked endorsers, marks, mail counts, publication notes and the numbered slots
of the change feed, the audit log and the transparency log. It is not derived from anything,
so it has no generations: it is created once, and a newer mapping of its own version is
added to it in place (new fields only), by ``init-store`` as the entries are migrated. It has
one shard whatever ELASTICSEARCH_SHARDS says: the writes of one change (its feed, audit and
log slots) then go in one shard-level bulk, applied in order with one fsync.

Every write waits for ``active_shards`` copies (ELASTICSEARCH_WAIT_FOR_ACTIVE_SHARDS, ``all``
by default: the primary and every replica are up before it starts; Elasticsearch then
acknowledges it once every in-sync copy has it) and fails after ``write_timeout`` instead of
waiting longer than the client does. How a copy keeps an acknowledged write (its translog
fsynced per request, or every few seconds) follows from those two settings:
:func:`translog_durability` says why.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from marketplace.store.base import StoreError
from marketplace.store.elastic.client import LONG_TIMEOUT, missing_index
from marketplace.store.elastic.documents import entry_id

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
STATE_MAPPING_VERSION = 1
STATE_MAPPING = {
    "dynamic": "strict",
    "_meta": {"version": STATE_MAPPING_VERSION},
    "properties": {
        # What a document is (upload, tombstone, note, change, leaf, audit...), and for the
        # numbered slots their number; the fields searches filter and sort by.
        **{name: {"type": "keyword"} for name in (
            "kind", "key", "identifier", "email", "created", "state", "token_hash",
            "submitted", "expires", "at", "action")},
        "number": {"type": "long"},
        "announced": {"type": "boolean"},
        # Everything else is only read back: kept in _source, not indexed.
        "data": {"type": "object", "enabled": False},
    },
}
MAX_WINDOW = 10_010_000          # the API's largest offset plus its largest page
PAGE = 1000                      # documents or buckets per scan request
TRANSLOG_CHOICES = ("auto", "request")  # ELASTICSEARCH_TRANSLOG_DURABILITY: see translog_durability
_PREFIX = re.compile(r"[a-z0-9][a-z0-9_.-]{0,150}")


@dataclass(frozen=True)
class Indices:
    """The two aliases of ``prefix`` on the cluster ``client`` reaches, and how new
    generations are made (``replicas``: a number or an auto-expand range such as ``0-1``)."""

    client: Any
    prefix: str
    replicas: str = "0-1"
    shards: int = 1
    active_shards: str = "all"
    write_timeout: str = "5s"
    translog: str = "auto"

    def __post_init__(self):
        if not _PREFIX.fullmatch(self.prefix):
            raise ValueError(f"index prefix {self.prefix!r}: use lowercase letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")
        if self.translog not in TRANSLOG_CHOICES:
            raise ValueError(f"translog durability {self.translog!r} "
                             "(MARKETPLACE_ELASTICSEARCH_TRANSLOG_DURABILITY): use "
                             f"{' or '.join(TRANSLOG_CHOICES)}")

    @property
    def entries(self) -> str:
        return f"{self.prefix}-entries"

    @property
    def latest(self) -> str:
        return f"{self.prefix}-latest"

    @property
    def state(self) -> str:
        return f"{self.prefix}-state"

    @property
    def writes(self) -> dict[str, str]:
        """The options of every write: how many copies must be up, how long to wait."""
        return {"wait_for_active_shards": self.active_shards, "timeout": self.write_timeout}

    # --- lifecycle --------------------------------------------------------------------------

    def exist(self) -> bool:
        """Whether the indices exist; StoreError when the latest one is missing beside the
        entries."""
        if not self.client.indices.exists_alias(name=self.entries):
            return False
        if not self.client.indices.exists_alias(name=self.latest):
            raise StoreError(f"the index alias {self.latest} is missing beside {self.entries} "
                             "(another server may be creating it now); if this lasts, run "
                             "`stratus-marketplace reindex` to rebuild it")
        return True

    def mapping_version(self) -> int:
        """The mapping version of the live entries index."""
        mappings = self.client.indices.get_mapping(index=self.entries)
        return min(m["mappings"].get("_meta", {}).get("version", 0) for m in mappings.values())

    def need_migration(self, migrate: bool) -> bool:
        """Whether the live indices have an older mapping and are to be rebuilt (when
        ``migrate``; StoreError when not, and for a mapping newer than this marketplace's)."""
        version = self.mapping_version()
        if version > MAPPING_VERSION:
            raise StoreError(f"the indices {self.prefix}-* have mapping version {version}, "
                             f"newer than this marketplace's ({MAPPING_VERSION}): upgrade it")
        if version < MAPPING_VERSION and not migrate:
            raise StoreError(f"the indices {self.prefix}-* have mapping version {version}; "
                             f"this marketplace needs {MAPPING_VERSION}: run "
                             "`stratus-marketplace init-store` to migrate them")
        return version < MAPPING_VERSION

    def create_generation(self, number: int, aliases: bool) -> tuple[str, str]:
        """Create ``PREFIX-entries-N`` and ``PREFIX-latest-N`` (with their aliases when
        ``aliases``; two servers doing it at once is fine: one creates, one finds them)."""
        from elasticsearch import BadRequestError
        names = (f"{self.entries}-{number}", f"{self.latest}-{number}")
        settings = {**self._settings(self.shards), "max_result_window": MAX_WINDOW}
        for name, alias in zip(names, (self.entries, self.latest), strict=True):
            try:
                self.client.indices.create(index=name, settings=settings, mappings=MAPPING,
                                           aliases={alias: {}} if aliases else None,
                                           wait_for_active_shards="1")
            except BadRequestError as exc:
                if exc.error != "resource_already_exists_exception" or not aliases:
                    raise
        return names

    def _settings(self, shards: int) -> dict:
        settings = {"number_of_shards": shards, "translog": {"durability": translog_durability(
            self.replicas, self.active_shards, self.translog)}}
        if "-" in self.replicas:
            settings["auto_expand_replicas"] = self.replicas
        else:
            settings["number_of_replicas"] = int(self.replicas)
        return settings

    def ensure_durability(self) -> None:
        """Give every index of the prefix the translog durability its own replicas call for
        (:func:`translog_durability`): an index made before, by a server with other
        settings, or whose replicas an operator changed since, is brought in line at
        ``init-store`` and whenever a server opens the store (the setting is dynamic)."""
        found = self.client.indices.get_settings(
            index=[self.entries, self.latest, self.state], name=[
                "index.number_of_replicas", "index.auto_expand_replicas",
                "index.translog.durability"], flat_settings=True, include_defaults=True)
        for name, value in found.items():
            current = {**value.get("defaults", {}), **value["settings"]}
            expand = current.get("index.auto_expand_replicas", "false")
            replicas = expand if expand != "false" else current["index.number_of_replicas"]
            wanted = translog_durability(replicas, self.active_shards, self.translog)
            if current.get("index.translog.durability", "").lower() != wanted:
                self.client.indices.put_settings(
                    index=name, settings={"index.translog.durability": wanted})

    def ensure_state(self, migrate: bool) -> None:
        """Create the state index if it is missing; bring an older mapping of it up to date
        (when ``migrate``: new fields are added in place; StoreError when not, and for a
        mapping newer than this marketplace's)."""
        from elasticsearch import BadRequestError
        if not self.client.indices.exists(index=self.state):
            try:
                self.client.indices.create(index=self.state, settings=self._settings(1),
                                           mappings=STATE_MAPPING, wait_for_active_shards="1")
            except BadRequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
            return
        mappings = self.client.indices.get_mapping(index=self.state)
        version = min(m["mappings"].get("_meta", {}).get("version", 0)
                      for m in mappings.values())
        if version > STATE_MAPPING_VERSION:
            raise StoreError(f"the index {self.state} has mapping version {version}, newer "
                             f"than this marketplace's ({STATE_MAPPING_VERSION}): upgrade it")
        if version < STATE_MAPPING_VERSION:
            if not migrate:
                raise StoreError(f"the index {self.state} has mapping version {version}; this "
                                 f"marketplace needs {STATE_MAPPING_VERSION}: run "
                                 "`stratus-marketplace init-store` to migrate it")
            self.client.indices.put_mapping(index=self.state, dynamic="strict",
                                            meta=STATE_MAPPING["_meta"],
                                            properties=STATE_MAPPING["properties"])

    def wait_ready(self) -> None:
        """Wait (a while) until every shard of the indices can serve: another server may
        have created them a moment ago, an index exists before its shards started, and the
        cluster calls a new index yellow while its primaries still initialize."""
        self.client.cluster.health(index=[self.entries, self.latest, self.state],
                                   wait_for_status="yellow", wait_for_no_initializing_shards=True,
                                   timeout="30s")

    def generations(self) -> tuple[list[str], list[str]]:
        """The indices behind each alias."""
        latest = self.client.options(ignore_status=404).indices.get_alias(name=self.latest)
        return (list(self.client.indices.get_alias(name=self.entries)),
                [name for name in latest if name not in ("error", "status")])

    def swap(self, old: tuple[list[str], list[str]], new: tuple[str, str]) -> None:
        """Point both aliases from the ``old`` generations to the ``new`` one, atomically."""
        actions = [{"remove": {"index": name, "alias": alias}}
                   for names, alias in zip(old, (self.entries, self.latest), strict=True)
                   for name in names]
        actions += [{"add": {"index": name, "alias": alias}}
                    for name, alias in zip(new, (self.entries, self.latest), strict=True)]
        self.client.indices.update_aliases(actions=actions)

    def delete(self, names: list[str]) -> None:
        """Delete indices by name (wildcards may not delete: action.destructive_requires_name)."""
        if names:
            self.client.options(ignore_status=404).indices.delete(index=names)

    def drop(self) -> None:
        """Delete every index of this prefix."""
        self.delete(list(self.client.indices.get(
            index=f"{self.entries}-*,{self.latest}-*,{self.state}", expand_wildcards="all",
            ignore_unavailable=True)))

    # --- reading ----------------------------------------------------------------------------

    def get(self, index: str, doc_id: str, include: list[str]) -> dict | None:
        """A document's hit with the ``include`` fields of its source; None when missing."""
        from elasticsearch import NotFoundError
        try:
            return self.client.get(index=index, id=doc_id, source_includes=include)
        except NotFoundError as exc:
            if missing_index(exc):
                raise
            return None

    def document(self, key: tuple[str, str, str]) -> bytes | None:
        """The signed document stored under an entry's key."""
        source = self.get(self.entries, entry_id(key), ["document"])
        return None if source is None else base64.b64decode(source["_source"]["document"])

    def seq(self, key: tuple[str, str, str]) -> int:
        """The order of arrival of a stored entry."""
        source = self.get(self.entries, entry_id(key), ["seq"])
        return source["_source"].get("seq", 0) if source else 0

    def scan(self, index: str, source: list[str]) -> Iterator[dict]:
        """The ``source`` fields of every document of an index, by key."""
        after = None
        while True:
            extra = {"search_after": after} if after is not None else {}
            found = self.client.options(request_timeout=LONG_TIMEOUT).search(
                index=index, size=PAGE, sort=[{"key": "asc"}], source=source,
                query={"match_all": {}}, track_total_hits=False, **extra)["hits"]["hits"]
            for hit in found:
                yield hit["_source"]
            if len(found) < PAGE:
                return
            after = found[-1]["sort"]


def translog_durability(replicas: str, active_shards: str, choice: str) -> str:
    """The ``index.translog.durability`` of an index with ``replicas`` (a number or an
    auto-expand range such as ``0-1``), written with ``wait_for_active_shards=active_shards``,
    when ELASTICSEARCH_TRANSLOG_DURABILITY is ``choice``.

    Issue 14 calls a write durable on Elasticsearch once the primary shard and its replica
    have acknowledged it: it survives the loss of any one node. ``async`` keeps that
    promise when every write is in two copies' translogs before it is acknowledged, which
    takes two things. A replica that cannot go away by itself: a fixed count of one or more,
    or an auto-expand range starting at one (``0-1`` drops the replica when a node of two
    leaves, and the writes then go on with one copy). And writes that wait for all copies
    (``active_shards`` ``all``), so that a write is refused rather than kept on the primary
    alone while the replica is missing. Elasticsearch then acknowledges a write only once
    every in-sync copy has it: the primary forwards the operation to each replica of the
    in-sync set and answers the client once all of them have performed it (Elasticsearch
    reference, "Reading and writing documents", basic write model); a replica that fails
    to is first taken out of the in-sync set by the master (same page, failure handling):
    that write rests on the primary alone, as every write does after a copy failed, until
    the replica is rebuilt. ``wait_for_active_shards`` alone is no promise: it is checked
    before the write starts (index API, "Active shards").

    With ``async`` each copy fsyncs its translog every ``index.translog.sync_interval``
    (5 s by default) instead of before each answer: what a power loss of every node at
    once can cost is the writes of the last interval. With no replica, or with writes that
    may go on with one copy, or when ``choice`` is ``request``, each write is fsynced on
    every copy before it is acknowledged (``request``), as SQLite fsyncs each commit.
    """
    if choice == "request" or active_shards != "all" or least_replicas(replicas) < 1:
        return "request"
    return "async"


def least_replicas(replicas: str) -> int:
    """The fewest replicas an index can have: a fixed count, or the low end of an
    auto-expand range (``0-1``, ``1-all``)."""
    return int(replicas.split("-", 1)[0])


def generation_of(name: str) -> int:
    """The generation number N of an index named ``...-N`` (0 for another name)."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
