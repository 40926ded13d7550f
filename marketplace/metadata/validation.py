"""Is a metadata document valid? Every rule of the StratusLab profile, in one place.

:func:`validate` runs the document through its layers and returns the problems found:
active content (:mod:`~marketplace.metadata.content`), the document's outline
(``xml:base``, one Description, the Signature last), the RDF/XML grammar, the XML Schema
in ``schemas/`` (types, dates, email, hex), and the rules across elements that a schema
cannot say (identifier, checksums, how many of each property, parse types). The
properties of the description may come in any order, as RDF/XML allows and the original
StratusLab tools wrote them.
An expired ``valid`` date and ``deprecated`` are statuses of a valid entry, not errors.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from lxml import etree

from marketplace.metadata import document as doc
from marketplace.metadata import model as m
from marketplace.metadata.content import active_content_problems
from marketplace.metadata.digests import ALGORITHMS
from marketplace.metadata.identifier import identifier_to_sha1, same_sha1, sha1_to_identifier
from marketplace.metadata.problems import MetadataError, Problem, reported
from marketplace.metadata.rdfxml import parse_type, rdf_problems
from marketplace.metadata.schema import schema_problems

AT_MOST_ONE = ("serial-number", "version", "deprecated", "os", "os-arch", "os-version")
EXACTLY_ONE = (m.IDENTIFIER, m.BYTES, m.ENDORSEMENT)
RESOURCE_NODES = (m.CHECKSUM, m.ENDORSEMENT, m.ENDORSER)
_DCTERMS_TYPE = f"{{{doc.DCTERMS}}}type"


def validate(root: etree._Element) -> list[Problem]:
    """The problems of a parsed document (at most MAX_PROBLEMS, then a count of the rest);
    an empty list means the document is valid."""
    return reported(_problems(root))


def check(data: bytes) -> etree._Element:
    """Parse and validate a document; raise :class:`MetadataError` listing its problems."""
    root = doc.parse(data)
    error = MetadataError(_problems(root))
    if error.problems:
        raise error
    return root


def _problems(root: etree._Element) -> Iterator[Problem]:
    """Every problem, layer by layer, as a generator: past the first MAX_PROBLEMS they are
    only counted (and the parser keeps the tree small enough to count them all)."""
    yield from active_content_problems(root)
    outline = _outline_problems(root)
    yield from outline
    description = root.find(doc.DESCRIPTION)
    if description is None:
        return
    grammar = rdf_problems(description)
    yield from grammar
    if not outline and not grammar:
        yield from schema_problems(root)
    yield from _rule_problems(description)


def _outline_problems(root: etree._Element) -> list[Problem]:
    problems = []
    base = root.get(doc.BASE)
    if base is None:
        problems.append(Problem("rdf:RDF", "xml-base", f"xml:base is required ({doc.XML_BASE})"))
    elif base != doc.XML_BASE:
        problems.append(Problem("rdf:RDF", "xml-base",
                                f"xml:base is {base!r}, it must be {doc.XML_BASE!r}"))
    children = doc.elements(root)
    descriptions = [c for c in children if c.tag == doc.DESCRIPTION]
    if len(descriptions) != 1:
        problems.append(Problem("rdf:Description", "one-description",
                                f"the document has {len(descriptions)} rdf:Description "
                                "elements, it must have exactly one"))
    signatures = doc.signatures_of(root)
    if len(signatures) > 1:
        problems.append(Problem("Signature", "one-signature",
                                f"the document has {len(signatures)} signatures, at most one "
                                "is allowed"))
    elif signatures and signatures[0] is not children[-1]:
        problems.append(Problem("Signature", "signature-last",
                                "the signature must be the last element of rdf:RDF"))
    for stray in children:
        if stray.tag not in (doc.DESCRIPTION, doc.SIGNATURE):
            problems.append(Problem(doc.qname(stray), "root-content",
                                    f"{doc.qname(stray)} is not allowed directly in rdf:RDF"))
    return problems


def _rule_problems(description: etree._Element) -> list[Problem]:
    return (_exactly_one_problems(description) + _identifier_problems(description)
            + _checksum_problems(description) + _type_problems(description)
            + _cardinality_problems(description) + _resource_node_problems(description))


def _exactly_one_problems(description: etree._Element) -> list[Problem]:
    """The required single properties; a missing identifier is reported as required."""
    problems = []
    for tag in EXACTLY_ONE:
        count = len(description.findall(tag))
        if count != 1 and not (tag == m.IDENTIFIER and count == 0):
            name = doc.prefixed(tag)
            problems.append(Problem(name, "exactly-one", f"found {count} {name} elements, "
                                                         "exactly one is required"))
    return problems


def _identifier_problems(description: etree._Element) -> list[Problem]:
    identifier = (description.findtext(m.IDENTIFIER) or "").strip()
    if not identifier:
        return [Problem("dcterms:identifier", "required", "dcterms:identifier is missing")]
    problems = []
    about = description.get(doc.ABOUT)
    if about != "#" + identifier:
        problems.append(Problem("rdf:Description", "about-identifier",
                                f"rdf:about is {about!r}, it must be '#{identifier}'"))
    try:
        sha1_of_identifier = identifier_to_sha1(identifier)
    except MetadataError as exc:
        return problems + exc.problems
    sha1 = _sha1_values(description)
    if len(sha1) == 1 and _is_hex(sha1[0]) and not same_sha1(sha1_of_identifier, sha1[0]):
        problems.append(Problem("dcterms:identifier", "identifier-sha1",
                                f"identifier {identifier} does not match the SHA-1 checksum "
                                f"{sha1[0]} (which gives {sha1_to_identifier(sha1[0])})"))
    return problems


def _checksums(description: etree._Element) -> list[tuple[str, str]]:
    return [((c.findtext(m.ALGORITHM) or "").strip(), (c.findtext(m.VALUE) or "").strip())
            for c in description.findall(m.CHECKSUM)]


def _sha1_values(description: etree._Element) -> list[str]:
    return [value for algorithm, value in _checksums(description) if algorithm == "SHA-1"]


def _is_hex(value: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]+", value) is not None


def _checksum_problems(description: etree._Element) -> list[Problem]:
    problems = []
    for algorithm, _ in _checksums(description):
        if algorithm not in ALGORITHMS:
            problems.append(Problem("slreq:algorithm", "checksum-algorithm",
                                    f"algorithm {algorithm!r} is not one of "
                                    f"{', '.join(ALGORITHMS)}"))
    count = len(_sha1_values(description))
    if count != 1:
        problems.append(Problem("slreq:checksum", "one-sha1",
                                f"found {count} SHA-1 checksums, exactly one is required"))
    return problems


def _type_problems(description: etree._Element) -> list[Problem]:
    types = description.findall(_DCTERMS_TYPE)
    if len(types) != 1:
        return [Problem("dcterms:type", "one-type",
                        f"found {len(types)} dcterms:type elements, exactly one is required")]
    return []


def _cardinality_problems(description: etree._Element) -> list[Problem]:
    counts = Counter(child.tag for child in doc.elements(description))
    return [Problem(f"slterms:{name}", "at-most-one",
                    f"slterms:{name} appears {counts[tag]} times, at most once is allowed")
            for name in AT_MOST_ONE
            if counts[tag := f"{{{doc.SLTERMS}}}{name}"] > 1]


def _resource_node_problems(description: etree._Element) -> list[Problem]:
    """The structured slreq properties must be resources (in either parseType form)."""
    return [Problem(doc.qname(node), "parse-type",
                    f'{doc.qname(node)} must have rdf:parseType="Resource"')
            for tag in RESOURCE_NODES for node in description.iter(tag)
            if parse_type(node) is None]
