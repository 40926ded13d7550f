"""Ordered, gapless numbered sequences on Elasticsearch, shared by every app server: the
change feed's serials, the audit log's serials and the transparency log's leaf indexes.

Elasticsearch has no counter two servers can increment without a lock, so each number is a
slot: a document of the state index whose id *is* the number (``change:17``). A writer takes
the next free number by creating its slot with ``op_type=create``: the claim and the content
are one atomic write, and a 409 means another server took that number first, so it tries the
next. A number is only ever claimed once every number below it is taken, so the slots never
leave a gap: a reader reads slots by id (realtime ``mget``, no refresh needed) and stops at
the first missing one, and the next free number is found from a hint (the last one this
process saw) with a few ``mget`` calls, by bisection when the hint is useless.

:class:`Freshness` gives searches the same reach as those reads without a refresh per write:
a search that may depend on recent writes first looks whether a watched sequence moved since
this process last refreshed (one realtime ``mget``), and refreshes the searched indices only
then. Every change that a search must see (a publication, a removal, a held upload...) takes
a slot after its own documents were written, so once the slot is seen a refresh shows them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from marketplace.store.base import StoreError

WINDOW = 16     # slots read past the hint before bisecting
SPREAD = 32     # slots probed per bisection round
HIGHEST = 62    # the largest power of two a sequence can reach


class Slots:
    """One sequence: the slots ``name:first``, ``name:first+1``... of ``index``; ``alone``
    says which numbers must be claimed alone, once every slot below exists."""

    def __init__(self, client: Any, index: str, name: str, first: int,
                 alone: Callable[[int], bool] = lambda number: False):
        self.client = client
        self.index = index
        self.name = name
        self.first = first
        self.alone = alone
        self._hint = first
        self._lock = threading.Lock()

    def doc_id(self, number: int) -> str:
        return f"{self.name}:{number}"

    def read(self, numbers: Iterable[int]) -> list[dict | None]:
        """The sources of the slots ``numbers`` (None where missing), realtime."""
        ids = [self.doc_id(n) for n in numbers]
        if not ids:
            return []
        docs = self.client.mget(index=self.index, ids=ids)["docs"]
        return [doc["_source"] if doc.get("found") else None for doc in docs]

    def run(self, start: int, end: int) -> list[dict]:
        """The slots [start, end) up to the first missing one."""
        found = []
        for source in self.read(range(max(start, self.first), end)):
            if source is None:
                break
            found.append(source)
        return found

    def head(self) -> int:
        """The next free number (one more than the newest slot)."""
        hint = self.hint
        below = [hint - 1] if hint > self.first else []
        found = self.read([*below, *range(hint, hint + WINDOW)])
        if below and found.pop(0) is None:  # slots deleted since (tests): start over
            return self.seen(self._bisect(self.first))
        for offset, source in enumerate(found):
            if source is None:
                return self.seen(hint + offset)
        return self.seen(self._bisect(hint + WINDOW))  # far behind: a new process

    def seen(self, head: int) -> int:
        """Remember a head this process found (a number taken, plus one)."""
        with self._lock:
            self._hint = head
        return head

    @property
    def hint(self) -> int:
        with self._lock:
            return self._hint

    def _bisect(self, low: int) -> int:
        """The head, knowing only that every slot below ``low`` is taken: taken slots are a
        prefix of the numbers, so probe ``low`` plus powers of two, then narrow down between
        the last taken and the first free probe (a few ``mget`` calls for any length)."""
        probes = [low + (1 << k) - 1 for k in range(HIGHEST)]
        found = self.read(probes)
        free = next(k for k, source in enumerate(found) if source is None)
        if free == 0:
            return low
        low, high = probes[free - 1] + 1, probes[free]  # low - 1 taken, high free
        while low < high:
            step = max(1, (high - low) // SPREAD)
            points = list(range(low, high, step))
            for point, source in zip(points, self.read(points), strict=True):
                if source is None:
                    high = point
                    break
                low = point + 1
        return low


def heads(slots: list[Slots], also: list[str] = ()) -> tuple[list[int], dict[str, dict]]:
    """The next free number of several sequences of one index, in one ``mget`` when their
    hints hold; and the sources of the documents ``also`` names (of the same index) that
    exist, read in that ``mget``."""
    ids, spans = list(also), []
    for sequence in slots:
        hint = sequence.hint
        numbers = ([hint - 1] if hint > sequence.first else []) + list(range(hint, hint + WINDOW))
        spans.append((hint, len(ids), numbers))
        ids += [sequence.doc_id(n) for n in numbers]
    docs = slots[0].client.mget(index=slots[0].index, ids=ids)["docs"]
    found = []
    for sequence, (hint, at, numbers) in zip(slots, spans, strict=True):
        taken = [bool(doc.get("found")) for doc in docs[at:at + len(numbers)]]
        below_taken = taken.pop(0) if hint > sequence.first else True
        if not below_taken or all(taken):  # slots deleted (tests), or more than a window
            found.append(sequence.head())
        else:
            found.append(sequence.seen(hint + taken.index(False)))
    existing = {doc["_id"]: doc["_source"] for doc in docs[:len(also)] if doc.get("found")}
    return found, existing


class Freshness:
    """Makes ``indices`` searchable up to the newest slot of the ``watched`` sequences."""

    def __init__(self, client: Any, indices: list[str], watched: list[Slots]):
        self.client = client
        self.indices = indices
        self.watched = watched
        self._seen = {s.name: s.first for s in watched}
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Refresh the indices if a watched sequence has a slot this process had not seen
        when it last refreshed them (one realtime read when none moved)."""
        with self._lock:
            seen = dict(self._seen)
        index = self.watched[0].index
        docs = self.client.mget(index=index, ids=[s.doc_id(seen[s.name])
                                                  for s in self.watched])["docs"]
        if any(doc.get("found") for doc in docs):
            self.refresh()

    def refresh(self) -> None:
        """Refresh the indices now (searches that must see everything: rare ones)."""
        now, _ = heads(self.watched)
        self.client.indices.refresh(index=self.indices)
        with self._lock:
            for sequence, head in zip(self.watched, now, strict=True):
                self._seen[sequence.name] = max(self._seen[sequence.name], head)


