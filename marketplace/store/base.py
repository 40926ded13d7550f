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
_WORD = re.compile(r"[\w@.-]+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The words of a free-text query, for every backend: each must match (as a prefix);
    anything between them (quotes, operators...) only separates them."""
    return _WORD.findall(text)


class StoreError(Exception):
    """The store cannot serve (e.g. its server is down); the caller may retry later."""


class Conflict(Exception):
    """An entry that contradicts what is stored (older than the latest, or a changed copy)."""


@dataclass(frozen=True)
class Entry:
    """One stored document and the entry read from it."""

    document: bytes
    appliance: model.Appliance
    fields: dict | None = field(default=None, compare=False, repr=False)

    @property
    def identifier(self) -> str:
        return self.appliance.identifier

    @property
    def email(self) -> str:
        return self.appliance.endorsement.email or ""

    @property
    def created(self) -> datetime:
        return self.appliance.endorsement.created

    @property
    def key(self) -> tuple[str, str, str]:
        return self.identifier, self.email, model.format_date(self.created)

    @classmethod
    def from_document(cls, document: bytes) -> Entry:
        """Re-read a stored document (verified when it was accepted, so only parsed here)."""
        return cls(document, model.from_document(xml.parse(document)))

    @classmethod
    def from_dict(cls, document: bytes, data: dict) -> Entry:
        """The entry from its document and the :meth:`as_dict` an index kept of it, without
        parsing the XML again."""
        return cls(document, model.Appliance.from_dict(data), data)

    def as_dict(self) -> dict:
        """The appliance as a JSON-ready dict: what an index keeps to serve it from."""
        return dict(self.fields) if self.fields is not None else self.appliance.as_dict()


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

    @abc.abstractmethod
    def healthy(self) -> bool:
        """True when the store can serve reads and writes now."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections."""
