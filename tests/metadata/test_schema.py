"""Tests of the XML Schema of the metadata profile (marketplace/metadata/schemas/metadata.xsd).

The schema checks the shape of a document and the syntax of single values. It is run
against the StratusLab project's own test documents: every valid one must pass, and every
invalid one whose fault is a matter of shape or syntax must fail with an error naming the
offending element.

Invalid documents left to the Python rules of marketplace.metadata (cross-field rules or
RDF-level rules, which XML Schema 1.0 cannot express), and so not asserted here:
- invalid-bad-xml-base.xml             xml:base present but not http://mp.stratuslab.eu/
- invalid-inconsistent-identifiers.xml rdf:about != "#" + dcterms:identifier
- invalid-inconsistent-checksum.xml    identifier != SHA-1 checksum
- invalid-multiple-deprecated.xml, invalid-multiple-os.xml, invalid-multiple-os-arch.xml,
  invalid-multiple-os-version.xml, invalid-multiple-serial-numbers.xml,
  invalid-multiple-versions.xml        at most one of each
- invalid-no-endorsement.xml           exactly one endorsement (properties come in any
                                       order, so XML Schema 1.0 cannot count them)
- invalid-rdf-attribute.xml, invalid-rdf-resource.xml  foreign content that is not RDF/XML
invalid-bad-about-id.xml is also a consistency fault (checked in Python), but its about
value is too short for the 27-digit syntax, which the schema checks as well.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from tests.data import STRATUSLAB as INTEROP

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "marketplace" / "metadata" / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "metadata.xsd"

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DCTERMS = "http://purl.org/dc/terms/"
SLREQ = "http://mp.stratuslab.eu/slreq#"
SLTERMS = "http://mp.stratuslab.eu/slterms#"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
XML = "http://www.w3.org/XML/1998/namespace"
XSD = "http://www.w3.org/2001/XMLSchema"

NSDECLS = (
    f'xmlns:rdf="{RDF}" xmlns:dcterms="{DCTERMS}" xmlns:slreq="{SLREQ}" '
    f'xmlns:slterms="{SLTERMS}" xmlns:ex="http://example.org/"'
)

# Invalid documents the schema rejects -> what the error must name: the Clark name of
# the offending element, and a word of the message where the element alone is not enough.
CAUGHT_BY_SCHEMA = {
    "invalid-bad-inbound-port.xml": (f"{{{SLTERMS}}}inbound-port", "65536"),
    "invalid-bad-outbound-port.xml": (f"{{{SLTERMS}}}outbound-port", "65536"),
    "invalid-bad-icmp-value.xml": (f"{{{SLTERMS}}}icmp", "65536"),
    "invalid-bad-serial-number.xml": (f"{{{SLTERMS}}}serial-number", "'X'"),
    "invalid-created-date-1.xml": (f"{{{DCTERMS}}}created", "2011-01-24X09:59:42Z"),
    "invalid-created-date-2.xml": (f"{{{DCTERMS}}}created", "2011-01-24T99:59:42Z"),
    "invalid-valid-date-1.xml": (f"{{{DCTERMS}}}valid", "2011-01-24X09:59:42Z"),
    "invalid-valid-date-2.xml": (f"{{{DCTERMS}}}valid", "2011-01-24T99:59:42Z"),
    "invalid-email.xml": (f"{{{SLREQ}}}email", "jane.tester_at_example.org"),
    "invalid-bad-checksum-parsetype.xml": (f"{{{SLREQ}}}checksum", "parseType"),
    "invalid-bad-endorsement-parsetype.xml": (f"{{{SLREQ}}}endorsement", "parseType"),
    "invalid-bad-endorser-parsetype.xml": (f"{{{SLREQ}}}endorser", "parseType"),
    "invalid-no-endorser.xml": (f"{{{SLREQ}}}endorsement", f"{{{SLREQ}}}endorser"),
    "invalid-no-content.xml": (f"{{{RDF}}}RDF", f"{{{RDF}}}Description"),
    "invalid-no-xml-base.xml": (f"{{{RDF}}}RDF", f"{{{XML}}}base"),
    "invalid-checksum-value.xml": (f"{{{SLREQ}}}value", "XYZ"),
    "invalid-dcterms-type.xml": (f"{{{DCTERMS}}}type", "Element content is not allowed"),
    "invalid-bad-element-for-signature.xml": (f"{{{RDF}}}Description", "not expected"),
    "invalid-bad-about-id.xml": (f"{{{RDF}}}about", "#MMZu9WvwKIro-rtBQ"),
}

LEFT_TO_PYTHON = {
    "invalid-bad-xml-base.xml",
    "invalid-inconsistent-identifiers.xml",
    "invalid-inconsistent-checksum.xml",
    "invalid-multiple-deprecated.xml",
    "invalid-multiple-os.xml",
    "invalid-multiple-os-arch.xml",
    "invalid-multiple-os-version.xml",
    "invalid-multiple-serial-numbers.xml",
    "invalid-multiple-versions.xml",
    "invalid-no-endorsement.xml",
    "invalid-rdf-attribute.xml",
    "invalid-rdf-resource.xml",
}


def _parser() -> etree.XMLParser:
    return etree.XMLParser(no_network=True, resolve_entities=False)


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH), _parser()))


def _errors(schema: etree.XMLSchema, doc: etree._ElementTree) -> list[str]:
    """Validate and return the error messages (empty when the document is valid)."""
    valid = schema.validate(doc)
    messages = [entry.message for entry in schema.error_log]
    assert valid == (not messages)
    return messages


def _interop(name: str) -> etree._ElementTree:
    return etree.parse(str(INTEROP / name), _parser())


def _with_properties(*snippets: str, base: str = "valid-minimal.xml") -> etree._ElementTree:
    """A copy of an interop document with elements appended to its rdf:Description."""
    doc = _interop(base)
    description = doc.getroot().find(f"{{{RDF}}}Description")
    for snippet in snippets:
        description.append(etree.fromstring(f"<w {NSDECLS}>{snippet}</w>", _parser())[0])
    return doc


def _with_root_children(*snippets: str) -> etree._ElementTree:
    """A copy of valid-minimal.xml with elements appended to the root, after the Description."""
    doc = _interop("valid-minimal.xml")
    for snippet in snippets:
        doc.getroot().append(etree.fromstring(snippet, _parser()))
    return doc


def _assert_rejected(schema: etree.XMLSchema, doc: etree._ElementTree, *words: str) -> None:
    messages = _errors(schema, doc)
    assert messages, "the schema accepted the document"
    assert any(all(word in message for word in words) for message in messages), messages


def test_interop_documents_are_classified():
    names = {path.name for path in INTEROP.glob("invalid-*.xml")}
    assert names, f"no interop documents found in {INTEROP}"
    assert names == set(CAUGHT_BY_SCHEMA) | LEFT_TO_PYTHON


def test_schema_documents_reference_only_local_files():
    for xsd in SCHEMA_DIR.glob("*.xsd"):
        tree = etree.parse(str(xsd), _parser())
        for ref in tree.iterfind(f".//{{{XSD}}}*[@schemaLocation]"):
            location = ref.get("schemaLocation")
            assert not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", location), (xsd.name, location)
            assert (xsd.parent / location).is_file(), (xsd.name, location)


@pytest.mark.parametrize("name", sorted(p.name for p in INTEROP.glob("valid-*.xml")))
def test_valid_interop_documents_pass(schema, name):
    assert _errors(schema, _interop(name)) == []


@pytest.mark.parametrize("name", sorted(CAUGHT_BY_SCHEMA))
def test_invalid_interop_documents_fail(schema, name):
    _assert_rejected(schema, _interop(name), *CAUGHT_BY_SCHEMA[name])


def test_foreign_properties_and_signature_pass(schema):
    doc = _with_properties(
        "<ex:colour>blue</ex:colour>",
        '<ex:nested rdf:parseType="Resource"><ex:a>1</ex:a></ex:nested>',
        '<ex:literal rdf:parseType="Literal"><b>bold</b></ex:literal>',
        "<dcterms:license>Apache-2.0</dcterms:license>",
        "<slterms:kind>disk</slterms:kind>",
        "<slterms:disks-bus>virtio</slterms:disks-bus>",
        "<dcterms:created>2011-09-09T14:12:57Z</dcterms:created>",
        "<dcterms:description/>",
        "<slterms:location>http://example.org/image.img.gz</slterms:location>",
        "<slterms:location>http://mirror.example.org/image.img.gz</slterms:location>",
    )
    doc.getroot().append(
        etree.fromstring(
            f'<Signature xmlns="{DSIG}"><SignedInfo/><SignatureValue>AA==</SignatureValue>'
            "</Signature>"
        )
    )
    assert _errors(schema, doc) == []


def test_description_may_start_with_rdf_type(schema):
    doc = _interop("valid-minimal.xml")
    description = doc.getroot().find(f"{{{RDF}}}Description")
    rdf_type = etree.Element(f"{{{RDF}}}type", {f"{{{RDF}}}resource": "http://example.org/T"})
    description.insert(0, rdf_type)
    assert _errors(schema, doc) == []


@pytest.mark.parametrize("value", ["", "gz", "bz2", "xz", "zst"])
def test_compression_values_pass(schema, value):
    doc = _with_properties(f"<dcterms:compression>{value}</dcterms:compression>")
    assert _errors(schema, doc) == []


@pytest.mark.parametrize(
    ("snippet", "element"),
    [
        ("<dcterms:compression>rar</dcterms:compression>", f"{{{DCTERMS}}}compression"),
        ("<slterms:kind>vm</slterms:kind>", f"{{{SLTERMS}}}kind"),
        ("<slterms:disks-bus>sata</slterms:disks-bus>", f"{{{SLTERMS}}}disks-bus"),
        ("<slterms:inbound-port>-1</slterms:inbound-port>", f"{{{SLTERMS}}}inbound-port"),
        ("<dcterms:valid>2011-02-30T10:00:00Z</dcterms:valid>", f"{{{DCTERMS}}}valid"),
        ("<dcterms:valid>2011-01-24T09:59:42+01:00</dcterms:valid>", f"{{{DCTERMS}}}valid"),
        ("<dcterms:valid>2011-01-24T09:59:42.5Z</dcterms:valid>", f"{{{DCTERMS}}}valid"),
        ("<dcterms:title><ex:x/></dcterms:title>", f"{{{DCTERMS}}}title"),
        # No slreq element but size, checksum and endorsement stands in the description.
        ("<slreq:email>jane@example.org</slreq:email>", f"{{{SLREQ}}}email"),
        ("<slreq:size>1</slreq:size>", f"{{{SLREQ}}}size"),
        # The slreq properties are checked wherever they stand.
        ("<slreq:bytes>-1</slreq:bytes>", f"{{{SLREQ}}}bytes"),
        ('<slreq:endorsement rdf:parseType="Literal"/>', f"{{{SLREQ}}}endorsement"),
        ('<slreq:endorsement parseType="Collection"/>', f"{{{SLREQ}}}endorsement"),
        ('<rdf:type><ex:x/></rdf:type>', f"{{{RDF}}}type"),
    ],
)
def test_bad_further_properties_fail(schema, snippet, element):
    _assert_rejected(schema, _with_properties(snippet), element)


def test_checksum_without_parse_type_is_left_to_python(schema):
    """Either parseType form may be present, so the schema cannot require one of them:
    the validation rule ``parse-type`` does (tests/metadata/test_original_shapes.py)."""
    doc = _interop("valid-minimal.xml")
    checksum = doc.getroot().find(f"{{{RDF}}}Description/{{{SLREQ}}}checksum")
    del checksum.attrib[f"{{{RDF}}}parseType"]
    assert _errors(schema, doc) == []


@pytest.mark.parametrize(
    ("snippets", "element"),
    [
        ((f'<Signature xmlns="{DSIG}"/>', f'<Signature xmlns="{DSIG}"/>'), f"{{{DSIG}}}Signature"),
        ((f'<Object xmlns="{DSIG}"/>',), f"{{{DSIG}}}Object"),
        (
            (f'<Signature xmlns="{DSIG}"/>', '<ex:after xmlns:ex="http://example.org/"/>'),
            "{http://example.org/}after",
        ),
    ],
)
def test_root_holds_only_description_then_one_signature(schema, snippets, element):
    _assert_rejected(schema, _with_root_children(*snippets), element)


# --- the compiled schema in a threaded server ------------------------------------------------

FIRST_COMPILES_AT_ONCE = """
import sys, threading
from pathlib import Path
from marketplace.metadata import document, validation
data = Path(sys.argv[1]).read_bytes()
barrier, failures = threading.Barrier(8), []
def upload():
    barrier.wait()
    try:
        validation.validate(document.parse(data))
    except Exception as exc:
        failures.append(repr(exc))
