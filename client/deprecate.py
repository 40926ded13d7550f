"""stratus-deprecate-metadata: mark an entry deprecated, re-sign it and upload it.

The entry (the latest of an identifier by an endorser, or the one of ``--created``) is
fetched from the marketplace as its stored signed XML and checked; ``slterms:deprecated``
is set to the reason; the document is signed again with the user's credentials, which
must name the same endorser; the new entry is uploaded and its URL printed. The editing
step is :func:`deprecate_document`, which tests call directly.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from cryptography import x509
from lxml import etree

from client import cli, credentials
from client.config import Settings
from client.marketplace import Client, MarketplaceError
from client.upload import add_endpoint_option
from marketplace.metadata import document, model, signature, validation
from marketplace.metadata.checks import check_document
from marketplace.metadata.identifier import metadata_path
from marketplace.metadata.keys import Credentials, certificate_emails
from marketplace.metadata.problems import MetadataError, Problem, fail

DEFAULT_REASON = "deprecated"
DEPRECATED = next(f for f in model.FIELDS if f.name == "deprecated")
_ORDER = {f.tag: index for index, f in enumerate(model.FIELDS)}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("stratus-deprecate-metadata",
                   "Mark a marketplace entry deprecated: fetch it, set slterms:deprecated, "
                   "sign it again with your credentials and upload it.")
    p.add_argument("identifier", metavar="ID", help="the entry's identifier (27 characters)")
    p.add_argument("--email", required=True, help="the entry's endorser (must be you)")
    p.add_argument("--created", metavar="YYYY-MM-DDTHH:MM:SSZ",
                   help="which entry (default: the latest of ID by --email)")
    p.add_argument("--reason", default=DEFAULT_REASON,
                   help=f"why, written in slterms:deprecated (default {DEFAULT_REASON!r})")
    p.add_argument("--profile", choices=sorted(signature.PROFILES),
                   help="signature profile (default: RSA/ECDSA-SHA256)")
    credentials.add_options(p)
    add_endpoint_option(p)
    return p


def check_same_endorser(endorsement: model.Endorsement, certificate: x509.Certificate) -> None:
    """Refuse unless the certificate names the entry's endorser (subject, and email if any).

    The issuer may differ: a renewed certificate from another CA is still the same person.
    """
    problems = []
    emails = [e.lower() for e in certificate_emails(certificate)]
    if emails and (endorsement.email or "").lower() not in emails:
        problems.append(Problem("slreq:email", "same-endorser",
                                f"the entry was endorsed by {endorsement.email}; your "
                                f"certificate is for {', '.join(emails)}"))
    if not signature.same_dn(endorsement.subject, certificate.subject):
        problems.append(Problem("slreq:subject", "same-endorser",
                                f"the entry was endorsed by {endorsement.subject!r}; your "
                                f"certificate is {certificate.subject.rfc4514_string()!r}"))
    if problems:
        raise MetadataError(problems)


def set_deprecated(root: etree._Element, reason: str) -> None:
    """Set ``slterms:deprecated`` to ``reason``, in place, where the profile's order puts it."""
    if not reason.strip():
        raise fail("slterms:deprecated", "reason", "the reason must not be empty")
    description = document.description_of(root)
    existing = description.find(DEPRECATED.tag)
    if existing is not None:
        existing.text = reason
        return
    element = etree.Element(DEPRECATED.tag)
    element.text = reason
    children = document.elements(description)
    later = [c for c in children if _ORDER.get(c.tag, -1) > _ORDER[DEPRECATED.tag]]
    if later:
        position = description.index(later[0])
        previous = description[position - 1] if position else None
        element.tail = (previous.tail if previous is not None else description.text)
        description.insert(position, element)
    else:
        last = children[-1] if children else None
        element.tail = last.tail if last is not None else None
        if last is not None:
            last.tail = description.text
        description.append(element)


def deprecate_document(data: bytes, signer: Credentials, reason: str = DEFAULT_REASON,
                       profile: str = "default", now: datetime | None = None) -> bytes:
    """The document marked deprecated and signed again by the same endorser.

    The new endorsement is dated ``now``, and at least one second after the old one, so
    it becomes the latest entry. Raises MetadataError when the signer is someone else.
    """
    root = document.parse(data)
    old = model.read_endorsement(document.description_of(root))
    check_same_endorser(old, signer.certificate)
    set_deprecated(root, reason)
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    if old.created is not None and moment <= old.created:
        moment = old.created + timedelta(seconds=1)
    signature.sign(root, signer, profile=profile, email=old.email, now=moment)
    signed = document.serialize(root)
    signature.verify(validation.check(signed))
    return signed


def fetch(client: Client, identifier: str, email: str, created: str | None) -> bytes:
    """The stored document of the entry, checked: valid, signed, and the one asked for."""
    created = created or latest_created(client, identifier, email)
    data = client.document(identifier, email, created)
    appliance = check_document(data, require_signature=True).appliance
    if appliance.identifier != identifier or \
            (appliance.endorsement.email or "").lower() != email.lower():
        raise fail("document", "requested-entry", f"the marketplace sent {appliance.identifier}"
                   f" by {appliance.endorsement.email}, not {identifier} by {email}")
    return data


def latest_created(client: Client, identifier: str, email: str) -> str:
    """The endorsement date of the latest entry of ``identifier`` by ``email``."""
    answer = client.json(metadata_path(identifier, email), {"status": "all"})
    dates = sorted(_created_dates(answer))
    if not dates:
        raise MarketplaceError(f"the marketplace has no entry {identifier} by {email}", 404)
    return dates[-1]


def _created_dates(answer) -> list[str]:
    """Every endorsement date in a listing, whatever its envelope (list, items, entries)."""
    if isinstance(answer, dict):
        for key in ("items", "entries", "metadata"):
            if isinstance(answer.get(key), list):
                return _created_dates(answer[key])
        endorsement = answer.get("endorsement")
        created = endorsement.get("created") if isinstance(endorsement, dict) else None
        created = created or answer.get("created")
        return [created] if isinstance(created, str) else []
    if isinstance(answer, list):
        return [date for item in answer for date in _created_dates(item)]
    return []


def run(options: argparse.Namespace, settings: Settings) -> int:
    if options.created:
        model.parse_date(options.created, "--created")
    signer = credentials.load(settings)
    client = Client.from_settings(settings)
    data = fetch(client, options.identifier, options.email, options.created)
    signed = deprecate_document(data, signer, options.reason,
                                profile=settings.get("profile") or "default")
    uploaded = client.upload(signed)
    if options.json:
        cli.emit_json({"identifier": options.identifier, "email": options.email,
                       "reason": options.reason, "url": uploaded.url})
    else:
        print(uploaded.url)
    return 0


main = cli.command(run, build_parser)
