"""The REST API: upload, the original StratusLab listing routes, the JSON search, health.

Every view reads and checks its path and query parameters first (nothing unchecked reaches
the store), asks the store, and returns a :class:`~marketplace.negotiation.Reply` that is
rendered as XML (default), JSON or HTML. ``/api/v1``, ``/healthz`` and ``/openapi.json``
answer JSON only. Errors of any route come back as a document in the same media type,
naming the parameter or the metadata element at fault. ``schemas/openapi.json`` describes
every route.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request
from lxml import etree
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import (
    HTTPException,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from marketplace import metrics, negotiation
from marketplace.app import marketplace_of
from marketplace.metadata.identifier import is_identifier
from marketplace.metadata.model import format_date, parse_date
from marketplace.metadata.problems import MetadataError
from marketplace.moderation.mail import MailUnavailable
from marketplace.moderation.store import OverQuota, Upload
from marketplace.negotiation import BadMedia, Reply
from marketplace.service import Marketplace, PendingConfirmation, Refused, TooLarge
from marketplace.store.base import (
    LOCATIONS,
    SORT_FIELDS,
    STATUSES,
    Conflict,
    Endorser,
    Entry,
    Page,
    Query,
    Store,
    StoreError,
)

blueprint = Blueprint("api", __name__)
metrics.install(blueprint)

OPENAPI = Path(__file__).resolve().parents[1] / "schemas" / "openapi.json"
UPLOAD_TYPES = ("application/xml", "application/rdf+xml", "text/xml")
# The patterns of the parameters, written once: the views check with them and
# schemas/openapi.json carries them (a test holds the two together). ASCII classes only,
# so that Python and the ECMA-262 regexes of JSON Schema read them alike; dates are real
# days of the Gregorian calendar (1 to 9999, 29 February in leap years only), as strptime
# reads them.
IDENTIFIER_PATTERN = "[A-P][A-Za-z0-9_-]{26}"  # 27 digits of at most 160 bits: is_identifier
EMAIL_PATTERN = "[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"
_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_MONTH_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
              "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_LEAP_DAY = ("(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])"
             "|(?:0[48]|[2468][048]|[13579][26])00)-02-29")
DAY_PATTERN = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})"
TIME_PATTERN = "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"
DATE_PATTERN = DAY_PATTERN + TIME_PATTERN
TOKEN_PATTERN = "[A-Za-z0-9_ .,:+/()@#~-]+"
# Tags are free text of their endorsers: any character but controls and surrogates.
TAG_PATTERN = "[A-Za-z0-9_ .,:+/()@#~\u00a0-\ud7ff\ue000-\ufffd-]+"
EMAIL = re.compile(EMAIL_PATTERN)
DATE = re.compile(DATE_PATTERN)
DAY = re.compile(DAY_PATTERN)
TOKEN = re.compile(TOKEN_PATTERN)
TAG = re.compile(TAG_PATTERN)
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
MAX_EMAIL = 254
MAX_VALUE = 200
MAX_TEXT = 500
MAX_TAGGED = 20  # entries of one tag weighed for whose email stands (a tag has a few)
MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
LISTING_LIMIT = 100
SEARCH_LIMIT = 20
RETRY_AFTER = "30"
READ_CHUNK = 64 * 1024

LISTING_PARAMS = ("identifier", "email", "created", "status", "location", "sort", "limit",
                  "offset", "media")
SEARCH_FILTERS = {"identifier": "identifier", "endorser": "email", "os": "os",
                  "os_version": "os_version", "arch": "os_arch", "kind": "kind",
                  "type": "type", "format": "format", "hypervisor": "hypervisor", "tag": "tag"}
SEARCH_PARAMS = (*SEARCH_FILTERS, "q", "status", "location", "created_from", "created_to",
                 "valid_from", "valid_to", "sort", "limit", "offset", "cursor", "facets")
PAGING = ("limit", "offset", "cursor", "facets")
JSON_ONLY = ("/api/", "/admin/api/", "/healthz", "/openapi.json", "/metrics")
EXACT = {"merge_slashes": False}  # an empty path segment is an error, not a redirect


class ParameterError(ValueError):
    """A path or query parameter that breaks its rules; the answer is 400."""

    def __init__(self, name: str, message: str):
        self.name = name
        self.message = message
        super().__init__(f"parameter {name!r}: {message}")

    @property
    def problems(self) -> list[dict[str, str]]:
        return [{"element": self.name, "rule": "parameter", "message": self.message}]


def service() -> Marketplace:
    return marketplace_of(current_app)


def store() -> Store:
    return service().store


# --- parameters -------------------------------------------------------------------------


def identifier_value(name: str, value: str) -> str:
    if not is_identifier(value):
        raise ParameterError(name, "must be a 27-character identifier (A-Z a-z 0-9 - _)")
    return value


def email_value(name: str, value: str) -> str:
    if len(value) > MAX_EMAIL or not EMAIL.fullmatch(value):
        raise ParameterError(name, "must be an endorser email (name@domain)")
    return value


def date_value(name: str, value: str, end_of_day: bool | None = None) -> datetime:
    """``YYYY-MM-DDTHH:MM:SSZ``; with ``end_of_day`` given, also a bare day (its first or
    last second)."""
    try:
        if DATE.fullmatch(value):
            return parse_date(value)
        if end_of_day is not None and DAY.fullmatch(value):
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1, seconds=-1) if end_of_day else day
    except ValueError:
        pass
    raise ParameterError(name, "must be a UTC date YYYY-MM-DDTHH:MM:SSZ"
                         + (" or YYYY-MM-DD" if end_of_day is not None else ""))


def token_value(name: str, value: str) -> str:
    if len(value) > MAX_VALUE or not TOKEN.fullmatch(value):
        raise ParameterError(name, f"must be at most {MAX_VALUE} ASCII letters, digits, "
                             "spaces or _ . , : + / ( ) @ # ~ -")
    return value


def tag_value(name: str, value: str) -> str:
    if len(value) > MAX_VALUE or not TAG.fullmatch(value):
        raise ParameterError(name, f"must be at most {MAX_VALUE} letters, digits, spaces "
                             "or _ . , : + / ( ) @ # ~ -")
    return value


class Params:
    """The query parameters of a request, each given at most once and free of control
    characters; ``strict`` refuses names outside ``known`` (others are ignored).

    An empty value is refused when ``refuse_empty`` (by default: when ``strict``), as
    the API documents; the pages drop it, since a form sends its empty fields.
    """

    def __init__(self, args: MultiDict, known: Iterable[str], strict: bool = False,
                 refuse_empty: bool | None = None):
        self.values: dict[str, str] = {}
        refuse_empty = strict if refuse_empty is None else refuse_empty
        known = set(known)
        for raw in args:
            name = raw.replace("-", "_")
            if name not in known:
                if strict:
                    raise ParameterError(raw[:40], "unknown parameter; known: "
                                         + ", ".join(sorted(known)))
                continue
            given = args.getlist(raw)
            if len(given) > 1 or name in self.values:
                raise ParameterError(name, "give it once")
            value = given[0]
            if len(value) > MAX_TEXT:
                raise ParameterError(name, f"is longer than {MAX_TEXT} characters")
            if any(c < " " or c == "\x7f" for c in value):
                raise ParameterError(name, "contains control characters")
            if not value and refuse_empty:
                raise ParameterError(name, "is empty: give a value or leave it out")
            if value:
                self.values[name] = value

    def get(self, name: str, check: Callable[[str, str], object] | None = None):
        value = self.values.get(name)
        return check(name, value) if check and value is not None else value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.values.get(name, default)
        if value not in choices:
            raise ParameterError(name, f"must be one of {', '.join(choices)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.values.get(name)
        if value is None:
            return default
        if not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
            raise ParameterError(name, f"must be an integer from {low} to {high}")
        return int(value)

    def date(self, name: str, end_of_day: bool | None = None) -> datetime | None:
        value = self.values.get(name)
        return None if value is None else date_value(name, value, end_of_day)

    def flag(self, name: str) -> bool:
        value = self.values.get(name, "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise ParameterError(name, "must be true or false")
        return value in ("true", "1")

    def sort(self) -> tuple[str, bool]:
        """The sort field and whether descending (``-field``); newest first by default."""
        value = self.values.get("sort", "-created")
        field = value.removeprefix("-")
        if field not in SORT_FIELDS:
            raise ParameterError("sort", "must be one of " + ", ".join(SORT_FIELDS)
                                 + ", with - in front for descending order")
        return field, value.startswith("-")

    def fingerprint(self) -> str:
        """What identifies the query apart from its page, for cursors."""
        items = sorted((k, v) for k, v in self.values.items() if k not in PAGING)
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def path_value(params: Params, name: str, in_path: str | None,
               check: Callable[[str, str], str]) -> str | None:
    """A value given in the path (checked) or else as a query parameter (checked)."""
    query_value = params.get(name, check)
    if in_path is None:
        return query_value
    value = check(name, in_path)
    if query_value is not None and query_value != value:
        raise ParameterError(name, "differs between the path and the query")
    return value


def listing_query(identifier: str | None = None, email: str | None = None,
                  status: str = "valid") -> Query:
    """The query of a /metadata or /endorsers listing; latest entries unless ``created``."""
    params = Params(request.args, LISTING_PARAMS, refuse_empty=True)
    filters = {"identifier": path_value(params, "identifier", identifier, identifier_value),
               "email": path_value(params, "email", email, email_value)}
    sort, descending = params.sort()
    return Query(filters={k: v for k, v in filters.items() if v},
                 status=params.choice("status", STATUSES, status),
                 location=params.choice("location", LOCATIONS, "all"),
                 created=params.date("created"), sort=sort, descending=descending,
                 limit=params.integer("limit", LISTING_LIMIT, 1, MAX_LIMIT),
                 offset=params.integer("offset", 0, 0, MAX_OFFSET))


def search_query(args: MultiDict | None = None, strict: bool = True) -> tuple[Query, str]:
    """The query of /api/v1/appliances and its fingerprint (which its cursors carry).

    ``args`` default to the request's; the search page reads the same parameters, but
    not ``strict``ly (a link may carry parameters of its own).
    """
    params = Params(request.args if args is None else args, SEARCH_PARAMS, strict=strict)
    checks = {"identifier": identifier_value, "endorser": email_value, "tag": tag_value}
    filters = {field: params.get(name, checks.get(name, token_value))
               for name, field in SEARCH_FILTERS.items() if params.get(name)}
    fingerprint = params.fingerprint()
    offset = params.integer("offset", 0, 0, MAX_OFFSET)
    if params.get("cursor"):
        if params.get("offset"):
            raise ParameterError("cursor", "give offset or cursor, not both")
        offset = read_cursor(params.get("cursor"), fingerprint)
    sort, descending = params.sort()
    query = Query(q=params.get("q"), filters=filters,
                  status=params.choice("status", STATUSES, "valid"),
                  location=params.choice("location", LOCATIONS, "all"),
                  created_from=params.date("created_from", False),
                  created_to=params.date("created_to", True),
                  valid_from=params.date("valid_from", False),
                  valid_to=params.date("valid_to", True), sort=sort, descending=descending,
                  limit=params.integer("limit", SEARCH_LIMIT, 1, MAX_LIMIT), offset=offset,
                  facets=params.flag("facets"))
    return query, fingerprint


def make_cursor(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([offset, fingerprint]).encode()).decode()


def read_cursor(text: str, fingerprint: str) -> int:
    """The offset a cursor stands for; it must come from the same query."""
    try:
        offset, owner = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    except (ValueError, TypeError):
        raise ParameterError("cursor", "is not a cursor this API gave out") from None
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ParameterError("cursor", "is not a cursor this API gave out")
    if owner != fingerprint:
        raise ParameterError("cursor", "belongs to another query: send it with the same "
                             "parameters as the query that gave it")
    return offset


# --- forms of entries --------------------------------------------------------------------


def entry_url(entry: Entry) -> str:
    identifier, email, created = entry.key
    return f"/metadata/{identifier}/{quote(email, safe='@+')}/{created}"


def entry_json(entry: Entry, now: datetime) -> dict:
    """The entry as JSON: the appliance's fields plus email, status and url."""
    return {**entry.as_dict(), "email": entry.email,
            "status": entry.appliance.status(now), "url": entry_url(entry)}


