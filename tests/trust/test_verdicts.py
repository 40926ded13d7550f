"""The trust suite: the same documents judged by every caller of the trust decision.

Each case is one real signed document (test PKI, real CA bundle and CRL file, real SQLite
stores). It goes through the marketplace's upload (``Marketplace.accept``), the moderation
workflow (a held upload confirmed by its mailed link), a replica's ``verify``, the node's
``check_candidate`` and ``stratus-validate-metadata``'s verdict; every caller must give
the expected answer: accepted, or refused under the named rule. Where callers differ it is
by design and written in the case: the moment (an upload judges the certificate now, a node
or a person as of the endorsement), the lists (the validate command has none), and the
email rule (only a mail round trip or the certificate proves an email; a node does not
publish under emails).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client import validate
from client.node.policy import Policy
from client.node.resolve import check_candidate
from marketplace.metadata import document as doc
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.trust import TrustStore
from marketplace.metadata.verdict import Refused
from marketplace.moderation.workflow import token_hash
from marketplace.replica import Replicator
from marketplace.store.base import Entry
from marketplace.store.state import PENDING, Event, Upload
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories, pki

NOW = datetime.now(UTC).replace(microsecond=0)
CALLERS = ("upload", "workflow", "replica", "node", "validate")
BLOCKED = ["bob@example.org", "cn=DORA  DN, ou=testing department, o=marketplace tests, c=eu"]


@dataclass
class Case:
    """A document and the rule each caller refuses it under (None: accepted)."""

    name: str
    document: bytes
    refused: str | None
    unlike: dict[str, str | None] = field(default_factory=dict)

    def expected(self, caller: str) -> str | None:
        return self.unlike.get(caller, self.refused)


def sign(signer: pki.Issued, when: datetime = NOW, email: str | None = None, **fields) -> bytes:
    entry = factories.appliance(created=when, **fields)
    return factories.signed(signer, entry, now=when, email=email)


def with_certificate(data: bytes, other: pki.Issued) -> bytes:
    """The document with another certificate (same key) in KeyInfo: KeyInfo is not signed."""
    root = doc.parse(data)
    (holder,) = root.iter("{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
    holder.text = "".join(other.certificate_pem().decode().splitlines()[1:-1])
    return doc.serialize(root)


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory, ca):
    """The CA bundle with a CRL revoking one signer, and the cases signed for it."""
    revoked = pki.make_certificate(ca, "Rita Revoked", email="rita@example.org")
    crl = pki.make_crl(ca, {revoked.serial: NOW - timedelta(hours=2)})
    bundle = tmp_path_factory.mktemp("trust") / "bundle.pem"
    bundle.write_bytes(ca.certificate_pem() + pki.crl_pem(crl))
    return bundle, revoked


@pytest.fixture(scope="module")
def cases(pki_files, ca, other_ca) -> list[Case]:
    _, revoked = pki_files
    key = pki.make_key()
    good = pki.make_certificate(ca, "Gina Good", email="gina@example.org")
    good_doc = sign(good)
    tampered = good_doc.replace(b"Test image", b"Evil image")
    plain = pki.make_certificate(ca, "Wendy Two", key=key)
    carrying = pki.make_certificate(ca, "Wendy Two", key=key, email="wendy@example.org")
    mismatch = with_certificate(sign(plain, email="someone.else@example.org"), carrying)
    old = pki.make_certificate(ca, "Olga Old", email="olga@example.org",
                               validity=(NOW - timedelta(days=20), NOW - timedelta(days=10)))
    later = pki.make_certificate(ca, "Lars Later", email="lars@example.org",
                                 validity=(NOW + timedelta(days=1), NOW + timedelta(days=30)))
    stranger = pki.make_certificate(other_ca, "Stan Ger", email="stan@example.org")
    bob = pki.make_certificate(ca, "Bob Blocked", email="bob@example.org")
    dora = pki.make_certificate(ca, "Dora Dn", email="dora@example.org")
    noah = pki.make_certificate(ca, "Noah Claims")
    return [
        Case("good", good_doc, None),
        Case("tampered", tampered, "signature-value"),
        Case("email-not-the-certificates", mismatch, "endorser-certificate"),
        Case("expired-at-the-moment", sign(old, NOW - timedelta(days=12)),
             "certificate-validity", {"node": None, "validate": None}),
        Case("not-yet-valid", sign(later), "certificate-validity"),
        Case("future-dated", sign(good, NOW + timedelta(days=2)), "not-in-future"),
        Case("revoked", sign(revoked, NOW - timedelta(hours=1)), "revoked"),
        Case("untrusted-ca", sign(stranger), "trust-chain"),
        Case("blocked-by-email", sign(bob), "blocked", {"validate": None}),
        Case("blocked-by-dn-written-otherwise", sign(dora), "blocked", {"validate": None}),
        Case("email-unproven", sign(noah, email="gina@example.org"), "endorser-email-unproven",
             {"workflow": None, "node": None, "validate": None}),
    ]


def rule_of(text: str) -> str:
    """The rule a refusal names: ``[rule]`` of a problem, or a blocked endorser."""
    if "blocked" in text or "blacklisted" in text:
        return "blocked"
    found = re.search(r"\[([a-z0-9-]+)\]", text)
    return found.group(1) if found else text


@pytest.fixture(scope="module")
def judges(tmp_path_factory, pki_files):
    """One function per caller: the rule it refuses a document under, or None."""
    bundle, _ = pki_files
    root = tmp_path_factory.mktemp("callers")
    primary = marketplace_of(create_app(data_dir=str(root / "primary"), trust_store=str(bundle)))
    replica = marketplace_of(create_app(data_dir=str(root / "replica"), trust_store=str(bundle),
                                        primary_url="http://127.0.0.1:9/"))
    for market in (primary, replica):
        for endorser in BLOCKED:
            market.moderation.block(endorser, "ops", "in the trust suite", NOW)
    policy = Policy(blacklist_endorsers=BLOCKED, trust_paths=[bundle])
    store = TrustStore.load(bundle)

    def upload(data: bytes) -> str | None:
        try:
            primary.accept(data, now=NOW)
        except MetadataError as exc:
            return exc.problems[0].rule
        except Refused as exc:
            return rule_of(exc.rule)
        return None

    def workflow(data: bytes) -> str | None:
        """Held as a confirm-mode upload, then confirmed by its link: judged again."""
        entry = Entry.from_document(data)
        token = secrets.token_urlsafe(16)
        primary.moderation.state.hold(
            Upload(*entry.key, data, "CN=held", "held", PENDING, NOW, NOW + timedelta(days=2)),
            token_hash(token), Event(entry.email, "held"))
        outcome = primary.moderation.respond("confirm", token, NOW)
        return None if outcome.state in ("published", "known") else rule_of(outcome.message)

    def replicated(data: bytes) -> str | None:
        try:
            Replicator("http://127.0.0.1:9/", replica).verify(data, Entry.from_document(data).key,
                                                              published=NOW)
        except MetadataError as exc:
            return exc.problems[0].rule
        except Refused as exc:
            return rule_of(exc.rule)
        return None

    def node(data: bytes) -> str | None:
        identifier = Entry.from_document(data).identifier
        reasons = check_candidate("test", data, identifier, policy, NOW).reasons
        return rule_of(reasons[0]) if reasons else None

    def validated(data: bytes) -> str | None:
        path = root / "document.xml"
        path.write_bytes(data)
        result = validate.verdict(Path(path), None, store, require_signature=True)
        return None if result["valid"] else result["problems"][0]["rule"]

    yield {"upload": upload, "workflow": workflow, "replica": replicated, "node": node,
           "validate": validated}
    primary.close()
    replica.close()


def test_every_caller_gives_the_same_verdicts(cases, judges):
    found = {case.name: {caller: judges[caller](case.document) for caller in CALLERS}
             for case in cases}
    wanted = {case.name: {caller: case.expected(caller) for caller in CALLERS}
              for case in cases}
    assert found == wanted


def test_the_unproven_email_is_named_so_by_the_callers_that_show_it(cases, judges, tmp_path,
                                                                  pki_files):
    (unproven,) = [c for c in cases if c.name == "email-unproven"]
    path = tmp_path / "claim.xml"
    path.write_bytes(unproven.document)
    result = validate.verdict(path, None, TrustStore.load(pki_files[0]))
    assert result["valid"] and result["email_proof"] is None
    (good,) = [c for c in cases if c.name == "good"]
    path.write_bytes(good.document)
    assert validate.verdict(path, None, None)["email_proof"] == "certificate"
