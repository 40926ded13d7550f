"""When an export must be made again: the store's state as a cheap marker, and the renders
kept until it moves.

An export changes when a document is added or removed (the store's change serial grows) or
when an entry's validity ends (it leaves every list of valid entries while the serial stands
still). So the marker is the pair (serial, number of latest entries expired now): under one
serial the count only grows, and a new serial is higher. Read as dotted numbers the pair only
ever increases, which is what ``hv:version`` needs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from marketplace.store.base import Query, Store


@dataclass(frozen=True)
class Marker:
    """The store's state as far as exports care, read at ``now``."""

    serial: int
    expired: int
    now: datetime

    @property
    def version(self) -> str:
        return f"{self.serial}.{self.expired}"


def marker(store: Store, now: datetime) -> Marker:
    """Two cheap reads: the change serial and a count the store keeps cached."""
    expired = store.search(Query(status="expired", limit=0, now=now)).total
    return Marker(store.change_serial(), expired, now)


def etag(*parts: object) -> str:
    """A strong entity tag of everything a render depends on."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Rendered:
    """One export's bytes, its type, and when this process first made them."""

    body: bytes
    content_type: str
    modified: datetime
    headers: tuple[tuple[str, str], ...] = ()


class Renders:
    """The latest renders by entity tag: a repeated request costs a marker and a lookup."""

    SIZE = 64

    def __init__(self):
        self._kept: OrderedDict[str, Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tag: str, make: Callable[[], Rendered]) -> Rendered:
        with self._lock:
            found = self._kept.get(tag)
            if found is not None:
                self._kept.move_to_end(tag)
                return found
        made = make()
        with self._lock:
            self._kept[tag] = made
            while len(self._kept) > self.SIZE:
                self._kept.popitem(last=False)
        return made
