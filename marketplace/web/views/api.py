"""The REST API: upload, the original StratusLab listing routes, the JSON search, health.

Every view reads and checks its path and query parameters first (:mod:`..params`: nothing
unchecked reaches the store), asks the store, and returns a
:class:`~marketplace.web.negotiation.Reply` that is rendered as XML (default), JSON or HTML.
``/api/v1``, ``/healthz`` and ``/openapi.json`` answer JSON only. Errors of any route come
back as a document in the same media type, naming the parameter or the metadata element at
fault (:mod:`..errors`). ``openapi.json`` beside the web package describes every route.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, Response, request
from lxml import etree
from werkzeug.exceptions import NotFound

from marketplace.log.check import recorded
from marketplace.metadata.model import format_date
from marketplace.metadata.vocabulary import MAX_LIMIT, named_facets
from marketplace.service import PendingConfirmation
from marketplace.store.base import EndorserStats, Entry, Page, Query
from marketplace.web import metrics, negotiation
from marketplace.web.current import current_marketplace, current_moderation, current_store
from marketplace.web.errors import rejection
from marketplace.web.negotiation import Reply
from marketplace.web.params import (
    NO_MERGED_SLASHES,
    date_value,
    email_value,
    identifier_value,
    listing_query,
    make_cursor,
    path_names,
    read_upload,
    search_query,
    tag_value,
)
from marketplace.web.urls import absolute, endorser_url, entry_url, tag_url, upload_url

blueprint = Blueprint("api", __name__)

OPENAPI = Path(__file__).resolve().parents[1] / "openapi.json"
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
PATH_WORDS = {"identifier": "the identifier", "email": "the endorser",
              "created": "the endorsement date"}
MAX_TAGGED = 20  # entries of one tag weighed for whose email stands (a tag has a few)


# --- forms of entries --------------------------------------------------------------------


def entry_json(entry: Entry, now: datetime, log_index: int | None = None) -> dict:
    """The entry as JSON: the appliance's fields plus email, status, url and the index of
    the log leaf that published it (None: the log has none)."""
    return {**entry.as_dict(), "email": entry.email,
            "status": entry.status(now), "url": entry_url(entry),
            "log_index": log_index}


def entries_json(entries: list[Entry], now: datetime) -> list[dict]:
    """Entries as JSON, their log indexes read in one call."""
    indexes = current_store().state.leaf_indexes([e.key for e in entries])
    return [entry_json(e, now, indexes.get(e.key)) for e in entries]


def listing_reply(page: Page, query: Query, heading: str) -> Reply:
    """A listing: XML ``<metadata>`` holding each signed ``rdf:RDF`` verbatim, JSON or HTML."""
    data = {"entries": entries_json(page.entries, query.now), "total": page.total}
    context = {"heading": heading, "offset": query.offset, "limit": query.limit}
    return Reply(data, "listing.html", lambda: listing_xml(page, query), context=context)


def listing_xml(page: Page, query: Query) -> bytes:
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="{page.total}" '
            f'offset="{query.offset}" limit="{query.limit}">\n').encode()
    documents = [negotiation.root_element(e.document) + b"\n" for e in page.entries]
    return head + b"".join(documents) + b"</metadata>\n"


def entry_reply(entry: Entry, now: datetime) -> Reply:
    """One entry: the stored bytes exactly as ``application/rdf+xml``, JSON or HTML. The
    signed bytes cannot carry the log index: the XML has it in a ``Log-Index`` header."""
    identifier, _, created = entry.key
    filename = UNSAFE_FILENAME.sub("-", f"{identifier}-{created}") + ".xml"
    context = {"document": entry.document.decode("utf-8", "replace")}
    data = entries_json([entry], now)[0]
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if data["log_index"] is not None:
        headers["Log-Index"] = str(data["log_index"])
    return Reply(data, "entry.html", lambda: entry.document,
                 xml_type=negotiation.RDF_XML_TYPE, context=context, xml_headers=headers)


def endorser_json(endorser: EndorserStats) -> dict:
    return {"email": endorser.email, "subject": endorser.subject, "entries": endorser.entries,
            "latest": format_date(endorser.latest),
            "url": endorser_url(endorser.email)}


def endorsers_xml(endorsers: list[dict]) -> bytes:
    root = etree.Element("endorsers", total=str(len(endorsers)))
    for endorser in endorsers:
        element = etree.SubElement(root, "endorser", email=endorser["email"],
                                   entries=str(endorser["entries"]), latest=endorser["latest"])
        etree.SubElement(element, "subject").text = negotiation.xml_text(endorser["subject"])
    return negotiation.to_bytes(root)


def tags_xml(email: str, tags: list[dict]) -> bytes:
    root = etree.Element("tags", email=email)
    for tag in tags:
        etree.SubElement(root, "tag", count=str(tag["count"])).text = \
            negotiation.xml_text(tag["tag"])
    return negotiation.to_bytes(root)


def accepted_xml(data: dict, tag: str = "entry") -> bytes:
    root = etree.Element(tag, {k: str(v).lower() if isinstance(v, bool) else str(v)
                               for k, v in data.items() if v is not None})
    return negotiation.to_bytes(root)


def pending_reply(held: PendingConfirmation) -> Reply:
    """202: the upload awaits its endorser's confirmation; Location says where it stands."""
    upload = held.upload
    data = {"identifier": upload.identifier, "email": upload.email, "created": upload.created,
            "state": upload.state, "expires": format_date(upload.expires),
            "url": upload_url(*upload.key),
            "message": f"a mail with a confirmation link went to {upload.email}; the entry is "
                       "published once it is followed" if held.mailed else
                       "this upload already awaits its endorser's confirmation"}
    return Reply(data, "pending.html", lambda: accepted_xml(data, "upload"), 202,
                 {"Location": absolute(data["url"])})