threads = [threading.Thread(target=upload) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(failures[0] if failures else "ok")
"""


def test_first_compiles_in_eight_threads_at_once_all_succeed(tmp_path):
    """libxml2 sets up its schema types on the first compile, unsafely: before compiles took
    turns, 11 of 40 fresh processes failed every validation ("not valid XML Schema")."""
    import subprocess
    import sys
    document = INTEROP / "valid-minimal.xml"
    outcomes = [subprocess.run([sys.executable, "-c", FIRST_COMPILES_AT_ONCE, str(document)],
                               capture_output=True, text=True, timeout=60, cwd=REPO)
                for _ in range(20)]
    assert [o.stdout.strip() or o.stderr[-300:] for o in outcomes] == ["ok"] * 20


def test_threads_validating_at_once_each_get_their_own_problems():
    """A validator keeps its last error log in itself: threads must not share one."""
    import threading

    from marketplace.metadata import document as doc
    from marketplace.metadata.schema import schema_problems
    names = ["invalid-bad-icmp-value.xml", "invalid-bad-inbound-port.xml",
             "invalid-bad-outbound-port.xml", "invalid-bad-serial-number.xml"]
    roots = {name: doc.parse((INTEROP / name).read_bytes()) for name in names}
    expected = {name: [p.element for p in schema_problems(root)] for name, root in roots.items()}
    assert len({tuple(v) for v in expected.values()}) == len(names)  # four different answers
    wrong = []

    def validate(name: str) -> None:
        for _ in range(200):
            got = [p.element for p in schema_problems(roots[name])]
            if got != expected[name]:
                wrong.append((name, got))

    threads = [threading.Thread(target=validate, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
