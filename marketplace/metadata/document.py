"""Reading and writing the XML of a metadata document, safely.

Every document from outside goes through :func:`parse`: no DTD, no entities, no network,
a size limit, limits on the tree checked before the tree is built, and errors that say what
is wrong. Everything else works on the tree.
"""

from __future__ import annotations

from lxml import etree

from marketplace.metadata.problems import fail

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DCTERMS = "http://purl.org/dc/terms/"
SLREQ = "http://mp.stratuslab.eu/slreq#"
SLTERMS = "http://mp.stratuslab.eu/slterms#"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
XML = "http://www.w3.org/XML/1998/namespace"
NSMAP = {"rdf": RDF, "dcterms": DCTERMS, "slreq": SLREQ, "slterms": SLTERMS}
PREFIXES = {uri: prefix for prefix, uri in NSMAP.items()}

XML_BASE = "http://mp.stratuslab.eu/"
MAX_DOCUMENT_BYTES = 1024 * 1024

RDF_ROOT = f"{{{RDF}}}RDF"
DESCRIPTION = f"{{{RDF}}}Description"
ABOUT = f"{{{RDF}}}about"
PARSE_TYPE = f"{{{RDF}}}parseType"
BASE = f"{{{XML}}}base"
SIGNATURE = f"{{{DSIG}}}Signature"


MAX_ELEMENTS = 4096
MAX_ATTRIBUTES = 4096
MAX_NAMESPACE_DECLARATIONS = 256
MAX_DEPTH = 32


class _NoExternal(etree.Resolver):
    """Opens nothing: libxml2 would otherwise read a file a DOCTYPE names."""

    def resolve(self, url, pubid, context):
        return self.resolve_string("", context)


def _parser(target: object | None = None) -> etree.XMLParser:
    """No DTD, entities, network or files; comments dropped, since no signature covers them
    (a reference ``URI=""`` excludes comments) and so they must not change what is read."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        huge_tree=False, remove_blank_text=False, collect_ids=False, remove_comments=True,
        target=target,
    )
    parser.resolvers.add(_NoExternal())
    return parser


class _TreeTooBig(Exception):
    """Raised by :class:`_Measure` to stop the parser at the first limit passed."""


class _Measure:
    """A parser target that counts what the parser reads and builds nothing.

    A metadata document has a few dozen elements; a megabyte of attributes, elements or
    namespace declarations is an attack on memory (a tree of 140,000 attributes takes
    ~30 MB, and every later check would make a problem per node), so it is refused before
    any tree is built.
    """

    def __init__(self) -> None:
        self.elements = self.attributes = self.declarations = self.depth = 0

    def start(self, tag: str, attrib: dict) -> None:
        self.elements += 1
        self.attributes += len(attrib)
        self.depth += 1
        self._limit(self.elements, MAX_ELEMENTS, "elements")
        self._limit(self.attributes, MAX_ATTRIBUTES, "attributes")
        if self.depth > MAX_DEPTH:
            raise _TreeTooBig(f"elements are nested more than {MAX_DEPTH} deep")

    def end(self, tag: str) -> None:
        self.depth -= 1

    def start_ns(self, prefix: str | None, uri: str) -> None:
        self.declarations += 1
        self._limit(self.declarations, MAX_NAMESPACE_DECLARATIONS, "namespace declarations")

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        return None

    @staticmethod
    def _limit(count: int, limit: int, what: str) -> None:
        if count > limit:
            raise _TreeTooBig(f"the document has more than {limit} {what}")


def _measure(data: bytes) -> None:
    """Refuse a tree past the limits, reading it without building it; syntax errors are
    left to the real parse, which reports them."""
    try:
        etree.fromstring(data, _parser(_Measure()))
    except _TreeTooBig as exc:
        raise fail("document", "tree-limit", f"{exc}; metadata documents are far smaller, "
                   "so it is not read further") from None
    except etree.XMLSyntaxError:
        pass


def parse(data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """Parse a metadata document from bytes and return its ``rdf:RDF`` root element."""
    if not isinstance(data, bytes):
        raise TypeError("metadata documents are parsed from bytes")
    if len(data) > max_bytes:
        raise fail("document", "size-limit",
                   f"document is {len(data)} bytes, more than the limit of {max_bytes}")
    if not data.strip():
        raise fail("document", "not-xml", "document is empty")
    _measure(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise fail("document", "not-xml", f"not well-formed XML: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise fail("document", "no-dtd", "a DOCTYPE declaration is not allowed")
    if root.tag != RDF_ROOT:
        raise fail("document", "root-element",
                   f"root element is {qname(root)}, expected rdf:RDF")
    return root


def fragment(xml_text: str) -> etree._Element:
    """Parse a trusted XML fragment (an element the model kept) with the same parser."""
    return etree.fromstring(xml_text, _parser())


def serialize(root: etree._Element) -> bytes:
    """The document as UTF-8 bytes with an XML declaration, exactly as the tree is."""
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8",
                          standalone=False)


_MESSAGE_PREFIXES = {**PREFIXES, DSIG: "ds", XML: "xml"}


def prefixed(name: str, prefix: str | None = None) -> str:
    """A readable form of a ``{namespace}local`` name for messages, e.g. ``slterms:os``."""
    q = etree.QName(name)
    prefix = _MESSAGE_PREFIXES.get(q.namespace or "") or prefix
    if prefix:
        return f"{prefix}:{q.localname}"
    return name if q.namespace else q.localname


def qname(element: etree._Element) -> str:
    """The readable name of an element, e.g. ``slterms:os``."""
    return prefixed(element.tag, element.prefix)


def elements(parent: etree._Element) -> list[etree._Element]:
    """The child elements of ``parent``, skipping comments and processing instructions."""
    return [child for child in parent if isinstance(child.tag, str)]


def description_of(root: etree._Element) -> etree._Element:
    """The single ``rdf:Description`` of a document (validation checks there is one)."""
    found = root.find(DESCRIPTION)
    if found is None:
        raise fail("rdf:Description", "one-description", "the document has no rdf:Description")
    return found


def signatures_of(root: etree._Element) -> list[etree._Element]:
    """Every XML-DSig ``Signature`` element anywhere in the document."""
    return list(root.iter(SIGNATURE))
