"""Active content: what a browser would run or apply, refused anywhere in a document.

Stored documents are served to browsers, which run XHTML, SVG and MathML scripts, apply
XSLT and ``xml-stylesheet`` instructions and follow XLink and ``javascript:`` links, on the
marketplace's origin. None of that belongs in image metadata. The first layer of
:mod:`marketplace.metadata.validation`, one walk of the tree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from lxml import etree

from marketplace.metadata.document import prefixed, qname
from marketplace.metadata.problems import Problem

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


@functools.lru_cache(maxsize=512)
def active_namespace(uri: str | None) -> str | None:
    """The name of the browser language ``uri`` stands for (XHTML, SVG...), else None."""
    if not uri:
        return None
    normal = uri.strip().lower().rstrip("/#")
    return ACTIVE_NAMESPACES.get("http://" + normal.removeprefix("https://").removeprefix(
        "http://"))


def _namespace(name: str) -> str | None:
    """The namespace of a ``{namespace}local`` name (None without one)."""
    return name[1:name.index("}")] if name.startswith("{") else None


def _element_problems(element: etree._Element) -> Iterator[Problem]:
    language = active_namespace(_namespace(element.tag))
    if language:
        yield Problem(qname(element), ACTIVE_CONTENT,
                      f"{qname(element)} is an element of {language}, which browsers execute "
                      "or render; it is not allowed in metadata")
    for name, value in element.attrib.items():
        language = active_namespace(_namespace(name))
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
