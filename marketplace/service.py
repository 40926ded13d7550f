"""What the marketplace does with a document, apart from HTTP: accept it, or say why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from marketplace.metadata.trust import TrustStore
from marketplace.metadata.verdict import Moment, judge
from marketplace.moderation.workflow import Moderation, PendingConfirmation, Refused
from marketplace.store.base import Entry, Store
from marketplace.store.state import Publication

__all__ = ["Marketplace", "PendingConfirmation", "Refused", "TooLarge", "open_store"]


def open_store(settings: dict[str, str]) -> Store:
    """The store the settings name (the web app, the commands and the demo all open it so)."""
    if settings["STORE"] == "sqlite":
        from marketplace.store.sqlite import SQLiteStore
        return SQLiteStore(Path(settings["DATA_DIR"]) / "marketplace.db")
    if settings["STORE"] == "elasticsearch":
        from marketplace.store.elastic import ElasticStore
        return ElasticStore.from_settings(settings)
    raise ValueError(f"unknown store {settings['STORE']!r}: use sqlite or elasticsearch")


class TooLarge(ValueError):
    """A document over the size limit."""


@dataclass
class Marketplace:
    """The store with the acceptance policy in front of it."""

    store: Store
    max_bytes: int
    trust_store: TrustStore | None = None
    moderation: Moderation | None = None
    primary_url: str = ""  # set: a read-only replica of that marketplace

    @classmethod
    def from_settings(cls, settings: dict[str, str], store: Store) -> Marketplace:
        trust = TrustStore.load(Path(settings["TRUST_STORE"])) \
            if settings["TRUST_STORE"] else None
        return cls(store, int(settings["MAX_UPLOAD_BYTES"]), trust,
                   Moderation.from_settings(settings, store, trust), settings["PRIMARY_URL"])

    def accept(self, data: bytes, now: datetime | None = None,
               client: str = "") -> tuple[Entry, Publication]:
        """Judge a signed document as of now and publish it; the entry and what its
        publication did (whether it is new, its serial in the change feed, its log leaf).

        The trust decision (:func:`~marketplace.metadata.verdict.judge`) as of now, with
        this marketplace's trust store and endorser lists, then the publication policy
        (:meth:`~marketplace.moderation.workflow.Moderation.admit`). Raises MetadataError,
        TooLarge, store.Conflict (Removed: operators removed the entry), Refused (blocked or
        unlisted endorser; a replica), PendingConfirmation (kept until its endorser confirms
        by mail), OverQuota (the endorser or the ``client`` address had its confirmation
        mails) or MailUnavailable.
        """
        if self.primary_url:
            raise Refused("read-only", f"this marketplace is a read-only replica of "
                          f"{self.primary_url}: upload to the primary", element="document")
        if len(data) > self.max_bytes:
            raise TooLarge(f"the document is {len(data)} bytes; the limit is {self.max_bytes}")
        now = now or datetime.now(UTC)
        if self.moderation is None:  # no lists, no mail: as UNLISTED_ENDORSERS=publish
            verdict = judge(data, Moment.upload(now), self.trust_store)
            verdict.identity.require_proven_email()
            entry = Entry(data, verdict.appliance)
            return entry, self.store.state.publish(entry, now)
        verdict = self.moderation.judge(data, Moment.upload(now))
        entry = Entry(data, verdict.appliance)
        self.moderation.admit(entry, verdict, now, client)
        return entry, self.moderation.publish(entry, now)

    def close(self) -> None:
        self.store.close()
