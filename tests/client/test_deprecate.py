"""The editing step of stratus-deprecate-metadata: mark, re-sign, and refuse other signers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from client.deprecate import deprecate_document, set_deprecated
from marketplace.metadata import document, model
from marketplace.metadata.checks import check_document
from marketplace.metadata.keys import Credentials
from marketplace.metadata.problems import MetadataError
from tests import factories, pki


def credentials(issued: pki.Issued) -> Credentials:
    return Credentials(issued.key, issued.certificate)


def test_the_entry_is_marked_and_signed_again_by_the_same_endorser(ec_signer):
    original = factories.appliance(title="Keep me", tag="keep")
    data = factories.signed(ec_signer, original)

    result = check_document(deprecate_document(data, credentials(ec_signer), "use v2"))

    entry = result.appliance
    assert entry.deprecated == "use v2"
    assert entry.status() == "deprecated"
    assert (entry.identifier, entry.title, entry.tag, entry.checksums) == \
        (original.identifier, "Keep me", "keep", original.checksums)
    assert entry.endorsement.email == "eve.curve@example.org"


def test_the_new_endorsement_is_later_than_the_old_one(ec_signer):
    moment = datetime.now(UTC).replace(microsecond=0)
    data = factories.signed(ec_signer, now=moment)
    old = model.read_endorsement(document.description_of(document.parse(data))).created

    same_second = deprecate_document(data, credentials(ec_signer), now=moment)
    later = deprecate_document(data, credentials(ec_signer), now=moment + timedelta(hours=1))

    assert check_document(same_second).appliance.endorsement.created == old + timedelta(seconds=1)
    assert check_document(later).appliance.endorsement.created == moment + timedelta(hours=1)


def test_an_existing_reason_is_replaced_not_repeated(ec_signer):
    data = factories.signed(ec_signer, factories.appliance(deprecated="first reason"))
    again = deprecate_document(data, credentials(ec_signer), "second reason")
    assert again.count(b"deprecated>") == 2  # one start tag, one end tag
    assert check_document(again).appliance.deprecated == "second reason"


def test_the_element_goes_where_the_profile_orders_it(ec_signer):
    root = model.to_document(factories.appliance(tag="x", description="d", serial_number=3))
    set_deprecated(root, "old")
    order = {f.tag: n for n, f in enumerate(model.FIELDS)}
    names = [child.tag for child in document.elements(document.description_of(root))
             if child.tag in order]
    assert f"{{{document.SLTERMS}}}deprecated" in names
    assert names == sorted(names, key=order.get)
    assert names[-1] == f"{{{document.SLTERMS}}}serial-number"


def test_an_empty_reason_is_refused(ec_signer):
    with pytest.raises(MetadataError, match="reason"):
        deprecate_document(factories.signed(ec_signer), credentials(ec_signer), "  ")


def test_someone_else_cannot_deprecate_the_entry(ec_signer, rsa_signer):
    data = factories.signed(rsa_signer)
    with pytest.raises(MetadataError) as caught:
        deprecate_document(data, credentials(ec_signer))
    rules = {(p.element, p.rule) for p in caught.value.problems}
    assert rules == {("slreq:email", "same-endorser"), ("slreq:subject", "same-endorser")}
    assert "jane.tester@example.org" in str(caught.value)


def test_the_same_person_with_a_renewed_certificate_may_deprecate(ca, other_ca, ec_signer):
    renewed = pki.make_certificate(other_ca, "Eve Curve", pki.EC, email="eve.curve@example.org",
                                   key=ec_signer.key)
    data = factories.signed(ec_signer)
    entry = check_document(deprecate_document(data, credentials(renewed))).appliance
    assert entry.deprecated == "deprecated"


def test_a_certificate_without_email_signs_for_the_entrys_email(signer_without_email):
    data = factories.signed(signer_without_email, email="noah@example.org")
    entry = check_document(deprecate_document(data, credentials(signer_without_email))).appliance
    assert entry.endorsement.email == "noah@example.org"
    assert entry.deprecated == "deprecated"
