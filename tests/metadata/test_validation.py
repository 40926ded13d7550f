"""Hostile and careless input, the model's round trip, and statuses that are not problems."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from marketplace.metadata import document, identifier, model, validation
from marketplace.metadata.problems import MetadataError, Problem

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
ROOT = (f'<rdf:RDF xmlns:rdf="{RDF}" xml:base="http://mp.stratuslab.eu/">'
        '<rdf:Description rdf:about="#x">{body}</rdf:Description></rdf:RDF>')
PASSWD = Path("/etc/passwd")
STRATUSLAB_NAMESPACES = {RDF, "http://purl.org/dc/terms/", "http://mp.stratuslab.eu/slreq#",
                         "http://mp.stratuslab.eu/slterms#"}


def refused(data: bytes) -> list[Problem]:
    """Both entry points refuse the bytes; the problems they give."""
    with pytest.raises(MetadataError) as by_parse:
        document.parse(data)
    with pytest.raises(MetadataError) as by_check:
        validation.check(data)
    assert [str(p) for p in by_parse.value.problems] == [str(p) for p in by_check.value.problems]
    assert by_parse.value.problems
    return by_parse.value.problems


def parts_and_rules(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.element, p.rule) for p in problems]


# --- hostile and careless bytes ------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF [\n <!ENTITY lol "lol">\n'
    + b"".join(b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
               for i in range(1, 10))
    + b']>\n' + ROOT.format(body="<dcterms:title xmlns:dcterms='http://purl.org/dc/terms/'>"
                                 "&lol9;</dcterms:title>").encode())


@pytest.mark.parametrize(("data", "rule"), [
    (b"", "not-xml"),
    (b" \n\t ", "not-xml"),
    (b"this is not XML", "not-xml"),
    (bytes(range(256)), "not-xml"),
    (b'{"identifier": "MMZu9WvwKIro-rtBQfDk4PsKO7_"}', "not-xml"),
    (b'<rdf:RDF xmlns:rdf="' + RDF.encode() + b'"><rdf:Description>', "not-xml"),
    (b"<rdf:RDF><unbound:prefix/></rdf:RDF>", "not-xml"),
    (b'<?xml version="1.0"?>', "not-xml"),
    (b"<html><body>Not Found</body></html>", "root-element"),
    (b"<RDF/>", "root-element"),
    (b'<rdf:Description xmlns:rdf="' + RDF.encode() + b'"/>', "root-element"),
    (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns"/>', "root-element"),
    (b'<!DOCTYPE rdf:RDF>' + ROOT.format(body="").encode(), "no-dtd"),
], ids=["empty", "blank", "text", "binary", "json", "unclosed", "unbound-prefix",
        "declaration-only", "html", "no-namespace", "wrong-root", "rdf-without-hash",
        "bare-doctype"])
def test_bad_bytes_are_refused_naming_the_rule(data, rule):
    problems = refused(data)
    assert parts_and_rules(problems) == [("document", rule)]


def test_billion_laughs_is_refused_unexpanded():
    problems = refused(BILLION_LAUGHS)
    assert [p.element for p in problems] == ["document"]
    assert problems[0].rule in {"no-dtd", "not-xml"}
    assert "lollol" not in str(problems)


def passwd_lines() -> list[str]:
    return [line for line in PASSWD.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE rdf:RDF [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE rdf:RDF SYSTEM "file:///etc/passwd">',
    '<!DOCTYPE rdf:RDF [<!ENTITY % xxe SYSTEM "file:///etc/passwd"> %xxe;]>',
    '<!DOCTYPE rdf:RDF PUBLIC "-//X//Y//EN" "file:///etc/passwd">',
], ids=["general-entity", "external-subset", "parameter-entity", "public-id"])
def test_external_entities_are_refused_without_showing_the_file(doctype):
    assert passwd_lines(), "the test needs a non-empty /etc/passwd"
    data = (doctype + ROOT.format(body="<x>&xxe;</x>")).encode()
    problems = refused(data)
    assert {p.element for p in problems} == {"document"}
    assert {p.rule for p in problems} <= {"no-dtd", "not-xml"}
    shown = "\n".join(str(p) for p in problems)
    for line in passwd_lines():
        assert line not in shown
        assert line.split(":")[0] + ":x:" not in shown


def fifo_opened_while_parsing(directory: Path, make_document) -> bool:
    """Parse a document naming a FIFO; True when the parser opened it (to read it).

    A writer thread waits on the FIFO. If the parser opens it, the writer wakes while the
    parse is still running and closes at once (the parser reads end-of-file). If not, the
    test opens the read end itself after the parse, which wakes the writer late.
    """
    fifo = directory / "probe"
    os.mkfifo(fifo)
    parse_done, opened = threading.Event(), threading.Event()

    def writer():
        fd = os.open(fifo, os.O_WRONLY)
        if not parse_done.is_set():
            opened.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with contextlib.suppress(MetadataError):
        document.parse(make_document(fifo.as_uri()).encode())
    parse_done.set()
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    thread.join(60)
    os.close(fd)
    return opened.is_set()


@pytest.mark.parametrize("make_document", [
    lambda uri: f'<!DOCTYPE rdf:RDF SYSTEM "{uri}">' + ROOT.format(body=""),
    lambda uri: f'<!DOCTYPE rdf:RDF [<!ENTITY % p SYSTEM "{uri}"> %p;]>' + ROOT.format(body=""),
    lambda uri: f'<!DOCTYPE rdf:RDF [<!ENTITY e SYSTEM "{uri}">]>' + ROOT.format(body="&e;"),
    lambda uri: ROOT.format(body=f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                                 f'href="{uri}" parse="text"/>'),
], ids=["external-subset", "parameter-entity", "general-entity", "xinclude"])
def test_parser_opens_no_file_named_by_the_document(tmp_path, make_document):
    """A file named in a DOCTYPE must not even be opened: no probing of the server's
    files, no blocking on a FIFO or a device."""
    assert not fifo_opened_while_parsing(tmp_path, make_document)


def test_refusal_does_not_tell_whether_a_named_file_exists(tmp_path):
    existing = tmp_path / "exists.txt"
    existing.write_text("root:x:0:0:root:/root:/bin/sh\n")
    missing = tmp_path / "missing.txt"
    outcomes = []
    for path in (existing, missing):
        data = (f'<!DOCTYPE rdf:RDF SYSTEM "{path.as_uri()}">' + ROOT.format(body="")).encode()
        outcomes.append([str(p) for p in refused(data)])
    assert outcomes[0] == outcomes[1]


def test_xinclude_is_not_processed():
    data = ROOT.format(body='<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                            'href="file:///etc/passwd" parse="text"/>').encode()
    root = document.parse(data)
    text = document.serialize(root).decode()
    for line in passwd_lines():
        assert line not in text


def test_over_the_size_limit_is_refused_before_parsing():
    data = b"<" * (document.MAX_DOCUMENT_BYTES + 1)
    problems = refused(data)
    assert parts_and_rules(problems) == [("document", "size-limit")]
    assert str(document.MAX_DOCUMENT_BYTES) in problems[0].message


def test_a_document_of_exactly_the_limit_is_parsed(interop):
    data = (interop / "valid-minimal.xml").read_bytes()
    padding = document.MAX_DOCUMENT_BYTES - len(data) - len(b"<!---->")
    padded = data + b"<!--" + b"x" * padding + b"-->"
    assert len(padded) == document.MAX_DOCUMENT_BYTES
    assert validation.validate(document.parse(padded)) == []


def test_a_smaller_limit_can_be_given():
    with pytest.raises(MetadataError) as caught:
        document.parse(b"<a/>" * 10, max_bytes=39)
    assert parts_and_rules(caught.value.problems) == [("document", "size-limit")]


def test_deep_nesting_is_refused():
    data = (f'<rdf:RDF xmlns:rdf="{RDF}">' + "<a>" * 5000 + "</a>" * 5000
            + "</rdf:RDF>").encode()
    assert parts_and_rules(refused(data)) == [("document", "tree-limit")]


@pytest.mark.parametrize("entry", [document.parse, validation.check])
def test_text_instead_of_bytes_is_a_type_error(interop, entry):
    text = (interop / "valid-minimal.xml").read_text()
    with pytest.raises(TypeError):
        entry(text)


def test_check_lists_every_problem_of_an_invalid_document(interop):
    with pytest.raises(MetadataError) as caught:
        validation.check((interop / "invalid-inconsistent-identifiers.xml").read_bytes())
    assert parts_and_rules(caught.value.problems) == [
        ("rdf:Description", "about-identifier"), ("dcterms:identifier", "identifier-sha1")]
    assert str(caught.value) == f"{caught.value.problems[0]} (and 1 more)"


def test_other_encodings_are_read(interop):
    text = (interop / "valid-minimal.xml").read_text().replace('encoding="UTF-8"',
                                                               'encoding="UTF-16"')
    root = validation.check(text.encode("utf-16"))
    assert model.from_document(root).identifier == "MMZu9WvwKIro-rtBQfDk4PsKO7_"


# --- the model's round trip ----------------------------------------------------------------

IMAGE = b"\x00\x01 an image with every field \xff" * 333
SHA1 = hashlib.sha1(IMAGE).hexdigest()
EXTRA = [
    '<ex:note xmlns:ex="http://example.org/">a foreign literal</ex:note>',
    '<ex:related xmlns:ex="http://example.org/" '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" rdf:parseType="Resource">'
    '<ex:id>MMZu9WvwKIro-rtBQfDk4PsKO7_</ex:id></ex:related>',
]


def full_appliance(extra: list[str]) -> model.Appliance:
    when = datetime(2014, 4, 1, 12, 30, 45, tzinfo=UTC)
    return model.Appliance(
        identifier=identifier.sha1_to_identifier(SHA1), bytes=len(IMAGE),
        checksums={"MD5": hashlib.md5(IMAGE).hexdigest(), "SHA-1": SHA1,
                   "SHA-256": hashlib.sha256(IMAGE).hexdigest(),
                   "SHA-512": hashlib.sha512(IMAGE).hexdigest()},
        endorsement=model.Endorsement(
            created=when, email="jane.tester@example.org",
            subject="CN=Jane Tester,OU=Testing Department,O=StratusLab Project,C=EU",
            issuers=("CN=Certificate Authority,OU=Testing Department,O=StratusLab Project,C=EU",
                     "CN=Root,O=StratusLab Project,C=EU")),
        rdf_type="http://mp.stratuslab.eu/slreq#Appliance",
        type="base", kind="disk", os="ttylinux", os_version="9.7", os_arch="x86_64",
        version="1.2", compression="xz",
        locations=["http://example.org/a.img.xz", "https://mirror.example.net/a.img.xz"],
        format="qcow2", creator="Jane Tester", created=when - timedelta(days=3),
        valid=when + timedelta(days=180), title="Débian ✓ <&> test",
        tag="linux-with-my-apps", description="line one\nline two & more",
        hypervisor="kvm", disks_bus="virtio", publisher="StratusLab",
        deprecated="security issue with app", serial_number=0,
        inbound_ports=[22, 443, 65535], outbound_ports=[0, 25], icmp=[0, 8, 255],
        is_replaced_by="NMZu9WvwKIro-rtBQfDk4PsKO7_", replaces="OMZu9WvwKIro-rtBQfDk4PsKO7_",
        is_version_of="PMZu9WvwKIro-rtBQfDk4PsKO7_", extra=list(extra))


def test_the_full_appliance_sets_every_field():
    item = full_appliance(EXTRA)
    for spec in model.FIELDS:
        value = getattr(item, spec.name)
        assert value is not None and value != [], spec.name
        if spec.many:
            assert len(value) >= 2, spec.name


def test_full_appliance_document_is_valid():
    root = model.to_document(full_appliance(EXTRA))
    assert validation.validate(document.parse(document.serialize(root))) == []


def test_round_trip_of_every_field():
    item = full_appliance([])
    root = document.parse(document.serialize(model.to_document(item)))
    assert model.from_document(root) == item


def test_round_trip_with_foreign_elements():
    item = full_appliance(EXTRA)
    assert model.from_document(model.to_document(item)) == item
    root = document.parse(document.serialize(model.to_document(item)))
    assert model.from_document(root) == item


def canonical(xml_text_or_element) -> bytes:
    """C14N of an element with whitespace-only text dropped and unused namespaces gone."""
    element = (document.fragment(xml_text_or_element) if isinstance(xml_text_or_element, str)
               else etree.fromstring(etree.tostring(xml_text_or_element)))
    for node in element.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    etree.cleanup_namespaces(element)
    return etree.tostring(element, method="c14n")


def foreign_children(root: etree._Element) -> list[bytes]:
    description = root.find(f"{{{RDF}}}Description")
    return [canonical(c) for c in description if isinstance(c.tag, str)
            and etree.QName(c).namespace not in STRATUSLAB_NAMESPACES]


def test_foreign_elements_of_the_cimi_document_are_kept(interop):
    root = document.parse((interop / "valid-full-alt-cimi.xml").read_bytes())
    expected = foreign_children(root)
    assert len(expected) == 5       # ex:other-info, ex:yet-more, relatedImages, accounts, cimi
    item = model.from_document(root)
    assert [canonical(x) for x in item.extra] == expected
    assert item.title == "linux-with-my-apps" and item.inbound_ports == [443]

    written = document.parse(document.serialize(model.to_document(item)))
    assert validation.validate(written) == []
    assert foreign_children(written) == expected
    again = model.from_document(written)
    assert [canonical(x) for x in again.extra] == expected
    assert again.as_dict() | {"extra": None} == item.as_dict() | {"extra": None}


def test_extra_strings_are_stable_over_write_and_read(interop):
    root = document.parse((interop / "valid-full-alt-cimi.xml").read_bytes())
    once = model.from_document(document.parse(document.serialize(
        model.to_document(model.from_document(root)))))
    twice = model.from_document(document.parse(document.serialize(model.to_document(once))))
    assert twice.extra == once.extra


# --- statuses are not problems -------------------------------------------------------------

def minimal(**fields) -> etree._Element:
    item = model.Appliance(identifier=identifier.sha1_to_identifier(SHA1), bytes=len(IMAGE),
                           checksums={"SHA-1": SHA1}, type="machine", **fields)
    return document.parse(document.serialize(model.to_document(item)))


def test_expired_entry_is_valid_with_status_expired():
    root = minimal(valid=datetime(2011, 7, 23, 10, 59, 42, tzinfo=UTC))
    assert validation.validate(root) == []
    item = model.from_document(root)
    assert item.status() == model.EXPIRED
    assert item.status(at=datetime(2011, 7, 1, tzinfo=UTC)) == model.VALID


def test_future_valid_date_is_status_valid():
    root = minimal(valid=datetime.now(UTC) + timedelta(days=30))
    assert validation.validate(root) == []
    assert model.from_document(root).status() == model.VALID


def test_deprecated_entry_is_valid_with_status_deprecated():
    root = minimal(deprecated="security issue with app",
                   valid=datetime.now(UTC) + timedelta(days=30))
    assert validation.validate(root) == []
    assert model.from_document(root).status() == model.DEPRECATED


def test_deprecated_wins_over_expired(interop):
    root = document.parse((interop / "valid-full.xml").read_bytes())
    assert validation.validate(root) == []
    item = model.from_document(root)
    assert item.deprecated == "security issue with app"
    assert item.valid == datetime(2011, 7, 23, 10, 59, 42, tzinfo=UTC)
    assert item.status() == model.DEPRECATED


def test_no_valid_date_is_status_valid():
    assert model.from_document(minimal()).status() == model.VALID


# --- active content: what a browser would run or apply -------------------------------------

XHTML = "http://www.w3.org/1999/xhtml"
SVG = "http://www.w3.org/2000/svg"
MATHML = "http://www.w3.org/1998/Math/MathML"
XSLT = "http://www.w3.org/1999/XSL/Transform"
XLINK = "http://www.w3.org/1999/xlink"


def with_foreign(fragment: str) -> bytes:
    """A valid minimal document with ``fragment`` appended to its description."""
    text = document.serialize(minimal()).decode()
    return text.replace("</rdf:Description>", fragment + "</rdf:Description>").encode()


def rules_of(data: bytes) -> set[str]:
    return {p.rule for p in validation.validate(document.parse(data))}


def test_the_minimal_document_used_below_is_valid():
    assert rules_of(with_foreign("")) == set()
    assert rules_of(with_foreign('<ex:note xmlns:ex="http://example.org/">hi</ex:note>')) \
        == set()


@pytest.mark.parametrize("fragment", [
    f'<h:script xmlns:h="{XHTML}">alert(1)</h:script>',
    f'<script xmlns="{XHTML}">alert(1)</script>',
    f'<ex:note xmlns:ex="http://example.org/"><h:img xmlns:h="{XHTML}" src="x" '
    'onerror="alert(1)"/></ex:note>',
    f'<svg xmlns="{SVG}" onload="alert(1)"/>',
    f'<s:svg xmlns:s="{SVG}"><s:script>alert(1)</s:script></s:svg>',
    f'<math xmlns="{MATHML}"><maction actiontype="statusline">x</maction></math>',
    f'<x:stylesheet xmlns:x="{XSLT}" version="1.0"/>',
    f'<ex:note xmlns:ex="http://example.org/" xmlns:xl="{XLINK}" xl:type="simple" '
    'xl:href="javascript:alert(1)">click</ex:note>',
    f'<ex:note xmlns:ex="http://example.org/" xmlns:h="{XHTML}" h:onclick="alert(1)">x</ex:note>',
    '<ex:note xmlns:ex="http://example.org/" ex:href="  java&#9;script:alert(1)">x</ex:note>',
    '<ex:note xmlns:ex="http://example.org/" ex:href="VBScript:msgbox(1)">x</ex:note>',
    f'<ex:note xmlns:ex="http://example.org/" xmlns:h="{XHTML}">declared only</ex:note>',
    '<ex:note xmlns:ex="http://example.org/" rdf:parseType="Literal">'
    f'<p xmlns="{XHTML}">a literal</p></ex:note>',
], ids=["xhtml-prefixed", "xhtml-default", "xhtml-nested", "svg-default", "svg-script",
        "mathml", "xslt", "xlink-javascript", "xhtml-attribute", "javascript-url-with-tab",
        "vbscript-url", "declaration-only", "xhtml-in-literal"])
def test_active_content_is_refused(fragment):
    assert "active-content" in rules_of(with_foreign(fragment))


@pytest.mark.parametrize("uri", [XHTML + "/", XHTML + "#", XHTML.upper(),
                                 XHTML.replace("http:", "https:"), SVG + "#", MATHML.lower(),
                                 XSLT + "/"])
def test_near_misses_of_active_namespaces_are_refused_too(uri):
    assert "active-content" in rules_of(with_foreign(
        f'<a:script xmlns:a="{uri}">alert(1)</a:script>'))


@pytest.mark.parametrize("instruction", [
    '<?xml-stylesheet type="text/xsl" href="#x"?>',
    '<?xml-stylesheet type="text/css" href="data:text/css,*{color:red}"?>',
    "<?php echo 1; ?>",
])
@pytest.mark.parametrize("place", ["prolog", "description", "epilog"])
def test_processing_instructions_are_refused(instruction, place):
    text = document.serialize(minimal()).decode()
    if place == "prolog":
        data = text.replace("?>\n", "?>\n" + instruction + "\n", 1)
    elif place == "description":
        data = text.replace("</rdf:Description>", instruction + "</rdf:Description>")
    else:
        data = text + instruction + "\n"
    problems = validation.validate(document.parse(data.encode()))
    assert [p.rule for p in problems] == ["active-content"]
    assert "xml-stylesheet" in problems[0].message


def test_the_check_every_caller_uses_refuses_active_content():
    with pytest.raises(MetadataError) as caught:
        validation.check(with_foreign(f'<h:script xmlns:h="{XHTML}">alert(1)</h:script>'))
    assert {p.rule for p in caught.value.problems} == {"active-content"}
    assert "h:script" in {p.element for p in caught.value.problems}


# --- amplification: a hostile megabyte gets a small answer -----------------------------------

def test_a_hundred_thousand_empty_attributes_stop_validation_at_once():
    attributes = " ".join(f'a{i}=""' for i in range(100_000))
    data = with_foreign(f'<ex:note xmlns:ex="http://example.org/" {attributes}>x</ex:note>')
    assert len(data) < document.MAX_DOCUMENT_BYTES
    with pytest.raises(MetadataError) as caught:
        validation.check(data)
    assert parts_and_rules(caught.value.problems) == [("document", "tree-limit")]


@pytest.mark.parametrize("fragment", [
    '<ex:n xmlns:ex="http://example.org/">' + "<ex:e/>" * 100_000 + "</ex:n>",
    '<ex:n xmlns:ex="http://example.org/">' + "<ex:e>" * 40 + "</ex:e>" * 40 + "</ex:n>",
    "".join(f'<ex:n xmlns:ex{i}="urn:{i}" xmlns:ex="http://example.org/"/>'
            for i in range(300)),
    '<ex:n xmlns:ex="http://example.org/" ' + " ".join(f'a{i}=""' for i in range(5000)) + "/>",
], ids=["many-elements", "deep-nesting", "many-namespace-declarations", "many-attributes"])
def test_trees_past_the_limits_are_refused_with_one_problem(fragment):
    assert parts_and_rules(refused(with_foreign(fragment))) == [("document", "tree-limit")]


def test_a_tree_at_the_limits_is_read():
    fragment = ('<ex:n xmlns:ex="http://example.org/" rdf:parseType="Literal">'
                + '<ex:e a="" b=""/>' * 1000 + "</ex:n>")
    assert rules_of(with_foreign(fragment)) == set()


def test_at_most_fifty_problems_then_a_count_of_the_rest():
    titles = '<dcterms:title bad=""/>' * 3000
    with pytest.raises(MetadataError) as caught:
        validation.check(with_foreign(titles))
    problems = caught.value.problems
    assert len(problems) == 51 and caught.value.total == 3000
    assert problems[-1].rule == "too-many-problems"
    assert "2950 more problems" in problems[-1].message
    assert str(caught.value) == f"{problems[0]} (and 2999 more)"


def test_long_values_are_not_quoted_whole():
    data = with_foreign(f'<slterms:serial-number xmlns:slterms="http://mp.stratuslab.eu/'
                        f'slterms#">{"9" * 500_000}x</slterms:serial-number>')
    problems = validation.validate(document.parse(data))
    assert problems and all(len(str(p)) < 1000 for p in problems)


def test_every_caller_of_the_pipeline_refuses_a_signed_script(rsa_signer, tmp_path):
    """Upload, replica and node call check_document; the validate command reports it."""
    from client.validate import verdict
    from marketplace.metadata.checks import check_document
    from tests import factories

    signed = factories.signed(rsa_signer, factories.appliance(
        extra=[f'<h:script xmlns:h="{XHTML}">alert(1)</h:script>']))
    with pytest.raises(MetadataError) as caught:
        check_document(signed)
    assert "active-content" in {p.rule for p in caught.value.problems}
    path = tmp_path / "signed.xml"
    path.write_bytes(signed)
    report = verdict(path, None, None, require_signature=True)
    assert not report["valid"]
    assert "active-content" in {p["rule"] for p in report["problems"]}
