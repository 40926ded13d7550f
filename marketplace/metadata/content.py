"""What a document may carry at all, before any rule of the profile is asked.

Two layers of :mod:`marketplace.metadata.validation`, both a single walk of the tree:

- the size of the tree (:func:`tree_problems`): a metadata document has a few dozen
  elements, so a megabyte of attributes, elements or namespace declarations is an attack on
  the validator's memory, refused before the other layers build a problem per node;
- active content (:func:`active_content_problems`): stored documents are served to
  browsers, which run XHTML, SVG and MathML scripts, apply XSLT and ``xml-stylesheet``
  instructions and follow XLink ``javascript:`` links on the marketplace's origin. None of
  that belongs in image metadata, so it is refused wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree

from marketplace.metadata.document import prefixed, qname
from marketplace.metadata.problems import Problem

MAX_ELEMENTS = 4096
MAX_ATTRIBUTES = 4096
MAX_NAMESPACE_DECLARATIONS = 256
MAX_DEPTH = 32
TREE_LIMIT = "tree-limit"
ACTIVE_CONTENT = "active-content"

# Lower case, without a trailing "/" or "#", http for https: a browser acts only on the
# exact names, but a near miss has no business in metadata either.
ACTIVE_NAMESPACES = {
    "http://www.w3.org/1999/xhtml": "XHTML",
    "http://www.w3.org/2000/svg": "SVG",
    "http://www.w3.org/1998/math/mathml": "MathML",
    "http://www.w3.org/1999/xsl/transform": "XSLT",
    "http://www.w3.org/tr/wd-xsl": "XSLT",
    "http://www.w3.org/1999/xlink": "XLink",
    "http://www.w3.org/2001/xml-events": "XML Events",
}
_SCRIPT_URL = re.compile(r"(?:javascript|vbscript):", re.IGNORECASE)
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20]+")


def tree_problems(root: etree._Element) -> list[Problem]:
    """The first limit the tree passes, if any: at most one problem, found without
    building anything per node."""
    elements = attributes = declarations = depth = 0
    for event, node in etree.iterwalk(root, events=("start", "end", "start-ns")):
        if event == "start-ns":
            declarations += 1
        elif event == "end":
            depth -= 1
            continue
        else:
            elements += 1
            attributes += len(node.attrib)
            depth += 1
        if elements > MAX_ELEMENTS:
            return [_too_big(f"the document has more than {MAX_ELEMENTS} elements")]
        if attributes > MAX_ATTRIBUTES:
            return [_too_big(f"the document has more than {MAX_ATTRIBUTES} attributes")]
        if declarations > MAX_NAMESPACE_DECLARATIONS:
            return [_too_big(f"the document has more than {MAX_NAMESPACE_DECLARATIONS} "
                             "namespace declarations")]
        if depth > MAX_DEPTH:
            return [_too_big(f"elements are nested more than {MAX_DEPTH} deep")]
    return []


def _too_big(message: str) -> Problem:
    return Problem("document", TREE_LIMIT,
                   f"{message}; metadata documents are far smaller, so it is not read further")


def active_content_problems(root: etree._Element) -> Iterator[Problem]:
    """Every element, attribute, namespace declaration and processing instruction a
    browser would act on, anywhere in the document (also before and after the root)."""
    for node in root.itersiblings(preceding=True):
        yield from _instruction_problems(node)
    for event, node in etree.iterwalk(root, events=("start", "start-ns", "pi")):
        if event == "start-ns":
            yield from _declaration_problems(*node)
        elif event == "pi":
            yield from _instruction_problems(node)
        else:
            yield from _element_problems(node)
    for node in root.itersiblings():
        yield from _instruction_problems(node)


def active_namespace(uri: str | None) -> str | None:
    """The name of the browser language ``uri`` stands for (XHTML, SVG...), else None."""
    if not uri:
        return None
    normal = uri.strip().lower().rstrip("/#")
    return ACTIVE_NAMESPACES.get("http://" + normal.removeprefix("https://").removeprefix(
        "http://"))


def _element_problems(element: etree._Element) -> Iterator[Problem]:
    language = active_namespace(etree.QName(element).namespace)
    if language:
        yield Problem(qname(element), ACTIVE_CONTENT,
                      f"{qname(element)} is an element of {language}, which browsers execute "
                      "or render; it is not allowed in metadata")
    for name, value in element.attrib.items():
        language = active_namespace(etree.QName(name).namespace)
        if language:
            yield Problem(qname(element), ACTIVE_CONTENT,
                          f"attribute {prefixed(name)} of {qname(element)} belongs to "
                          f"{language}, which browsers act on; it is not allowed in metadata")
        elif _SCRIPT_URL.match(_IGNORED_IN_SCHEME.sub("", value)):
            yield Problem(qname(element), ACTIVE_CONTENT,
                          f"attribute {prefixed(name)} of {qname(element)} holds a script "
                          "URL (javascript: or vbscript:); it is not allowed in metadata")


def _declaration_problems(prefix: str | None, uri: str) -> Iterator[Problem]:
    language = active_namespace(uri)
    if language:
        declared = f"xmlns:{prefix}" if prefix else "xmlns"
        yield Problem("document", ACTIVE_CONTENT,
                      f"{declared} declares the {language} namespace {uri!r}, which browsers "
                      "act on; it is not allowed in metadata")


def _instruction_problems(node) -> Iterator[Problem]:
    if isinstance(node, etree._ProcessingInstruction):
        yield Problem(f"<?{node.target}?>", ACTIVE_CONTENT,
                      f"the processing instruction <?{node.target} ...?> is not allowed: "
                      "browsers apply xml-stylesheet instructions, and metadata needs none")
