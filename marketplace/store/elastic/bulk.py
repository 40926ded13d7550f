"""Work on every entry at once: rebuilding the indices (reindex, a mapping migration) and
importing many entries (``stratus-marketplace migrate``).

A rebuild is Warehouse's reindex: a new generation is filled beside the live one from the
stored documents (every derived field computed anew), both aliases are swapped to it in one
call, and the old generation is deleted. Uploads made meanwhile went to the old generation:
they are copied over after the swap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from marketplace.store.base import Entry, StoreError
from marketplace.store.elastic.client import LONG_TIMEOUT
from marketplace.store.elastic.documents import entry_id, fields, pair_id, stored_entry
from marketplace.store.elastic.indices import Indices, generation_of
from marketplace.store.elastic.latest import create, judge_taken, promote, promote_many

CHUNK = 500  # entries per bulk request


def rebuild(indices: Indices) -> int:
    """Rebuild both indices, with the current mapping, from the stored documents; how many
    entries they hold."""
    old = indices.generations()
    number = 1 + max(generation_of(name) for name in (*old[0], *old[1]))
    new_entries, new_latest = indices.create_generation(number, aliases=False)
    try:
        newest: dict[str, dict] = {}
        count = _copy(indices, old[0], new_entries, newest)
        _bulk(indices, ({"_index": new_latest, "_id": pair, "_source": source}
                        for pair, source in newest.items()), "index")
        indices.client.indices.refresh(index=[new_entries, new_latest])
        indices.swap(old, (new_entries, new_latest))
    except BaseException:
        indices.delete([new_entries, new_latest])
        raise
    count += _catch_up(indices, old[0], count)
    indices.delete(old[0] + old[1])
    return count


def _copy(indices: Indices, sources: list[str], target: str, newest: dict[str, dict]) -> int:
    """Re-derive every entry of ``sources`` into ``target``; newest entry per pair."""
    count = 0

    def actions() -> Iterator[dict]:
        nonlocal count
        for index in sources:
            for old in indices.scan(index, ["document", "seq"]):
                source = fields(stored_entry(old), old.get("seq", 0))
                pair = pair_id(source["identifier"], source["email"])
                if pair not in newest or newest[pair]["created"] < source["created"]:
                    newest[pair] = source
                count += 1
                yield {"_index": target, "_id": source["key"], "_source": source}

    _bulk(indices, actions(), "create")
    return count


def _catch_up(indices: Indices, old_entries: list[str], copied: int) -> int:
    """Copy the entries uploaded into the old generation while it was being copied (into
    the new one, which the aliases name now)."""
    now = sum(indices.client.count(index=name)["count"] for name in old_entries)
    if now <= copied:
        return 0
    added = 0
    for index in old_entries:
        for old in indices.scan(index, ["document", "seq"]):
            entry = stored_entry(old)
            source = fields(entry, old.get("seq", 0))
            if create(indices, entry.key, source):
                promote(indices, source)
                added += 1
    return added


def import_entries(indices: Indices, rows: Iterable[tuple[Entry, int]],
                   progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Bulk-create many entries, then bring each pair's latest copy up to date with the same
    optimistic concurrency as one add. Rows are (entry, sequence number for ties). Returns
    (new, already there); raises Conflict for a different document under a stored key."""
    from elasticsearch.helpers import streaming_bulk
    new = same = 0
    for chunk in _chunks(rows, CHUNK):
        sources = {entry_id(e.key): (e, fields(e, seq)) for e, seq in chunk}
        created = []
        for ok, item in streaming_bulk(
                indices.client.options(request_timeout=LONG_TIMEOUT),
                ({"_op_type": "create", "_index": indices.entries, "_id": doc_id,
                  "_source": source} for doc_id, (_, source) in sources.items()),
                raise_on_error=False, max_retries=3):
            result = item["create"]
            if ok:
                created.append(sources[result["_id"]][1])
            elif result.get("status") == 409:
                judge_taken(indices, sources[result["_id"]][0])
                same += 1
            else:
                raise StoreError(f"Elasticsearch refused {result['_id']}: "
                                 f"{result.get('error')}")
        promote_many(indices, created)
        new += len(created)
        if progress:
            progress(new + same)
    indices.client.indices.refresh(index=[indices.entries, indices.latest])
    return new, same


def _bulk(indices: Indices, actions: Iterable[dict], op_type: str) -> None:
    from elasticsearch.helpers import streaming_bulk
    for ok, item in streaming_bulk(indices.client.options(request_timeout=LONG_TIMEOUT),
                                   ({"_op_type": op_type, **a} for a in actions),
                                   raise_on_error=False, max_retries=3, chunk_size=CHUNK):
        if not ok:
            raise StoreError(f"Elasticsearch refused a document: {item}")


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
