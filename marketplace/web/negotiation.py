"""Which media type a response takes (XML, JSON or HTML), and rendering a reply in it.

``?media=xml|json|html`` wins over the ``Accept`` header; ``*/*``, no ``Accept`` or nothing
we offer gives XML, as the original StratusLab marketplace did. A view returns a
:class:`Reply` (its data, an XML producer and a template name) and :func:`render` turns it
into the response; errors go through :func:`error` in the same media type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flask import Response, render_template, request
from lxml import etree

XML = "xml"
JSON = "json"
HTML = "html"
MEDIA = (XML, JSON, HTML)
XML_TYPE = "application/xml"
RDF_XML_TYPE = "application/rdf+xml"
XML_UTF8 = "application/xml; charset=utf-8"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html"
_OFFERS = {XML_TYPE: XML, RDF_XML_TYPE: XML, "text/xml": XML, JSON_TYPE: JSON,
           HTML_TYPE: HTML, "application/xhtml+xml": HTML}
_ENCODING = re.compile(rb"""\A<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_PROLOG = re.compile(rb"\A(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_START_TAG = re.compile(rb"<([^\s/>]+)")


class BadMedia(ValueError):
    """A ``media`` parameter that is not one of xml, json, html."""


def requested() -> str:
    """The media type of this request's answer; raises BadMedia for a bad ``media``."""
    value = request.args.get("media")
    if value is None:
        return from_accept()
    if value.lower() not in MEDIA:
        raise BadMedia(f"media must be one of {', '.join(MEDIA)}; got {value[:40]!r}")
    return value.lower()


def from_accept() -> str:
    """The media type the ``Accept`` header prefers; XML when it has no preference."""
    best = request.accept_mimetypes.best_match(list(_OFFERS), default=XML_TYPE)
    return _OFFERS[best]


def for_error() -> str:
    """The media type of an error answer: as requested, else by ``Accept`` alone."""
    try:
        return requested()
    except BadMedia:
        return from_accept()


@dataclass
class Reply:
    """What a view answers, before choosing the media type.

    ``data`` is the JSON body and, with ``context``, the template's context; ``xml`` makes
    the XML body, sent as ``xml_type`` with ``xml_headers``.
    """

    data: dict
    template: str
    xml: Callable[[], bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    xml_type: str = XML_UTF8
    xml_headers: dict[str, str] = field(default_factory=dict)
    context: dict = field(default_factory=dict)


def render(reply: Reply, media: str) -> Response:
    """The reply as a response in ``media``."""
    headers = {"Vary": "Accept", **reply.headers}
    if media == JSON:
        return json_response(reply.data, reply.status, headers)
    if media == HTML:
        page = render_template(f"api/{reply.template}", **reply.data, **reply.context)
        return Response(page, reply.status, headers, mimetype=HTML_TYPE)
    return Response(reply.xml(), reply.status, {**headers, **reply.xml_headers},
                    content_type=reply.xml_type)


def json_response(data: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A compact JSON response."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status, headers, mimetype=JSON_TYPE)


def error(status: int, message: str, problems: Iterable[dict] = (), media: str = XML,
          headers: dict | None = None) -> Response:
    """An error answer: XML error document, JSON ``{"error", "problems"}`` or an HTML page."""
    data = {"error": message, "status": status, "problems": list(problems)}
    return render(Reply(data, "error.html", lambda: error_xml(data), status, headers or {}),
                  media)


def error_xml(data: dict) -> bytes:
    """The error document; its root's own text is the message too, which is what the
    original StratusLab uploader prints (``etree.fromstring(body).text``)."""
    root = etree.Element("error", status=str(data["status"]))
    root.text = xml_text(data["error"])
    etree.SubElement(root, "message").text = xml_text(data["error"])
    problems = etree.SubElement(root, "problems")
    for problem in data["problems"]:
        etree.SubElement(problems, "problem", element=xml_text(problem["element"]),
                         rule=xml_text(problem["rule"])).text = xml_text(problem["message"])
    return to_bytes(root)


def to_bytes(root: etree._Element) -> bytes:
    """An element as a UTF-8 XML document."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def xml_text(text: str) -> str:
    """Text without the characters XML 1.0 cannot carry (they come from hostile input)."""
    return "".join(c for c in text if c in "\t\n\r" or " " <= c <= "\ud7ff"
                   or "\ue000" <= c <= "\ufffd" or c >= "\U00010000")


def root_element(document: bytes) -> bytes:
    """The ``rdf:RDF`` element of a stored document, byte for byte, as UTF-8.

    Drops the XML declaration and any comments or processing instructions around the
    root. A document in another encoding (or of an unexpected shape) is re-serialized by
    lxml instead, which keeps its canonical form and so its signature.
    """
    encoding = _ENCODING.match(document)
    if encoding is None or encoding.group(1).lower() in (b"utf-8", b"utf8", b"us-ascii"):
        body = document.removeprefix(b"\xef\xbb\xbf")
        body = body[_PROLOG.match(body).end():]
        body = _strip_epilog(body)
        name = _START_TAG.match(body)
        if name and body.endswith(b">") and re.search(
                rb"</" + re.escape(name.group(1)) + rb"\s*>\Z", body):
            return body
    from marketplace.metadata.document import parse
    return etree.tostring(parse(document), encoding="UTF-8")


def _strip_epilog(body: bytes) -> bytes:
    body = body.rstrip()
    while body.endswith((b"-->", b"?>")):
        start = body.rfind(b"<!--" if body.endswith(b"-->") else b"<?")
        if start < 0:
            break
        body = body[:start].rstrip()
    return body
