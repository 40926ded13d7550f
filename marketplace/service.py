"""What the marketplace does with a document, apart from HTTP: accept it, or say why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from marketplace.metadata.checks import check_document
from marketplace.metadata.problems import fail
from marketplace.metadata.trust import TrustStore
from marketplace.moderation.workflow import Moderation, PendingConfirmation, Refused
from marketplace.store.base import Entry, Store

__all__ = ["Marketplace", "PendingConfirmation", "Refused", "TooLarge"]

CLOCK_SKEW = timedelta(minutes=5)


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
        trust = settings["TRUST_STORE"]
        return cls(store, int(settings["MAX_UPLOAD_BYTES"]),
                   TrustStore.load(Path(trust)) if trust else None,
                   Moderation.from_settings(settings, store), settings["PRIMARY_URL"])

    def accept(self, data: bytes, now: datetime | None = None,
               client: str = "") -> tuple[Entry, bool]:
        """Verify a signed document and store it; the entry and whether it is new.

        The signature must verify, the endorser match the certificate, the certificate be
        valid now (and chain to the trust store when there is one), and the endorsement
        not be dated in the future. Then the publication policy (:mod:`marketplace.
        moderation`) has its say. Raises MetadataError, TooLarge, store.Conflict (Removed:
        operators removed the entry), Refused (blocked or unlisted endorser; a replica),
        PendingConfirmation (kept until its endorser confirms by mail), OverQuota (the
        endorser or the ``client`` address had its confirmation mails) or MailUnavailable.
        """
        if self.primary_url:
            raise Refused("read-only", f"this marketplace is a read-only replica of "
                          f"{self.primary_url}: upload to the primary", element="document")
        if len(data) > self.max_bytes:
            raise TooLarge(f"the document is {len(data)} bytes; the limit is {self.max_bytes}")
        now = now or datetime.now(UTC)
        checked = check_document(data, require_signature=True, at=now,
                                 trust_store=self.trust_store)
        created = checked.appliance.endorsement.created
        if created > now + CLOCK_SKEW:
            raise fail("dcterms:created", "not-in-future",
                       f"the endorsement is dated {created:%Y-%m-%dT%H:%M:%SZ}, in the future")
        entry = Entry(data, checked.appliance)
        if self.moderation is None:
            return entry, self.store.add(entry)
        self.moderation.check_removed(entry.key)
        self.moderation.admit(entry, checked.certificate, now, client)
        return entry, self.moderation.publish(entry, now)

    def close(self) -> None:
        self.store.close()
        if self.moderation is not None:
            self.moderation.close()
