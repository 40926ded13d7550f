"""From an identifier to one trusted entry: ask the marketplace, verify locally, choose.

The marketplace is not trusted. Its answer to ``GET /metadata/<id>?status=all`` is a
``<metadata>`` element holding every endorser's latest signed ``rdf:RDF`` verbatim; each one
is cut out and judged by the trust decision (:func:`~marketplace.metadata.verdict.judge`:
schema and rules, signature, endorser against certificate, the certificate as of the
endorsement date, an endorsement dated in the future refused, and the chain and CRLs when
the node has a trust store). An entry must describe the very identifier asked for, and pass
the node's :class:`~client.node.policy.Policy` (its endorser lists matched as the trust
decision matches them). The newest
entry that passes is chosen; every other one comes back with the reasons it was refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin

from lxml import etree

from client.node.errors import FetchError, NoAcceptableEntry, NotFound
from client.node.policy import Facts, Policy
from client.node.session import network_reason
from client.node.target import Target
from marketplace.metadata import document as doc
from marketplace.metadata.identifier import metadata_path
from marketplace.metadata.keys import certificate_emails
from marketplace.metadata.model import format_date
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.verdict import Checked, Moment, Verdict, judge

PAGE = 100
MAX_PAGES = 20
MAX_LISTING_BYTES = 64 << 20  # all pages of one image's listing together
ANSWER_SECONDS = 300.0  # the longest one answer may take, however it trickles in
XML_ACCEPT = "application/rdf+xml, application/xml;q=0.9"


@dataclass
class Candidate:
    """One entry of the marketplace's answer, verified or not, with why it was refused."""

    url: str
    document: bytes
    verdict: Verdict | None = None
    facts: Facts | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def checked(self) -> Checked | None:
        return self.verdict.checked if self.verdict else None

    @property
    def created(self) -> str | None:
        return self.facts.created if self.facts else None

    @property
    def key(self) -> tuple[str, str, str] | None:
        """(identifier, email, created) of a verified entry: how the marketplace names it."""
        facts = self.facts
        if facts is None or not facts.email or not facts.created:
            return None
        return facts.identifier, facts.email, facts.created

    def summary(self) -> dict:
        return {"url": self.url, "endorser": self.facts.endorser() if self.facts else None,
                "created": self.created, "accepted": not self.reasons,
                "reasons": self.reasons}


@dataclass
class Resolution:
    """The chosen entry and the others (refused, or older than the chosen one)."""

    identifier: str
    chosen: Candidate
    others: list[Candidate]
    inclusion: object | None = None  # client.node.transparency.Inclusion: what the log showed

    def summary(self) -> dict:
        log = self.inclusion.summary() if self.inclusion is not None else {"checked": False}
        return {"chosen": self.chosen.summary(), "others": [c.summary() for c in self.others],
                "log": log}


def resolve(target: Target, policy: Policy, session, timeout: tuple[float, float],
            now: datetime | None = None) -> Resolution:
    """Fetch, verify and choose; raises NotFound or NoAcceptableEntry (with every
    candidate's reasons)."""
    now = now or datetime.now(UTC)
    documents = fetch_documents(target, session, timeout)
    if not documents:
        raise NotFound(f"the marketplace at {target.base} has no entry for "
                       f"{target.identifier}", target.identifier)
    candidates = [check_candidate(url, data, target.identifier, policy, now, target.base)
                  for url, data in documents]
    return choose(target.identifier, candidates)


def choose(identifier: str, candidates: list[Candidate]) -> Resolution:
    accepted = [c for c in candidates if not c.reasons]
    if not accepted:
        raise NoAcceptableEntry(f"no entry of {identifier} is acceptable "
                                f"({len(candidates)} refused)", identifier,
                                [c.summary() for c in candidates])
    chosen = max(accepted, key=lambda c: c.created or "")
    others = [c for c in candidates if c is not chosen]
    for other in others:
        if not other.reasons:
            other.reasons = [f"passed, but older than the chosen entry of {chosen.created}"]
    return Resolution(identifier, chosen, others)


def check_candidate(url: str, data: bytes, identifier: str, policy: Policy,
                    now: datetime, endpoint: str | None = None) -> Candidate:
    """Verify one document locally (:func:`verified_candidate`) and apply the policy to it."""
    candidate = verified_candidate(url, data, identifier, policy, now, endpoint)
    if candidate.facts is not None:
        candidate.reasons += policy.refusals(candidate.facts, now)
    return candidate


def verified_candidate(url: str, data: bytes, identifier: str, policy: Policy,
                       now: datetime, endpoint: str | None = None) -> Candidate:
    """Verify one document locally: the trust decision with the policy's trust store, and
    that it describes ``identifier``; not the policy's lists or statuses, so that a
    deprecation (which the policy refuses to download) can still be proven authentic.

    ``url`` is where it came from; with the marketplace's ``endpoint``, a verified entry is
    named by its own URL there (``metadata/<id>/<email>/<created>``) instead.
    """
    candidate = Candidate(url, data)
    try:
        candidate.verdict = judge(data, Moment.endorsement(now), policy.trust_store())
    except MetadataError as exc:
        candidate.reasons = [f"verification failed: {p}" for p in exc.problems]
        return candidate
    candidate.facts = facts_of(candidate.verdict.checked)
    if endpoint and candidate.facts.email and candidate.facts.created:
        candidate.url = urljoin(endpoint, metadata_path(
            candidate.facts.identifier, candidate.facts.email, candidate.facts.created))
    if candidate.facts.identifier != identifier:
        candidate.reasons.append(f"the entry describes image {candidate.facts.identifier}, "
                                 f"not {identifier}")
    return candidate