def negotiated(view: Callable[..., Reply]) -> Callable[..., Response]:
    """Choose the media type before the view runs, then render its reply in it."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs) -> Response:
        media = negotiation.requested()
        return negotiation.render(view(*args, **kwargs), media)

    return wrapper


# --- accepting metadata ------------------------------------------------------------------

@blueprint.post("/metadata")
@negotiated
def upload() -> Reply:
    """Verify and store a signed document: 201 when new, 200 for an identical replay,
    202 when it awaits its endorser's confirmation."""
    try:
        entry, publication = current_marketplace().accept(read_upload(),
                                                          client=request.remote_addr or "")
    except PendingConfirmation as held:
        return pending_reply(held)
    except Exception as exc:
        metrics.upload_rejected(rejection(exc))
        raise
    new = publication.new
    metrics.upload_accepted(new)
    identifier, email, created = entry.key
    data = {"identifier": identifier, "email": email, "created": created,
            "url": entry_url(entry), "new": new, "log_index": publication.leaf}
    headers = {"Location": absolute(data["url"])}
    if publication.leaf is not None:
        headers["Log-Index"] = str(publication.leaf)
    return Reply(data, "accepted.html", lambda: accepted_xml(data), 201 if new else 200,
                 headers)


# --- serving metadata --------------------------------------------------------------------


@blueprint.get("/metadata")
@blueprint.get("/metadata/<first>", **NO_MERGED_SLASHES)
@blueprint.get("/metadata/<first>/<second>", **NO_MERGED_SLASHES)
def listing(first: str | None = None, second: str | None = None) -> Response:
    """Latest entries per identifier and endorser (all of one date when a date is given).

    The path's segments are read by their shape, as the original did (``/metadata/<email>``,
    ``/<identifier>/<created>``, ``/<email>/<identifier>``...); a path naming what has no
    entry at all is 404. Without ``limit`` or ``offset``, the XML and JSON forms hold every
    matching entry, streamed page by page in constant memory, as the original served the
    whole catalogue; with them (and always in HTML) one page.
    """
    media = negotiation.requested()
    path = path_names(s for s in (first, second) if s is not None)
    query = listing_query(path)
    whole = media != negotiation.HTML and not (
        "limit" in request.args or "offset" in request.args)
    if whole:
        query = replace(query, limit=MAX_LIMIT)
    page = current_store().search(query)
    if path and not page.total:
        check_named(query, path)
    if whole:
        return streamed_listing(query, page, media)
    heading = " / ".join(["Metadata", *path.values()])
    return negotiation.render(listing_reply(page, query, heading), media)


