"""The node's trust policy: which verified entries it accepts and which checksums it checks.

The lists are those of the original StratusLab ``policy.cfg``: white- and blacklists of
endorsers, image identifiers and SHA-1 checksums. An empty whitelist lets everything
through (as the original's empty policy did); a blacklist match always refuses. The trust
store (CA certificates and CRLs) is applied by the metadata core when each entry is
verified; this module only loads it.

Endorsers are written as emails or as DNs and matched by the trust decision's
:class:`~marketplace.metadata.verdict.Endorser`, as the marketplace matches its lists: a
DN as a name (RFC 2253 text from Java, OpenSSL or Python all match); an email on a
*whitelist* only when the certificate itself carries that address (a document's email is
the signer's claim, so it cannot by itself satisfy a whitelist); on a blacklist the
claimed email matches too.

The rules work on :class:`Facts`, plain values read from a verified entry, so that a cache
hit re-applies the current policy without parsing XML.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from client.node.config import ConfigError
from marketplace.metadata.digests import WeakChecksums, choose, same_digest
from marketplace.metadata.identity import Endorser, Identity, first_naming

DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class Facts:
    """What the policy looks at in one verified entry."""

    identifier: str
    sha1: str
    email: str | None = None
    certificate_emails: list[str] = field(default_factory=list)
    subject: str | None = None
    issuer: str | None = None
    created: str | None = None
    valid: str | None = None
    deprecated: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Facts:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def identity(self) -> Identity:
        """Who endorsed, in the form the trust decision's endorser lists match."""
        return Identity((self.email or "").lower() or None,
                        frozenset(e.lower() for e in self.certificate_emails), self.subject)

    def endorser(self) -> str:
        if self.email and self.subject:
            return f"{self.email} ({self.subject})"
        return self.email or self.subject or "unknown endorser"


