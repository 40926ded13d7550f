"""The newest serving leaf of each entry a listing shows, kept by following the log.

A listing shows each entry's log index: the newest leaf that published (or deprecated
with) it. Asking the cluster means a search (an aggregation over the leaves of the page's
keys), and a search sees recent leaves only after a refresh, so before it a realtime read
of the watched slots (slots.Freshness): two requests per page. A leaf never changes once
claimed, and the log is gapless, so a process that remembers the answer for a key, and has
read every leaf claimed since, knows the answer still: one realtime ``mget`` of the slots
after the last one it read finds the new leaves (none, mostly) and updates what it
remembers. Keys it does not know yet are searched as before, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from marketplace.metadata import logleaf
from marketplace.store.elastic.slots import WINDOW, Slots

KEPT = 100_000  # keys remembered at most (a few MB): past that, it starts over

Search = Callable[[list[str]], dict[str, int]]  # keys -> newest serving leaf, from a search


class ServingLeaves:
    """What one process remembers of the log: the newest serving leaf of the keys it was
    asked about, and the first leaf it has not read yet (``_next``)."""

    def __init__(self, log: Slots):
        self.log = log
        self._known: dict[str, int] = {}
        self._next: int | None = None  # None: nothing followed yet
        self._lock = threading.Lock()

    def of(self, keys: list[str], search: Search) -> dict[str, int]:
        """The newest serving leaf of each of ``keys`` that has one: from what this process
        remembers, brought up to the log's head first; ``search`` (which must see every
        leaf claimed before it is called) for the keys it does not know."""
        followed = self._follow()
        with self._lock:
            found = {key: self._known[key] for key in keys if key in self._known}
        missing = [key for key in keys if key not in found]
        if missing:
            searched = search(missing)
            self._learn(searched, followed)
            found.update(searched)
        return found

    def _follow(self) -> int:
        """Read the leaves claimed since the last one read (one realtime ``mget``), and
        take their keys' new serving leaves; start over when the log moved by more than
        the window, or lost leaves (its index was dropped: tests). The first leaf not read
        yet."""
        with self._lock:
            start = self._next
        if start is None:
            return self._start_over()
        below = [start - 1] if start > self.log.first else []
        sources = self.log.read([*below, *range(start, start + WINDOW)])
        if below and sources.pop(0) is None:
            return self._start_over()
        new = []
        for source in sources:
            if source is None:
                break
            new.append(source)
        if len(new) == WINDOW:
            return self._start_over()
        with self._lock:
            for source in new:  # true leaves: taking the newest is right whoever read them
                if source.get("key") in self._known and source["action"] in logleaf.SERVES:
                    self._known[source["key"]] = max(self._known[source["key"]],
                                                     source["number"])
            if self._next == start:
                self._next = start + len(new)
            return self._next

    def _start_over(self) -> int:
        """Forget every key and follow from the log's head: what is asked next is searched,
        and the search sees every leaf below that head. The head."""
        head = self.log.head()
        with self._lock:
            self._known.clear()
            self._next = head
        return head

    def _learn(self, searched: dict[str, int], followed: int) -> None:
        """Remember what a search found, made after the leaves below ``followed`` were
        read. Not when another thread read further meanwhile: the leaves it read past
        ``followed`` were not taken for these keys, which it did not know."""
        with self._lock:
            if self._next != followed:
                return
            if len(self._known) + len(searched) > KEPT:
                self._known.clear()
            for key, number in searched.items():
                self._known[key] = max(self._known.get(key, number), number)
