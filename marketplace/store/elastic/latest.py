"""Writing entries and keeping each pair's latest copy (its newest entry) up to date.

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
Reads by id are realtime on any server. A publication (state.py) writes without a refresh:
it then takes a change-feed slot, and a search on any server that sees the slot moved
refreshes first (slots.Freshness). A write through :meth:`Store.add` or a removal has no
slot that tells searches of it, so it refreshes the shard it changed before it returns
(``refresh=true``). Every write waits for the copies the settings name (``Indices.writes``)
and each copy keeps it as the index's translog durability says (indices.translog_durability),
so an acknowledged upload survives the loss of a node.
"""

from __future__ import annotations

import random
import time

from marketplace.store.base import Entry, StoreError, is_new
from marketplace.store.elastic.client import missing_index
from marketplace.store.elastic.documents import entry_id, pair_id
from marketplace.store.elastic.indices import Indices

PROMOTE_ATTEMPTS = 30
# A write no slot announces refreshes the touched shard before it returns: visible at once to
# every reader. With "wait_for" a write waits for the next periodic refresh (up to
# refresh_interval, 1 s), which would cap one client at about one upload a second.
REFRESH = "true"
# A publication's writes: its change-feed slot tells searches to refresh (slots.Freshness).
NO_REFRESH = "false"


def create(indices: Indices, key: tuple[str, str, str], source: dict,
           refresh: str = REFRESH) -> bool:
    """Create the entry document; False when another server created that key first."""
    from elasticsearch import ConflictError
    try:
        indices.client.index(index=indices.entries, id=entry_id(key), document=source,
                             op_type="create", refresh=refresh, require_alias=True,
                             **indices.writes)
    except ConflictError:
        return False
    return True


def judge_taken(indices: Indices, entry: Entry) -> None:
    """The entry's key was found taken when it was created (by another server, or by an
    interrupted add): a replay passes, anything else is a Conflict."""
    stored = indices.document(entry.key)
    if stored is None or is_new(entry, stored, newest=None):
        raise StoreError(f"{' '.join(entry.key)} was removed while it was being stored: "
                         "try again")


def delete(indices: Indices, key: tuple[str, str, str]) -> bool:
    """Delete an entry and settle its pair's latest copy; False when there was none."""
    from elasticsearch import NotFoundError
    try:
        indices.client.delete(index=indices.entries, id=entry_id(key), refresh=REFRESH,
                              **indices.writes)
    except NotFoundError as exc:
        if missing_index(exc):
            raise
        return False
    settle(indices, key[0], key[1])
    return True


def latest_of(indices: Indices, pair: str) -> dict | None:
    """The pair's latest copy (its ``created``, with the version to replace it), or None."""
    return indices.get(indices.latest, pair, ["created"])


UNREAD = {}  # promote's ``current`` when the caller did not read the pair's latest copy


def promote(indices: Indices, source: dict, current: dict | None = UNREAD,
            refresh: str = REFRESH) -> None:
    """Make ``source`` the latest of its pair unless a newer entry already is
    (``current``: the pair's latest copy as just read, None when it had none, saving the
    first read)."""
    pair = pair_id(source["identifier"], source["email"])
    for attempt in range(PROMOTE_ATTEMPTS):
        if attempt or current is UNREAD:
            current = latest_of(indices, pair)
        if current is not None and current["_source"]["created"] >= source["created"]:
            return
        if _replace(indices, pair, source, current, refresh):
            return
        _backoff(attempt)
    raise StoreError(f"could not update the latest entry of {source['identifier']} by "
                     f"{source['email']}: {PROMOTE_ATTEMPTS} concurrent changes in a row")


def promote_many(indices: Indices, sources: list[dict]) -> None:
    """:func:`promote` for many entries: one mget, one bulk, then one by one for the pairs
    that someone else changed meanwhile."""
    from elasticsearch.helpers import streaming_bulk
    best: dict[str, dict] = {}
    for source in sources:
        pair = pair_id(source["identifier"], source["email"])
        if pair not in best or best[pair]["created"] < source["created"]:
            best[pair] = source
    if not best:
        return
    found = indices.client.mget(index=indices.latest, ids=list(best),
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
    for ok, item in streaming_bulk(indices.client, ({"_index": indices.latest, **a}
                                                    for a in actions),
                                   raise_on_error=False, max_retries=3):
        if not ok:
            result = next(iter(item.values()))
            if result.get("status") != 409:
                raise StoreError(f"Elasticsearch refused {result['_id']}: "
                                 f"{result.get('error')}")
            promote(indices, best[result["_id"]])


def settle(indices: Indices, identifier: str, email: str) -> None:
    """After a removal: the pair's latest copy is its newest remaining entry, or none."""
    from elasticsearch import ConflictError, NotFoundError
    pair = pair_id(identifier, email)
    for attempt in range(PROMOTE_ATTEMPTS):
        current = latest_of(indices, pair)
        newest = _newest_entry(indices, identifier, email)
        try:
            if newest is None and current is not None:
                indices.client.delete(index=indices.latest, id=pair, refresh=REFRESH,
                                      if_seq_no=current["_seq_no"],
                                      if_primary_term=current["_primary_term"],
                                      **indices.writes)
                return
            if newest is None or (current is not None and
                                  current["_source"]["created"] == newest["created"]):
                return
        except (ConflictError, NotFoundError):
            _backoff(attempt)
            continue
        if _replace(indices, pair, newest, current):
            return
        _backoff(attempt)
    raise StoreError(f"could not settle the latest entry of {identifier} by {email}")


def _replace(indices: Indices, pair: str, source: dict, current: dict | None,
             refresh: str = REFRESH) -> bool:
    """Write the pair's latest copy if nobody changed it since ``current`` was read."""
    from elasticsearch import ConflictError
    guard = ({"op_type": "create"} if current is None else
             {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]})
    try:
        indices.client.index(index=indices.latest, id=pair, document=source, refresh=refresh,
                             require_alias=True, **guard, **indices.writes)
    except ConflictError:
        return False
    return True


def _newest_entry(indices: Indices, identifier: str, email: str) -> dict | None:
    """The source of the newest stored entry of a pair, from the entries themselves (after
    a refresh: a publication writes its entry without one)."""
    indices.client.indices.refresh(index=indices.entries)
    found = indices.client.search(
        index=indices.entries, size=1, source=True,
        query={"bool": {"filter": [{"term": {"identifier": identifier}},
                                   {"term": {"email": email}}]}},
        sort=[{"created": "desc"}])["hits"]["hits"]
    return found[0]["_source"] if found else None


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))