def listing_reply(page: Page, query: Query, heading: str) -> Reply:
    """A listing: XML ``<metadata>`` holding each signed ``rdf:RDF`` verbatim, JSON or HTML."""
    data = {"entries": [entry_json(e, query.now) for e in page.entries], "total": page.total}
    context = {"heading": heading, "offset": query.offset, "limit": query.limit}
    return Reply(data, "listing.html", lambda: listing_xml(page, query), context=context)


def listing_xml(page: Page, query: Query) -> bytes:
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="{page.total}" '
            f'offset="{query.offset}" limit="{query.limit}">\n').encode()
    documents = [negotiation.root_element(e.document) + b"\n" for e in page.entries]
    return head + b"".join(documents) + b"</metadata>\n"


def entry_reply(entry: Entry, now: datetime) -> Reply:
    """One entry: the stored bytes exactly as ``application/rdf+xml``, JSON or HTML."""
    identifier, _, created = entry.key
    filename = UNSAFE_FILENAME.sub("-", f"{identifier}-{created}") + ".xml"
    context = {"document": entry.document.decode("utf-8", "replace")}
    return Reply(entry_json(entry, now), "entry.html", lambda: entry.document,
                 xml_type=negotiation.RDF_XML_TYPE, context=context,
                 xml_headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def endorser_json(endorser: Endorser) -> dict:
    return {"email": endorser.email, "subject": endorser.subject, "entries": endorser.entries,
            "latest": format_date(endorser.latest),
            "url": f"/endorsers/{quote(endorser.email, safe='@+')}"}


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
    root = etree.Element(tag, {k: str(v).lower() if isinstance(v, bool) else v
                               for k, v in data.items()})
    return negotiation.to_bytes(root)


def upload_status_url(upload: Upload) -> str:
    return f"/api/v1/uploads/{upload.identifier}/{quote(upload.email, safe='@+')}/" \
           f"{upload.created}"


def pending_reply(held: PendingConfirmation) -> Reply:
    """202: the upload awaits its endorser's confirmation; Location says where it stands."""
    upload = held.upload
    data = {"identifier": upload.identifier, "email": upload.email, "created": upload.created,
            "state": upload.state, "expires": format_date(upload.expires),
            "url": upload_status_url(upload),
            "message": f"a mail with a confirmation link went to {upload.email}; the entry is "
                       "published once it is followed" if held.mailed else
                       "this upload already awaits its endorser's confirmation"}
    return Reply(data, "pending.html", lambda: accepted_xml(data, "upload"), 202,
                 {"Location": data["url"]})


def negotiated(view: Callable[..., Reply]) -> Callable[..., Response]:
    """Choose the media type before the view runs, then render its reply in it."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs) -> Response:
        media = negotiation.requested()
        return negotiation.render(view(*args, **kwargs), media)

    return wrapper


# --- accepting metadata ------------------------------------------------------------------

REJECTIONS = ((MetadataError, "invalid"), (TooLarge, "too_large"),
              (RequestEntityTooLarge, "too_large"), (UnsupportedMediaType, "unsupported_media"),
              (Conflict, "conflict"), (StoreError, "unavailable"),
              (ParameterError, "bad_request"), (Refused, "refused"),
              (OverQuota, "mail_limit"))


@blueprint.post("/metadata")
@negotiated
def upload() -> Reply:
    """Verify and store a signed document: 201 when new, 200 for an identical replay,
    202 when it awaits its endorser's confirmation."""
    try:
        entry, new = service().accept(read_upload(), client=request.remote_addr or "")
    except PendingConfirmation as held:
        return pending_reply(held)
    except Exception as exc:
        metrics.upload_rejected(next((r for t, r in REJECTIONS if isinstance(exc, t)), "error"))
        raise
    metrics.upload_accepted(new)
    identifier, email, created = entry.key
    data = {"identifier": identifier, "email": email, "created": created,
            "url": entry_url(entry), "new": new}
    return Reply(data, "accepted.html", lambda: accepted_xml(data), 201 if new else 200,
                 {"Location": data["url"]})


def read_upload() -> bytes:
    """The document: the raw body, or the one file of a multipart form; at most the limit."""
    if request.mimetype in UPLOAD_TYPES:
        return read_capped(request.stream)
    if request.mimetype == "multipart/form-data":
        files = list(request.files.values())
        if len(files) != 1:
            raise ParameterError("file", f"send exactly one file field (named file); "
                                 f"got {len(files)}")
        return read_capped(files[0].stream)
    raise UnsupportedMediaType(
        "send the signed document as application/xml, application/rdf+xml or as a file in "
        f"multipart/form-data, not {request.mimetype or 'a body without Content-Type'}")


def read_capped(stream) -> bytes:
    """Read a stream, refusing it as soon as it passes the upload limit."""
    limit, chunks, size = service().max_bytes, [], 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the document is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --- serving metadata --------------------------------------------------------------------


@blueprint.get("/metadata")
@blueprint.get("/metadata/<identifier>", **EXACT)
@blueprint.get("/metadata/<identifier>/<email>", **EXACT)
@negotiated
def listing(identifier: str | None = None, email: str | None = None) -> Reply:
    """Latest entries per identifier and endorser (all dates when ``created`` is given)."""
    query = listing_query(identifier, email)
    heading = " / ".join(["Metadata", *query.filters.values()])
    return listing_reply(store().search(query), query, heading)


@blueprint.get("/metadata/<identifier>/<email>/<created>", **EXACT)
@negotiated
def entry(identifier: str, email: str, created: str) -> Reply:
    """One stored document, byte for byte."""
    key = (identifier_value("identifier", identifier), email_value("email", email),
           date_value("created", created))
    found = store().get(*key)
    if found is None:
        raise NotFound(f"no entry of {key[0]} by {key[1]} at {created}")
    return entry_reply(found, datetime.now(UTC))


@blueprint.get("/endorsers")
@negotiated
def endorsers() -> Reply:
    """Every endorser with how many entries they published and when last."""
    found = [endorser_json(e) for e in store().endorsers()]
    data = {"endorsers": found, "total": len(found)}
    return Reply(data, "endorsers.html", lambda: endorsers_xml(found))


@blueprint.get("/endorsers/<email>", **EXACT)
@negotiated
def endorser(email: str) -> Reply:
    """An endorser's latest entries, newest first, whatever their status by default."""
    query = listing_query(email=email, status="all")
    page = store().search(query)
    if not page.total and not store().search(
            Query(filters={"email": query.filters["email"]}, status="all", limit=1)).total:
        raise NotFound(f"no entries endorsed by {query.filters['email']}")
    return listing_reply(page, query, f"Endorser {query.filters['email']}")


@blueprint.get("/endorsers/<email>/tags", **EXACT)
@negotiated
def endorser_tags(email: str) -> Reply:
    """The tags (``dcterms:alternative``) an endorser used, with their counts."""
    email = email_value("email", email)
    tags = [{"tag": tag, "count": count, "url": f"/tag/{quote(email, safe='@+')}/"
             f"{quote(tag, safe='')}"} for tag, count in store().tags(email).items()]
    data = {"email": email, "tags": tags}
    return Reply(data, "tags.html", lambda: tags_xml(email, tags))


@blueprint.get("/tag/<email>/<tag>", **EXACT)
@negotiated
def tagged(email: str, tag: str) -> Reply:
    """The latest non-deprecated entry of an endorser carrying a tag."""
    email, tag = email_value("email", email), tag_value("tag", tag)
    found = latest_tagged(email, tag)
    if found is None:
        raise NotFound(f"no entry of {email} that is not deprecated is tagged {tag!r}")
    reply = entry_reply(found, datetime.now(UTC))
    reply.headers["Content-Location"] = entry_url(found)
    return reply


def latest_tagged(email: str, tag: str) -> Entry | None:
    """The newest entry with the tag, among those the email's proof lets stand together."""
    now = datetime.now(UTC)
    candidates = [entry for status in ("valid", "expired")
                  for entry in store().search(Query(filters={"email": email, "tag": tag},
                                                    status=status, limit=MAX_TAGGED,
                                                    now=now)).entries]
    kept, _ = service().moderation.unmixed(candidates)
    return max(kept, key=lambda e: e.created, default=None)


# --- JSON API, health, metrics -----------------------------------------------------------


@blueprint.get("/api/v1/appliances")
def search() -> Response:
    """Free text, filters, ranges, sort, paging by offset or cursor, facet counts."""
    query, fingerprint = search_query()
    page = store().search(query)
    following = query.offset + len(page.entries)
    return negotiation.json_response({
        "items": [entry_json(e, query.now) for e in page.entries], "total": page.total,
        "next_cursor": make_cursor(following, fingerprint) if following < page.total else None,
        "facets": page.facets})


@blueprint.get("/api/v1/appliances/<identifier>", **EXACT)
def appliance(identifier: str) -> Response:
    """Every endorser's latest entry of one identifier, whatever its status."""
    query = Query(filters={"identifier": identifier_value("identifier", identifier)},
                  status="all", limit=MAX_LIMIT)
    page = store().search(query)
    if not page.total:
        raise NotFound(f"no entry of {identifier}")
    return negotiation.json_response(
        {"items": [entry_json(e, query.now) for e in page.entries], "total": page.total})


@blueprint.get("/api/v1/ping")
def ping() -> Response:
    """The cheapest JSON answer: the ceiling of the benchmarks; the store is not touched."""
    return negotiation.json_response({"pong": True})


@blueprint.get("/healthz")
def healthz() -> Response:
    healthy = store().healthy()
    return negotiation.json_response({"status": "ok" if healthy else "unavailable",
                                      "store": healthy}, 200 if healthy else 503)


@blueprint.get("/metrics")
def metrics_text() -> Response:
    body, content_type = metrics.exposition(store())
    return Response(body, content_type=content_type)


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return Response(openapi_document(), mimetype="application/json")


@functools.cache
def openapi_document() -> bytes:
    return OPENAPI.read_bytes()


# --- errors ------------------------------------------------------------------------------


def error_response(status: int, message: str, problems: Iterable[dict] = (),
                   headers: dict | None = None) -> Response:
    """An error in the request's media type (JSON on the JSON-only routes)."""
    media = (negotiation.JSON if request.path.startswith(JSON_ONLY)
             else negotiation.for_error())
    return negotiation.error(status, message, problems, media, headers)


@blueprint.app_errorhandler(ParameterError)
def bad_parameter(exc: ParameterError) -> Response:
    return error_response(400, str(exc), exc.problems)


@blueprint.app_errorhandler(BadMedia)
def bad_media(exc: BadMedia) -> Response:
    return error_response(400, str(exc), [{"element": "media", "rule": "parameter",
                                           "message": str(exc)}])


@blueprint.app_errorhandler(MetadataError)
def refused(exc: MetadataError) -> Response:
    """400 with the problems listed once: the message names the first and counts them."""
    count = exc.total
    return error_response(400, f"the document was refused: {count} problem"
                          f"{'s' if count != 1 else ''}: {exc}",
                          [p.as_dict() for p in exc.problems])


@blueprint.app_errorhandler(TooLarge)
def too_large(exc: TooLarge) -> Response:
    return error_response(413, str(exc), [{"element": "document", "rule": "size-limit",
                                           "message": str(exc)}])


@blueprint.app_errorhandler(Conflict)
def conflict(exc: Conflict) -> Response:
    return error_response(409, str(exc), [{"element": "slreq:endorsement", "rule": "conflict",
                                           "message": str(exc)}])


@blueprint.app_errorhandler(Refused)
def forbidden(exc: Refused) -> Response:
    return error_response(403, f"the document was refused: {exc}", exc.problems)


@blueprint.app_errorhandler(MailUnavailable)
def mail_unavailable(exc: MailUnavailable) -> Response:
    return error_response(503, str(exc), headers={"Retry-After": RETRY_AFTER})


@blueprint.app_errorhandler(StoreError)
def unavailable(exc: StoreError) -> Response:
    return error_response(503, f"the store is unavailable, try again later: {exc}",
                          headers={"Retry-After": RETRY_AFTER})


@blueprint.app_errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    message = exc.description or exc.name
    if isinstance(exc, RequestEntityTooLarge):
        message = f"the request body is larger than the limit of {service().max_bytes} bytes"
    elif exc.code == 500:
        message = "internal error: the request could not be completed"
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(exc.code or 500, message, headers=headers)
