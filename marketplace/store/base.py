"""The storage interface every backend implements (SQLite, Elasticsearch).

A store keeps each accepted signed document byte for byte, keyed by (identifier, endorser
email, endorsement date). Everything searchable is derived from those bytes and can be
rebuilt with :meth:`Store.reindex`. "Latest" means the newest entry of one identifier by one
endorser; listings show only those unless a date is asked for.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from marketplace.metadata import document as xml
from marketplace.metadata import model, vocabulary

SORT_FIELDS = vocabulary.SORT_FIELDS
FILTER_FIELDS = tuple(vocabulary.FILTERS.values())
FACET_FIELDS = vocabulary.facet_fields()
LOCATIONS = vocabulary.LOCATIONS
STATUSES = vocabulary.STATUSES
# The fields of :func:`indexed_fields` that free text searches, in every backend.
TEXT_FIELDS = ("identifier", "email", "subject", "title", "description", "os", "tag")
_WORD = re.compile(r"[\w@.-]+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The words of a free-text query, for every backend: each must match (as a prefix);
    anything between them (quotes, operators...) only separates them."""
    return _WORD.findall(text)


class StoreError(Exception):
    """The store cannot serve (e.g. its server is down); the caller may retry later."""


class Conflict(Exception):
    """An entry that contradicts what is stored (older than the latest, or a changed copy)."""


