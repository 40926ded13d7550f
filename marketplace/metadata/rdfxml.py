"""The RDF/XML grammar a metadata document must follow once its signature is set aside.

Only the part of RDF/XML that metadata documents use is accepted: node elements holding
property elements; property elements that are literals, empty with property attributes or
``rdf:resource``, hold ``rdf:parseType="Resource"`` content, or wrap a single node element.
``Literal`` and ``Collection`` parse types are accepted; any other parse type is refused.
An unqualified ``parseType`` is read as ``rdf:parseType``, as RDF/XML reads the older
unqualified form (RDF/XML Syntax Specification, 6.1.4); the original
``stratus-deprecate-metadata`` wrote its endorsement that way.
"""

from __future__ import annotations

from lxml import etree

from marketplace.metadata.document import RDF, XML, elements, prefixed, qname
from marketplace.metadata.problems import Problem

PARSE_TYPE = f"{{{RDF}}}parseType"
UNQUALIFIED_PARSE_TYPE = "parseType"
_PARSE_TYPES = {PARSE_TYPE, UNQUALIFIED_PARSE_TYPE}
_LITERAL_ATTRIBUTES = {f"{{{RDF}}}ID", f"{{{RDF}}}datatype"}


def rdf_problems(node: etree._Element) -> list[Problem]:
    """Problems of a node element (e.g. ``rdf:Description``) and everything below it."""
    problems = []
    if _has_text(node):
        problems.append(_problem(node, f"node element {qname(node)} holds text"))
    for prop in elements(node):
        problems.extend(_property_problems(prop))
    return problems


def parse_type(prop: etree._Element) -> str | None:
    """The parse type of a property element, in either form (``None`` when it has none)."""
    return prop.get(PARSE_TYPE, prop.get(UNQUALIFIED_PARSE_TYPE))


def _property_problems(prop: etree._Element) -> list[Problem]:
    forms = {prop.get(name) for name in _PARSE_TYPES} - {None}
    if len(forms) > 1:
        return [_problem(prop, f"{qname(prop)} has rdf:parseType and parseType with "
                               "different values")]
    kind = parse_type(prop)
    children = elements(prop)
    if kind == "Resource":
        return _resource_problems(prop)
    if kind == "Literal":
        return []
    if kind == "Collection":
        return [p for child in children for p in rdf_problems(child)]
    if kind is not None:
        return [_problem(prop, f"rdf:parseType {kind!r} on {qname(prop)} is not "
                               "Resource, Literal or Collection")]
    if children:
        return _wrapper_problems(prop, children)
    return _literal_problems(prop)


def _resource_problems(prop: etree._Element) -> list[Problem]:
    strays = _property_attributes(prop) - {f"{{{RDF}}}ID"}
    problems = [_problem(prop, f"{qname(prop)} with rdf:parseType=\"Resource\" has attribute "
                               f"{prefixed(a)}") for a in sorted(strays)]
    return problems + rdf_problems(prop)


def _wrapper_problems(prop: etree._Element, children: list[etree._Element]) -> list[Problem]:
    if len(children) > 1 or _has_text(prop) or _has_text(children[0]):
        return [_problem(prop, f"{qname(prop)} holds elements that are not one RDF node; "
                               "structured content needs rdf:parseType=\"Resource\"")]
    return rdf_problems(children[0])


def _literal_problems(prop: etree._Element) -> list[Problem]:
    if not _has_text(prop):
        return []
    strays = _property_attributes(prop) - _LITERAL_ATTRIBUTES
    return [_problem(prop, f"{qname(prop)} has text and the attribute {prefixed(a)}; only an "
                           "empty property element may carry property attributes")
            for a in sorted(strays)]


def _property_attributes(element: etree._Element) -> set[str]:
    return {a for a in element.attrib
            if not a.startswith(f"{{{XML}}}") and a not in _PARSE_TYPES}


def _has_text(element: etree._Element) -> bool:
    if element.text and element.text.strip():
        return True
    return any(child.tail and child.tail.strip() for child in element)


def _problem(element: etree._Element, message: str) -> Problem:
    return Problem(qname(element), "rdf-xml", message)