SlotSource = Callable[[int], dict]  # the source of a slot, given its number


class Overtaken(Exception):
    """A claim given no slot: the document it was to be refused for (``unless``) exists."""

    def __init__(self, doc_id: str, source: dict):
        self.doc_id, self.source = doc_id, source
        super().__init__(f"{doc_id} exists: no slot claimed")


@dataclass
class _Claim:
    """What one thread waits for: a slot of each of its sequences, none if the document
    ``unless`` names exists when the first of them is claimed."""

    wanted: list[tuple[Slots, SlotSource]]
    numbers: list[int | None] = field(default_factory=list)
    unless: str | None = None
    error: BaseException | None = None
    done: bool = False

    @property
    def open(self) -> bool:
        """Whether it has no slot yet (so ``unless`` may still refuse it)."""
        return all(number is None for number in self.numbers)


class Appender:
    """Claims slots for every thread of a process together (group commit): the thread that
    finds no bulk running takes every waiting claim, gives each sequence's claims the next
    free numbers in a row, and creates them in one bulk request (one shard of the state
    index: the items are applied in order, so each number is created after the one below
    it); a number another server took meanwhile is claimed again in the next round. The
    threads that waited find their numbers taken for them: the round trips and the fsync are
    shared instead of colliding on the same number.

    A slot whose content depends on the slots below it (``Slots.alone``: a leaf completing
    a tile, whose root is read from the leaves below) is claimed alone, once those exist.
    Deletions of documents that no longer matter (``delete_later``) ride along in the next
    bulk."""

    def __init__(self, client: Any, index: str, writes: dict[str, str]):
        self.client = client
        self.index = index
        self.writes = writes
        self._waiting: list[_Claim] = []
        self._deletes: list[str] = []
        self._lock = threading.Lock()
        self._bulk = threading.Lock()

    def append(self, wanted: list[tuple[Slots, SlotSource]], unless: str | None = None
               ) -> list[int]:
        """The numbers taken for ``wanted``, a slot of each sequence (not twice the same).
        ``unless``: the id of a document of the index whose existence refuses the claim
        (Overtaken, no slot taken), read after this call began, in the realtime ``mget``
        that finds the heads: a publication's tombstone costs no request of its own."""
        if not wanted:
            found = self.client.mget(index=self.index, ids=[unless])["docs"] if unless else []
            if found and found[0].get("found"):
                raise Overtaken(unless, found[0]["_source"])
            return []
        return self.append_each([wanted], unless)[0]

    def append_each(self, claims: list[list[tuple[Slots, SlotSource]]],
                    unless: str | None = None) -> list[list[int]]:
        """The numbers taken for each of ``claims`` (each as :meth:`append`, with the same
        ``unless``), given numbers in the order of ``claims`` within each sequence: a
        migration's history goes in as few bulk requests as the tiles allow."""
        mine = [_Claim(wanted, [None] * len(wanted), unless) for wanted in claims]
        with self._lock:
            self._waiting += mine
        with self._bulk:
            if not all(claim.done for claim in mine):
                with self._lock:
                    batch, self._waiting = self._waiting, []
                try:
                    self._claim(batch)
                except BaseException as exc:  # every claim of the round failed with it
                    for other in batch:
                        other.error, other.done = other.error or exc, True
        for claim in mine:
            if claim.error is not None:
                raise claim.error
        return [claim.numbers for claim in mine]

    def delete_later(self, doc_id: str) -> None:
        with self._lock:
            self._deletes.append(doc_id)

    def take_deletes(self) -> list[str]:
        with self._lock:
            deletes, self._deletes = self._deletes, []
        return deletes

    def _claim(self, batch: list[_Claim]) -> None:
        todo = [(claim, n) for claim in batch for n in range(len(claim.wanted))]
        while todo:
            todo = self._round(todo)
        for claim in batch:
            claim.done = True

    def _round(self, todo: list[tuple[_Claim, int]]) -> list[tuple[_Claim, int]]:
        """One bulk request: as many of ``todo`` as can go now; those left for the next.
        A claim with no slot yet whose ``unless`` document exists gets Overtaken instead."""
        sequences = {claim.wanted[n][0].name: claim.wanted[n][0] for claim, n in todo}
        vetoes = sorted({claim.unless for claim, _ in todo if claim.unless and claim.open})
        found, existing = heads(list(sequences.values()), vetoes)
        for claim, _ in todo:
            if claim.unless in existing and claim.open and claim.error is None:
                claim.error = Overtaken(claim.unless, existing[claim.unless])
        queues: dict[str, list[tuple[_Claim, int]]] = {name: [] for name in sequences}
        for claim, n in todo:
            if claim.error is None:
                queues[claim.wanted[n][0].name].append((claim, n))
        placed, later = [], []
        for (name, queue), head in zip(queues.items(), found, strict=True):
            if not queue:
                continue
            count = _run_length(sequences[name], head, len(queue))
            placed += [(claim, n, head + offset) for offset, (claim, n) in
                       enumerate(queue[:count])]
            later += queue[count:]
            sequences[name].seen(head + count)
        deletes = self.take_deletes()
        operations = []
        for claim, n, number in placed:
            sequence, make = claim.wanted[n]
            operations += [{"create": {"_index": self.index, "_id": sequence.doc_id(number)}},
                           make(number)]
        operations += [{"delete": {"_index": self.index, "_id": d}} for d in deletes]
        if not operations:
            return later
        items = self.client.bulk(operations=operations, **self.writes)["items"]
        for (claim, n, number), item in zip(placed, items, strict=False):
            result = item["create"]
            if result["status"] == 201:
                claim.numbers[n] = number
            elif result["status"] == 409:
                later.append((claim, n))
            else:
                raise refused(result)
        for doc_id, item in zip(deletes, items[len(placed):], strict=True):
            if item["delete"]["status"] not in (200, 404):
                self.delete_later(doc_id)
        return later


def _run_length(sequence: Slots, head: int, waiting: int) -> int:
    """How many consecutive numbers from ``head`` one round may claim: up to a number that
    must be claimed alone (alone if it is the first)."""
    if sequence.alone(head):
        return 1
    count = 1
    while count < waiting and not sequence.alone(head + count):
        count += 1
    return count


def refused(result: dict) -> StoreError:
    """The StoreError of a bulk item the cluster refused."""
    error = result.get("error") or {}
    return StoreError(f"Elasticsearch refused {result.get('_id')} ({result.get('status')} "
                      f"{error.get('type', '')}: {error.get('reason', '')})")