class Entry:
    """One stored document and the entry read from it; not to be changed once made.

    An entry served from an index (:meth:`from_dict`) makes its appliance only when it is
    asked for: a listing's JSON needs only the fields the index kept, the key and the
    status, and making the appliance of each entry of a page cost a search answer 0.14 ms
    of 20 entries' CPU, its key (made three times an entry) 0.09 ms more.
    """

    __slots__ = ("_appliance", "_key", "document", "fields")

    def __init__(self, document: bytes, appliance: model.Appliance | None = None,
                 fields: dict | None = None):
        if appliance is None and fields is None:
            raise ValueError("an entry needs its appliance or the fields an index kept of it")
        for name, value in (("document", document), ("fields", fields),
                            ("_appliance", appliance), ("_key", None)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"an entry is not changed once made ({name})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return self.document == other.document and self.appliance == other.appliance

    __hash__ = None  # as before: an appliance has lists and dicts

    def __repr__(self) -> str:
        return f"Entry{self.key!r}"

    @property
    def appliance(self) -> model.Appliance:
        if self._appliance is None:  # two threads may both make it: the same value
            object.__setattr__(self, "_appliance", model.Appliance.from_dict(self.fields))
        return self._appliance

    @property
    def identifier(self) -> str:
        return self.key[0]

    @property
    def email(self) -> str:
        return self.key[1]

    @property
    def created(self) -> datetime:
        return self.appliance.endorsement.created

    @property
    def key(self) -> tuple[str, str, str]:
        """(identifier, endorser email, endorsement date as :func:`model.format_date`
        writes it); from the fields when the index kept them (their dates are written so)."""
        if self._key is None:
            if self._appliance is None:
                endorsement = self.fields["endorsement"]
                key = (self.fields["identifier"], endorsement["email"] or "",
                       endorsement["created"])
            else:
                a = self._appliance
                key = (a.identifier, a.endorsement.email or "",
                       model.format_date(a.endorsement.created))
            object.__setattr__(self, "_key", key)
        return self._key

    def status(self, at: datetime | None = None) -> str:
        """The appliance's status at ``at`` (:meth:`model.Appliance.status`)."""
        if self._appliance is None:
            return model.status_of(self.fields, at)
        return self._appliance.status(at)

    @classmethod
    def from_document(cls, document: bytes) -> Entry:
        """Re-read a stored document (verified when it was accepted, so only parsed here)."""
        return cls(document, model.from_document(xml.parse(document)))

    @classmethod
    def from_dict(cls, document: bytes, data: dict) -> Entry:
        """The entry from its document and the :meth:`as_dict` an index kept of it, without
        parsing the XML again."""
        return cls(document, fields=data)

    def as_dict(self) -> dict:
        """The appliance as a JSON-ready dict: what an index keeps to serve it from."""
        return dict(self.fields) if self.fields is not None else self.appliance.as_dict()


def is_new(entry: Entry, stored: bytes | None, newest: str | None) -> bool:
    """The conflict rule of every backend, so that they cannot judge an upload differently:
    True for an entry to store, False for a replay of ``stored`` (the document kept under the
    entry's key); Conflict for another document under that key, or for an entry older than
    ``newest`` (the date, as in :attr:`Entry.key`, of the latest stored entry of its
    identifier by its endorser)."""
    identifier, email, created = entry.key
    if stored is not None:
        if stored == entry.document:
            return False
        raise Conflict(f"another document is stored for {identifier} by {email} at {created}")
    if newest is not None and newest > created:
        raise Conflict(f"a newer entry ({newest}) of {identifier} by {email} is stored; this "
                       f"one is from {created}")
    return True


def indexed_fields(entry: Entry) -> dict:
    """What every backend derives from an entry to filter, sort, count and search it by (one
    definition, so that the backends cannot index differently): the key, dates as in
    :attr:`Entry.key`, ``deprecated``, and ``web``/``pdisk``: whether the entry has a location
    of that kind. A value the entry lacks is None."""
    a = entry.appliance
    identifier, email, created = entry.key
    return {
        "identifier": identifier, "email": email, "created": created,
        "valid": model.format_date(a.valid) if a.valid else None,
        "deprecated": a.deprecated is not None, "os": a.os, "os_version": a.os_version,
        "os_arch": a.os_arch, "kind": a.kind, "type": a.type, "format": a.format,
        "hypervisor": a.hypervisor, "tag": a.tag, "title": a.title,
        "description": a.description, "subject": a.endorsement.subject, "bytes": a.bytes,
        "web": any(not u.startswith("pdisk:") for u in a.locations),
        "pdisk": any(u.startswith("pdisk:") for u in a.locations),
    }


@dataclass
class Query:
    """What to list: filters, free text, order and page."""

    q: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    status: str = "valid"
    location: str = "all"
    created: datetime | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    latest_only: bool = True
    sort: str = "created"
    descending: bool = True
    limit: int = 50
    offset: int = 0
    facets: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Page:
    """One page of results, the total count and, when asked, facet counts."""

    entries: list[Entry]
    total: int
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class EndorserStats:
    """An endorser and what they published."""

    email: str
    subject: str
    entries: int
    latest: datetime


class Store(abc.ABC):
    """Where accepted documents live. Every method is safe to call from several threads."""

    @abc.abstractmethod
    def add(self, entry: Entry) -> bool:
        """Store an entry durably; True if new, False if this exact document was already there.

        Raises Conflict for an entry older than the latest of its identifier and endorser,
        or for a different document under the same key.
        """

    @abc.abstractmethod
    def get(self, identifier: str, email: str, created: datetime) -> Entry | None:
        """The entry with exactly this key."""

    @abc.abstractmethod
    def newest(self, identifier: str, email: str) -> str | None:
        """The date, as in :attr:`Entry.key`, of the latest stored entry of an identifier by
        an endorser; None when there is none."""

    def would_add(self, entry: Entry) -> bool:
        """What :meth:`add` would answer for ``entry``, without storing it (True: new, False:
        a replay, or Conflict): the moderation workflow asks before it holds an upload for
        its endorser's confirmation, so that a mail is sent only for what can be stored."""
        stored = self.get(entry.identifier, entry.email, entry.created)
        return is_new(entry, None if stored is None else stored.document,
                      self.newest(entry.identifier, entry.email))

    @abc.abstractmethod
    def search(self, query: Query) -> Page:
        """Entries matching a query."""

    @abc.abstractmethod
    def endorsers(self) -> list[EndorserStats]:
        """Every endorser with an entry, by email."""

    @abc.abstractmethod
    def tags(self, email: str) -> dict[str, int]:
        """The tags an endorser used, with how many entries carry each."""

    @abc.abstractmethod
    def remove(self, identifier: str, email: str, created: datetime) -> bool:
        """Delete one entry (moderation); True if it existed."""

    @abc.abstractmethod
    def reindex(self) -> int:
        """Rebuild every index from the stored documents; the number of entries."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many documents are stored."""

    @abc.abstractmethod
    def change_serial(self) -> int:
        """A number that grows with every add, removal and reindex, in any process: cheap to
        read, so that exports know whether what they rendered still holds."""

    @property
    @abc.abstractmethod
    def state(self):
        """The marketplace's shared state beside the entries (a :class:`.state.State`), kept
        by this backend where it keeps the entries: what one server writes, every server
        reads. (Not annotated: the state module imports this one, and an import back, even
        for type checking only, would close a circle.)"""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """True when the store can serve reads and writes now."""

    def health(self) -> dict:
        """What /healthz answers: ``status`` (ok, or degraded: serving with a part missing,
        or unavailable) and ``store`` (whether it can serve); a backend of several nodes
        adds which are missing. One file has nothing more to say than whether it answers."""
        healthy = self.healthy()
        return {"status": "ok" if healthy else "unavailable", "store": healthy}

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""