@dataclass
class Policy:
    """White/blacklists, trust store paths, and what to accept beyond valid entries."""

    whitelist_endorsers: list[str] = field(default_factory=list)
    blacklist_endorsers: list[str] = field(default_factory=list)
    whitelist_images: list[str] = field(default_factory=list)
    blacklist_images: list[str] = field(default_factory=list)
    whitelist_checksums: list[str] = field(default_factory=list)
    blacklist_checksums: list[str] = field(default_factory=list)
    trust_paths: list[Path] = field(default_factory=list)
    allow_expired: bool = False
    allow_deprecated: bool = False
    allow_weak: bool = False
    verify_all: bool = False
    _trust_store: object = field(default=None, repr=False, compare=False)

    @classmethod
    def from_config(cls, config) -> Policy:
        """The policy of a :class:`~client.node.config.FetcherConfig`."""
        lists = config.policy
        return cls(
            whitelist_endorsers=lists.get("whitelistendorsers", []),
            blacklist_endorsers=lists.get("blacklistendorsers", []),
            whitelist_images=lists.get("whitelistimages", []),
            blacklist_images=lists.get("blacklistimages", []),
            whitelist_checksums=lists.get("whitelistchecksums", []),
            blacklist_checksums=lists.get("blacklistchecksums", []),
            trust_paths=[Path(p).expanduser() for p in
                         lists.get("certificates", []) + lists.get("crls", [])],
            allow_expired=bool(config.allow_expired),
            allow_deprecated=bool(config.allow_deprecated),
            allow_weak=bool(config.allow_weak),
            verify_all=bool(config.verify_all))

    def __post_init__(self):
        """An endorser list entry that is neither an email nor a DN is a configuration
        error, not an entry that silently matches nobody."""
        for name in ("whitelist_endorsers", "blacklist_endorsers"):
            for text in getattr(self, name):
                try:
                    Endorser.parse(text)
                except ValueError as exc:
                    raise ConfigError(f"{name.replace('_', '')}: {exc}") from None

    # --- the trust store -------------------------------------------------------------

    def trust_store(self):
        """The TrustStore of the configured paths, or None when there are none."""
        if not self.trust_paths:
            return None
        if self._trust_store is None:
            from marketplace.metadata.trust import TrustStore

            missing = [str(p) for p in self.trust_paths if not p.exists()]
            if missing:
                raise OSError(f"trusted CA certificates or CRLs not found: {', '.join(missing)}")
            self._trust_store = TrustStore.load(*self.trust_paths)
        return self._trust_store

    def trust_fingerprint(self) -> str:
        """Changes when a file of the trust store is added, removed or modified (stat only)."""
        digest = hashlib.sha256()
        for path in self.trust_paths:
            files = sorted(path.iterdir()) if path.is_dir() else [path]
            for file in files:
                try:
                    st = file.stat()
                except OSError:
                    continue
                digest.update(f"{file}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32] if self.trust_paths else "none"

    # --- the rules ---------------------------------------------------------------------

    def refusals(self, facts: Facts, now: datetime | None = None) -> list[str]:
        """Why the policy refuses the entry; empty when it accepts it."""
        return (self.endorser_refusals(facts) + self.image_refusals(facts)
                + self.status_refusals(facts, now) + self.checksum_refusals(facts))

    def endorser_refusals(self, facts: Facts) -> list[str]:
        reasons = []
        identity = facts.identity()
        if self.whitelist_endorsers and first_naming(
                map(Endorser.parse, self.whitelist_endorsers), identity) is None:
            reasons.append(f"endorser {facts.endorser()} is not in the whitelist of endorsers"
                           + ("" if identity.email_proof or not facts.email else
                              " (the certificate does not carry it, so the document's email "
                              "is unconfirmed)"))
        blocked = first_naming(map(Endorser.parse, self.blacklist_endorsers), identity,
                               claimed=True)
        if blocked is not None:
            reasons.append(f"endorser {facts.endorser()} is blacklisted ({blocked.text})")
        return reasons

    def image_refusals(self, facts: Facts) -> list[str]:
        reasons = []
        if self.whitelist_images and facts.identifier not in self.whitelist_images:
            reasons.append(f"image {facts.identifier} is not in the whitelist of images")
        if facts.identifier in self.blacklist_images:
            reasons.append(f"image {facts.identifier} is blacklisted")
        if self.whitelist_checksums and not any(same_digest(facts.sha1, value)
                                                for value in self.whitelist_checksums):
            reasons.append(f"SHA-1 checksum {facts.sha1} is not in the whitelist of checksums")
        if any(same_digest(facts.sha1, value) for value in self.blacklist_checksums):
            reasons.append(f"SHA-1 checksum {facts.sha1} is blacklisted")
        return reasons

    def status_refusals(self, facts: Facts, now: datetime | None = None) -> list[str]:
        reasons = []
        if facts.deprecated is not None and not self.allow_deprecated:
            why = f": {facts.deprecated}" if facts.deprecated else ""
            reasons.append(f"the entry is deprecated{why} (--allow-deprecated accepts it)")
        # Dates are YYYY-MM-DDTHH:MM:SSZ in UTC: as text they sort as moments do.
        moment = now.astimezone(UTC).strftime(DATE_FORMAT) if now else \
            time.strftime(DATE_FORMAT, time.gmtime())
        if facts.valid and not self.allow_expired and facts.valid < moment:
            reasons.append(f"the entry expired on {facts.valid} (--allow-expired accepts it)")
        return reasons

    def checksum_refusals(self, facts: Facts) -> list[str]:
        try:
            self.algorithms(facts.checksums)
        except WeakChecksums as exc:
            return [str(exc)]
        return []

    def algorithms(self, checksums: dict[str, str]) -> list[str]:
        """The checksums to verify while downloading, as the core chooses them under this
        policy's ``allow_weak`` and ``verify_all``."""
        return choose(checksums, allow_weak=self.allow_weak, every=self.verify_all)