def same_endorser(entry: Facts, other: Facts) -> bool:
    """Whether ``other`` was signed by the endorser of ``entry``: the same email, and a
    certificate of the same subject or one that carries that email. A document's email alone
    is its signer's claim, which anyone can make."""
    email = (entry.email or "").lower()
    if not email or (other.email or "").lower() != email:
        return False
    return other.subject == entry.subject or \
        email in (e.lower() for e in other.certificate_emails)


def facts_of(checked: Checked) -> Facts:
    """The values the policy needs, read from a verified entry."""
    appliance, certificate = checked.appliance, checked.certificate
    endorsement = appliance.endorsement
    emails = list(certificate_emails(certificate)) if certificate is not None else []
    return Facts(
        identifier=appliance.identifier,
        sha1=appliance.checksums.get("SHA-1", ""),
        email=endorsement.email,
        certificate_emails=emails,
        subject=certificate.subject.rfc4514_string() if certificate is not None
        else endorsement.subject,
        issuer=certificate.issuer.rfc4514_string() if certificate is not None
        else (endorsement.issuers[0] if endorsement.issuers else None),
        created=format_date(endorsement.created) if endorsement.created else None,
        valid=format_date(appliance.valid) if appliance.valid else None,
        deprecated=appliance.deprecated,
        checksums=dict(appliance.checksums))


# --- talking to the marketplace -----------------------------------------------------------


def fetch_documents(target: Target, session,
                    timeout: tuple[float, float]) -> list[tuple[str, bytes]]:
    """The signed documents the marketplace offers for the target, with their URLs.

    Its answers are streamed and together capped at MAX_LISTING_BYTES, and each must end
    within ANSWER_SECONDS: an untrusted server must not be able to make the node hold more
    than that in memory, nor keep it waiting by sending a byte now and then.
    """
    if target.entry is not None:
        email, created = target.entry
        url = urljoin(target.base, metadata_path(target.identifier, email, created))
        data = _get(session, url, timeout, {}, MAX_LISTING_BYTES)
        return [] if data is None else [(url, data)]
    documents: list[tuple[str, bytes]] = []
    room = MAX_LISTING_BYTES
    for page in range(MAX_PAGES):
        params = {"status": "all", "limit": str(PAGE), "offset": str(page * PAGE)}
        data = _get(session, target.listing_url, timeout, params, room)
        if data is None:
            return documents
        room -= len(data)
        total, found = split_listing(data)
        documents += [(target.listing_url, document) for document in found]
        if not found or len(documents) >= total:
            break
    return documents


def _get(session, url: str, timeout: tuple[float, float], params: dict,
         room: int) -> bytes | None:
    """The body of a GET (None for a 404), read as a stream and refused past ``room`` bytes."""
    answer = get(session, url, timeout, room, params)
    return None if answer is None else answer[0]


def get(session, url: str, timeout: tuple[float, float], room: int, params: dict | None = None,
        accept: str = XML_ACCEPT) -> tuple[bytes, dict[str, str]] | None:
    """The body and headers of a GET from the marketplace (None for a 404), read as a stream
    and refused past ``room`` bytes; FetchError for anything else that is not a 2xx."""
    import requests

    try:
        response = session.get(url, params=params or {}, timeout=timeout, stream=True,
                               headers={"Accept": accept})
    except requests.exceptions.SSLError as exc:
        raise FetchError(f"TLS: the marketplace's certificate at {url} was not accepted: "
                         f"{network_reason(exc)}") from None
    except requests.RequestException as exc:
        raise FetchError(f"cannot reach the marketplace at {url}: {network_reason(exc)}") \
            from None
    with response:
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            excerpt = next(response.iter_content(300), b"")[:300]
            raise FetchError(f"the marketplace answered HTTP {response.status_code} to {url}: "
                             f"{excerpt.decode('utf-8', 'replace')}")
        return _read_capped(response, url, room), dict(response.headers)


def _read_capped(response, url: str, room: int) -> bytes:
    """The body, read as it comes (one read of the connection at a time, so that neither the
    cap nor the deadline waits for a buffer to fill)."""
    import urllib3

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > room:
        raise _too_large(url, room)
    deadline = time.monotonic() + ANSWER_SECONDS
    chunks, size = [], 0
    try:
        while chunk := response.raw.read1(1 << 20, decode_content=True):
            size += len(chunk)
            if size > room:
                raise _too_large(url, room)
            if time.monotonic() > deadline:
                raise FetchError(f"the marketplace's answer to {url} took longer than "
                                 f"{ANSWER_SECONDS:g} s")
            chunks.append(chunk)
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise FetchError(f"the marketplace's answer to {url} broke off: {exc}") from None
    return b"".join(chunks)


def _too_large(url: str, room: int) -> FetchError:
    return FetchError(f"the marketplace's answer to {url} is too large: the node reads at most "
                      f"{room} bytes of it")


def split_listing(data: bytes) -> tuple[int, list[bytes]]:
    """The ``total`` and each ``rdf:RDF`` of a ``<metadata>`` listing, as a document."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, collect_ids=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FetchError(f"the marketplace's listing is not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise FetchError("the marketplace's listing has a DOCTYPE; refused")
    if root.tag == doc.RDF_ROOT:  # a single document, not a listing
        return 1, [etree.tostring(root)]
    if root.tag != "metadata":
        raise FetchError(f"the marketplace's answer is a <{root.tag}>, not a <metadata> listing")
    documents = [etree.tostring(child, with_tail=False) for child in root
                 if child.tag == doc.RDF_ROOT]
    try:
        total = int(root.get("total", len(documents)))
    except ValueError:
        total = len(documents)
    return total, documents
