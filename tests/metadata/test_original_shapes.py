"""Documents in the shapes the original StratusLab tools wrote are accepted (issue 12, 3).

RDF/XML gives the order of properties no meaning, and the original tools wrote several:
the original marketplace's tag documents put ``dcterms:alternative`` first, the original
template wrote empty elements for unknown values, and the original deprecator appends an
endorsement with an unqualified ``parseType`` and ``slterms:deprecated`` at the end. Each is
made here (tests/compat/original.py), signed as the original signer signed, validated and
judged. Every rule but the order still holds: the counts, the parse types, the values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from marketplace.metadata import document, model, validation, verdict
from marketplace.metadata.problems import MetadataError
from tests import factories
from tests.compat import original
from tests.data import STRATUSLAB

NOW = datetime.now(UTC).replace(microsecond=0)
EMPTY_IN_THE_ORIGINAL_TEMPLATE = (
    (original.DCTERMS, "description"), (original.DCTERMS, "compression"),
    (original.SLTERMS, "os-version"), (original.SLTERMS, "os-arch"),
    (original.SLTERMS, "version"))


def unsigned(**fields) -> etree._Element:
    return model.to_document(factories.appliance(tag="sl-base", **fields))


def judged(data: bytes) -> verdict.Verdict:
    return verdict.judge(data, verdict.Moment.upload(NOW))


def rules(root: etree._Element) -> set[tuple[str, str]]:
    return {(p.element, p.rule) for p in validation.validate(document.parse(
        document.serialize(root)))}


def with_property(root: etree._Element, snippet: str, first: bool = False) -> etree._Element:
    element = etree.fromstring(
        f'<w xmlns:rdf="{original.RDF}" xmlns:dcterms="{original.DCTERMS}" '
        f'xmlns:slreq="{original.SLREQ}" xmlns:slterms="{original.SLTERMS}">{snippet}</w>')[0]
    found = original.description(root)
    found.insert(0, element) if first else found.append(element)
    return root


# --- property order ------------------------------------------------------------------------

def test_the_tag_before_the_size_validates_and_verifies(rsa_signer):
    root = original.tag_document_order(unsigned())
    first = document.elements(original.description(root))[0]
    assert first.tag == f"{{{original.DCTERMS}}}alternative"
    data = original.sign(root, rsa_signer, "jane@example.org", NOW)
    assert judged(data).appliance.tag == "sl-base"


def test_every_property_in_reverse_order_validates_and_verifies(rsa_signer):
    data = original.sign(original.reversed_order(unsigned()), rsa_signer,
                         "jane@example.org", NOW)
    root = document.parse(data)
    children = document.elements(original.description(root))
    assert children[-1].tag == f"{{{original.DCTERMS}}}identifier"
    assert judged(data).appliance.identifier == children[-1].text


@pytest.mark.parametrize("name", sorted(p.name for p in STRATUSLAB.glob("valid-*.xml")
                                        if b"<Signature" not in p.read_bytes()
                                        or p.name == "valid-minimal-signature.xml"))
def test_original_library_documents_validate_in_reverse_order(name):
    root = document.parse((STRATUSLAB / name).read_bytes())
    assert rules(original.reversed_order(root)) == set()


def test_empty_elements_of_the_original_template_validate(rsa_signer):
    root = unsigned(description=None, compression=None, os_version=None, os_arch=None,
                    version=None)
    found = original.description(root)
    for namespace, name in EMPTY_IN_THE_ORIGINAL_TEMPLATE:
        for old in found.findall(f"{{{namespace}}}{name}"):
            found.remove(old)
        etree.SubElement(found, f"{{{namespace}}}{name}")
    data = original.sign(root, rsa_signer, "jane@example.org", NOW)
    assert b"<dcterms:compression/>" in data
    appliance = judged(data).appliance
    assert appliance.compression in (None, "")


# --- the original deprecator ---------------------------------------------------------------

def deprecated_by_the_original(signer, reason: str = "superseded by 2.0") -> bytes:
    entry = document.parse(factories.signed(signer, factories.appliance(tag="sl-base"),
                                            now=NOW - timedelta(hours=1), profile="stratuslab"))
    return original.sign(original.deprecator_form(entry, reason), signer,
                         "jane@example.org", NOW)


def test_the_deprecators_exact_form_is_what_the_test_posts(rsa_signer):
    root = document.parse(deprecated_by_the_original(rsa_signer))
    children = document.elements(original.description(root))
    endorsement, deprecated = children[-2:]
    assert endorsement.tag == f"{{{original.SLREQ}}}endorsement"
    assert endorsement.attrib == {"parseType": "Resource"}
    assert deprecated.tag == f"{{{original.SLTERMS}}}deprecated"
    assert len(root.findall(f".//{{{original.SLREQ}}}endorsement")) == 1


def test_a_document_deprecated_by_the_original_tools_is_accepted(rsa_signer):
    accepted = judged(deprecated_by_the_original(rsa_signer))
    assert accepted.appliance.deprecated == "superseded by 2.0"
    assert accepted.appliance.endorsement.created == NOW
    assert accepted.appliance.endorsement.email == "jane.tester@example.org"


def test_tampering_with_the_deprecated_document_breaks_its_signature(rsa_signer):
    data = deprecated_by_the_original(rsa_signer)
    tampered = data.replace(b"superseded by 2.0", b"still fine", 1)
    with pytest.raises(MetadataError) as caught:
        judged(tampered)
    assert caught.value.problems[0].rule.startswith("signature")


# --- every other rule still holds ----------------------------------------------------------

@pytest.mark.parametrize(("snippet", "expected"), [
    ("<slreq:bytes>64</slreq:bytes>", ("slreq:bytes", "exactly-one")),
    ('<slreq:endorsement rdf:parseType="Resource"/>', ("slreq:endorsement", "exactly-one")),
    ("<dcterms:identifier>MMZu9WvwKIro-rtBQfDk4PsKO7_</dcterms:identifier>",
     ("dcterms:identifier", "exactly-one")),
    ("<slterms:os>centos</slterms:os>", ("slterms:os", "at-most-one")),
    ("<dcterms:type>grid</dcterms:type>", ("dcterms:type", "one-type")),
    ("<slreq:email>x@example.org</slreq:email>", ("slreq:email", "schema")),
])
@pytest.mark.parametrize("first", [True, False])
def test_counts_hold_wherever_the_extra_property_stands(snippet, expected, first):
    assert expected in rules(with_property(unsigned(), snippet, first=first))


@pytest.mark.parametrize("tag", ["bytes", "endorsement"])
def test_a_missing_required_property_is_named(tag):
    root = unsigned()
    found = original.description(root)
    found.remove(found.find(f"{{{original.SLREQ}}}{tag}"))
    assert (f"slreq:{tag}", "exactly-one") in rules(root)


@pytest.mark.parametrize("attributes", [
    {},                                                      # neither form
    {"parseType": "Literal"},                                # unqualified, not Resource
    {"parseType": "Resource", f"{{{original.RDF}}}parseType": "Literal"},   # disagreeing
])
def test_structured_properties_must_be_resources(attributes):
    root = unsigned()
    checksum = original.description(root).find(f"{{{original.SLREQ}}}checksum")
    checksum.attrib.clear()
    checksum.attrib.update(attributes)
    found = rules(root)
    assert any(element == "slreq:checksum" for element, _ in found), found


def test_unqualified_parse_type_resource_is_read_as_rdf(rsa_signer):
    root = unsigned()
    checksum = original.description(root).find(f"{{{original.SLREQ}}}checksum")
    del checksum.attrib[f"{{{original.RDF}}}parseType"]
    checksum.set("parseType", "Resource")
    assert rules(root) == set()