def check_named(query: Query, path: dict[str, str]) -> None:
    """404 unless some entry, of any status, has what the path names.

    Only the path counts: an identifier or endorser that exists but has no entry of the
    query's tag, status or location gets an empty listing (200), not a 404 that would say
    it is unknown.
    """
    named = Query(filters={k: v for k, v in query.filters.items() if k in path},
                  created=query.created if "created" in path else None, status="all",
                  limit=1)
    if not current_store().search(named).total:
        raise NotFound("no entry has " + " and ".join(
            f"{PATH_WORDS[name]} {value}" for name, value in path.items()))


def streamed_listing(query: Query, first: Page, media: str) -> Response:
    """Every entry of ``query``, from its ``first`` page on, read from the store a page at
    a time while it is sent: memory holds one page, whatever the catalogue's size.

    The store is taken now: the body is read after the view returns, outside the request's
    context, which Flask's ``stream_with_context`` would hold until then (two bodies open
    at once, or one never read, then pop contexts out of turn).
    """
    store = current_store()
    indexes: dict = {}

    def entries(page: Page) -> Iterator[Entry]:
        offset = query.offset
        while True:
            if media == negotiation.JSON:  # a page's log indexes in one call
                indexes.update(store.state.leaf_indexes([e.key for e in page.entries]))
            yield from page.entries
            if len(page.entries) < query.limit:
                return
            offset += len(page.entries)
            page = store.search(replace(query, offset=offset))

    if media == negotiation.JSON:
        body = _json_stream(entries(first), first.total, query.now, indexes)
        mimetype = negotiation.JSON_TYPE
    else:
        body = _xml_stream(entries(first), first.total)
        mimetype = negotiation.XML_UTF8
    return Response(body, 200, {"Vary": "Accept"}, content_type=mimetype)


def _xml_stream(entries: Iterator[Entry], total: int) -> Iterator[bytes]:
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="{total}">\n'.encode()
    for entry in entries:
        yield negotiation.root_element(entry.document) + b"\n"
    yield b"</metadata>\n"


def _json_stream(entries: Iterator[Entry], total: int, now: datetime,
                 indexes: dict) -> Iterator[bytes]:
    yield b'{"entries":['
    for number, entry in enumerate(entries):
        yield (b"," if number else b"") + json.dumps(
            entry_json(entry, now, indexes.get(entry.key)), ensure_ascii=False,
            separators=(",", ":")).encode()
    yield f'],"total":{total}}}'.encode()


@blueprint.get("/metadata/<identifier>/<email>/<created>", **NO_MERGED_SLASHES)
@negotiated
def entry(identifier: str, email: str, created: str) -> Reply:
    """One stored document, byte for byte."""
    key = (identifier_value("identifier", identifier), email_value("email", email),
           date_value("created", created))
    found = current_store().get(*key)
    if found is None:
        raise NotFound(f"no entry of {key[0]} by {key[1]} at {created}")
    return entry_reply(found, datetime.now(UTC))


@blueprint.get("/endorsers")
@negotiated
def endorsers() -> Reply:
    """Every endorser with how many entries they published and when last."""
    found = [endorser_json(e) for e in current_store().endorsers()]
    data = {"endorsers": found, "total": len(found)}
    return Reply(data, "endorsers.html", lambda: endorsers_xml(found))


@blueprint.get("/endorsers/<email>", **NO_MERGED_SLASHES)
@negotiated
def endorser(email: str) -> Reply:
    """An endorser's latest entries, newest first, whatever their status by default."""
    path = {"email": email}
    query = listing_query(path, status="all")
    page = current_store().search(query)
    if not page.total:
        check_named(query, path)
    return listing_reply(page, query, f"Endorser {query.filters['email']}")


