"""Atom 1.0 feeds of searches, for people and their feed readers.

Everything in an entry is text the serializer escapes (``type="text"``): titles and
descriptions come from signed documents whose authors we do not trust with markup.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

from marketplace.metadata.hepix import image_uuid
from marketplace.metadata.identifier import entry_path
from marketplace.metadata.model import format_date

ATOM = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/atom+xml; charset=utf-8"
ET.register_namespace("", ATOM)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str):
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def feed(title: str, self_url: str, html_url: str, summaries: list[dict],
         updated: datetime) -> bytes:
    """A feed of entries (newest first, as given); ``updated`` when there are none."""
    root = ET.Element(f"{{{ATOM}}}feed")
    _add(root, "id", self_url)
    _add(root, "title", title, type="text")
    _add(root, "updated", summaries[0]["endorsement"]["created"] if summaries
         else format_date(updated))
    _add(root, "link", rel="self", type="application/atom+xml", href=self_url)
    _add(root, "link", rel="alternate", type="text/html", href=html_url)
    _add(root, "generator", "StratusLab-style marketplace")
    base = html_url.split("/", 3)
    origin = "/".join(base[:3])
    for summary in summaries:
        _entry(root, summary, origin)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _entry(root: ET.Element, summary: dict, origin: str) -> None:
    identifier, email = summary["identifier"], summary["email"]
    created = summary["endorsement"]["created"]
    entry = _add(root, "entry")
    _add(entry, "id", f"urn:uuid:{image_uuid(f'{identifier}|{email}|{created}')}")
    _add(entry, "title", summary.get("title") or identifier, type="text")
    _add(entry, "updated", created)
    _add(entry, "published", created)
    author = _add(entry, "author")
    _add(author, "name", summary["endorsement"].get("subject") or email)
    _add(author, "email", email)
    detail = f"{origin}/appliances/{identifier}?{urlencode({'endorser': email}, safe='@')}"
    _add(entry, "link", rel="alternate", type="text/html", href=detail)
    _add(entry, "link", rel="related", type="application/rdf+xml",
         href=origin + entry_path(identifier, email, created))
    facts = [f"{name}: {summary.get(key)}" for name, key in (
        ("Operating system", "os"), ("Version", "os_version"), ("Architecture", "os_arch"),
        ("Format", "format"), ("Hypervisor", "hypervisor"), ("Size (bytes)", "bytes"),
        ("Valid until", "valid"), ("Identifier", "identifier")) if summary.get(key)]
    _add(entry, "summary", summary.get("description") or "", type="text")
    _add(entry, "content", "\n".join([summary.get("description") or "", "", *facts]).strip(),
         type="text")
    for term in filter(None, (summary.get("os"), summary.get("tag"))):
        _add(entry, "category", term=term)
