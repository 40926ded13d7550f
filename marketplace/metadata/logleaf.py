"""The leaves of the transparency log: one canonical byte string per event.

Every event that changes what the marketplace serves is one leaf: an entry published or
deprecated (a newer signed document that deprecates), removed (its tombstone), a removal
lifted, an upload confirmed through its mailed link, an endorser blocked or unblocked. The
marketplace writes the leaf in the same transaction as the change; a node reads it back from
the served entry bundles and checks that it speaks of the document it holds. Both sides use
this module, so they cannot disagree on the bytes.

The bytes are JSON with sorted keys, no spaces, ASCII only, and only the fields the event
has (``docs/log.md`` lists them): one event has exactly one encoding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

PUBLISHED = "published"
DEPRECATED = "deprecated"
REMOVED = "removed"
LIFTED = "lifted"
CONFIRMED = "confirmed"
BLOCKED = "blocked"
UNBLOCKED = "unblocked"
EVENTS = (PUBLISHED, DEPRECATED, REMOVED, LIFTED, CONFIRMED, BLOCKED, UNBLOCKED)
# The events that put an entry's document in what the marketplace serves.
SERVES = (PUBLISHED, DEPRECATED)
MAX_LEAF = 0xFFFF  # an entry bundle gives each leaf a two-byte length


class LeafError(ValueError):
    """Bytes that are not a leaf of this log."""


@dataclass(frozen=True)
class LogEvent:
    """One event of the log. ``time`` and ``created`` are written as in
    :func:`marketplace.metadata.model.format_date`; ``document_sha256`` is the hex SHA-256 of
    the signed document byte for byte; ``reason_sha256`` that of the reason an operator gave
    (the log proves the reason was not changed later without publishing it)."""

    event: str
    time: str
    identifier: str | None = None
    email: str | None = None
    created: str | None = None
    document_sha256: str | None = None
    endorser: str | None = None
    actor: str | None = None
    reason_sha256: str | None = None

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        return self.identifier, self.email, self.created

    def leaf(self) -> bytes:
        """The canonical bytes of this event."""
        if self.event not in EVENTS:
            raise LeafError(f"unknown log event {self.event!r}")
        fields = {name: value for name, value in asdict(self).items() if value is not None}
        data = json.dumps(fields, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True).encode()
        if len(data) > MAX_LEAF:
            raise LeafError(f"a log leaf is at most {MAX_LEAF} bytes; this one is {len(data)}")
        return data

    @classmethod
    def parse(cls, leaf: bytes) -> LogEvent:
        """The event a leaf holds; LeafError unless the bytes are its canonical encoding."""
        try:
            fields = json.loads(leaf)
            event = cls(**fields)
        except (ValueError, TypeError) as exc:
            raise LeafError(f"not a log leaf: {exc}") from exc
        if any(not isinstance(value, str) for value in fields.values()) or event.leaf() != leaf:
            raise LeafError("not the canonical encoding of a log leaf")
        return event


def digest(data: bytes | str | None) -> str | None:
    """The hex SHA-256 a leaf gives of a document or a reason (None stays None)."""
    if data is None:
        return None
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()