@blueprint.get("/endorsers/<email>/tags", **NO_MERGED_SLASHES)
@negotiated
def endorser_tags(email: str) -> Reply:
    """The tags (``dcterms:alternative``) an endorser used, with their counts."""
    email = email_value("email", email)
    tags = [{"tag": tag, "count": count, "url": tag_url(email, tag)}
            for tag, count in current_store().tags(email).items()]
    data = {"email": email, "tags": tags}
    return Reply(data, "tags.html", lambda: tags_xml(email, tags))


@blueprint.get("/tag/<email>/<tag>", **NO_MERGED_SLASHES)
@negotiated
def tagged(email: str, tag: str) -> Reply:
    """The latest non-deprecated entry of an endorser carrying a tag."""
    email, tag = email_value("email", email), tag_value("tag", tag)
    found = latest_tagged(email, tag)
    if found is None:
        raise NotFound(f"no entry of {email} that is not deprecated is tagged {tag!r}")
    reply = entry_reply(found, datetime.now(UTC))
    reply.headers["Content-Location"] = absolute(entry_url(found))
    return reply


def latest_tagged(email: str, tag: str) -> Entry | None:
    """The newest entry with the tag, among those the email's proof lets stand together."""
    now = datetime.now(UTC)
    candidates = [entry for status in ("valid", "expired")
                  for entry in current_store().search(Query(filters={"email": email, "tag": tag},
                                                    status=status, limit=MAX_TAGGED,
                                                    now=now)).entries]
    kept, _ = current_moderation().unmixed(candidates)
    return max(kept, key=lambda e: e.created, default=None)


# --- JSON API, health, metrics -----------------------------------------------------------


@blueprint.get("/api/v1/appliances")
def search() -> Response:
    """Free text, filters, ranges, sort, paging by offset or cursor, facet counts."""
    search = search_query()
    query = search.query
    page = current_store().search(query)
    following = query.offset + len(page.entries)
    return negotiation.json_response({
        "items": entries_json(page.entries, query.now), "total": page.total,
        "next_cursor": (make_cursor(following, search.fingerprint)
                        if following < page.total else None),
        "facets": named_facets(page.facets)})


@blueprint.get("/api/v1/appliances/<identifier>", **NO_MERGED_SLASHES)
def appliance(identifier: str) -> Response:
    """Every endorser's latest entry of one identifier, whatever its status."""
    query = Query(filters={"identifier": identifier_value("identifier", identifier)},
                  status="all", limit=MAX_LIMIT)
    page = current_store().search(query)
    if not page.total:
        raise NotFound(f"no entry of {identifier}")
    return negotiation.json_response(
        {"items": entries_json(page.entries, query.now), "total": page.total})


@blueprint.get("/api/v1/ping")
def ping() -> Response:
    """The cheapest JSON answer: the ceiling of the benchmarks; the store is not touched."""
    return negotiation.json_response({"pong": True})


@blueprint.get("/healthz")
def healthz() -> Response:
    """200 while the store serves (its status may say ``degraded``: a load balancer keeps a
    server whose cluster lost a node but still answers), 503 when it cannot or when the
    transparency log does not match what was recorded."""
    health = current_store().health()
    log = recorded(current_store().state) if health["store"] else None
    if log is not None:  # the comparison with the transparency log made at start
        health["log"] = log
        if not log["ok"]:
            health["status"] = "log-mismatch"
    serving = health["store"] and health["status"] != "log-mismatch"
    return negotiation.json_response(health, 200 if serving else 503)


@blueprint.get("/metrics")
def metrics_text() -> Response:
    body, content_type = metrics.exposition(current_store())
    return Response(body, content_type=content_type)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return Response(openapi_document(), mimetype="application/json")


@functools.cache
def openapi_document() -> bytes:
    return OPENAPI.read_bytes()
