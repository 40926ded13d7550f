"""Request parameters, parsed once for every view: path parts, query strings, bodies.

Every value is checked before it reaches the store, and a value that breaks its rule is a
:class:`ParameterError` naming the parameter (400). The search's parameters are read here
for the JSON API, the search page and the image lists alike, with the vocabulary's names
and defaults (:mod:`marketplace.metadata.vocabulary`), so a page URL and its JSON twin
differ only in path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import UnsupportedMediaType

from marketplace.metadata import vocabulary
from marketplace.metadata.identifier import is_identifier
from marketplace.metadata.model import parse_date
from marketplace.metadata.vocabulary import (
    FILTERS,
    LISTING_LIMIT,
    LOCATIONS,
    MAX_LIMIT,
    MAX_OFFSET,
    SEARCH_LIMIT,
    SORT_FIELDS,
    STATUSES,
)
from marketplace.service import TooLarge
from marketplace.store.base import Query
from marketplace.web.current import current_marketplace

# The patterns of the parameters, written once: the views check with them and
# the web package's openapi.json carries them (a test holds the two together). ASCII classes only,
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
MAX_EMAIL = 254
MAX_VALUE = 200
MAX_TEXT = 500
READ_CHUNK = 64 * 1024

LISTING_PARAMS = ("identifier", "email", "created", "tag", "status", "location", "sort",
                  "limit", "offset", "media")
# The search's parameters that a canonical URL lists, in its order, and their defaults.
SEARCH_ORDER = ("q", *FILTERS, "status", "location", "created_from", "created_to",
                "valid_from", "valid_to", "sort", "limit", "offset")
SEARCH_PARAMS = (*SEARCH_ORDER, "cursor", "facets")
SEARCH_DEFAULTS = {"status": vocabulary.DEFAULT_STATUS,
                   "location": vocabulary.DEFAULT_LOCATION, "sort": vocabulary.DEFAULT_SORT,
                   "limit": str(SEARCH_LIMIT), "offset": "0"}
PAGING = ("limit", "offset", "cursor", "facets")
# Routes with path parameters keep empty segments: ``/metadata//x`` is an error naming the
# missing part, not a redirect to another address.
NO_MERGED_SLASHES = {"merge_slashes": False}
UPLOAD_TYPES = ("application/xml", "application/rdf+xml", "text/xml")


class ParameterError(ValueError):
    """A path or query parameter that breaks its rules; the answer is 400."""

    def __init__(self, name: str, message: str):
        self.name = name
        self.message = message
        super().__init__(f"parameter {name!r}: {message}")

    @property
    def problems(self) -> list[dict[str, str]]:
        return [{"element": self.name, "rule": "parameter", "message": self.message}]


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
        value = self.values.get("sort", vocabulary.DEFAULT_SORT)
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


def path_names(segments: Iterable[str]) -> dict[str, str]:
    """What each segment of ``/metadata/<a>[/<b>]`` names, read by its shape as the original
    marketplace did: an endorser email (it has an @), an endorsement date, or an identifier.
    ParameterError for a segment of no known shape, or two of one kind."""
    names: dict[str, str] = {}
    for segment in segments:
        if "@" in segment:
            name = "email"
        elif DATE.fullmatch(segment):
            name = "created"
        elif is_identifier(segment):
            name = "identifier"
        else:
            raise ParameterError("path", f"{segment[:40]!r} is neither an identifier, an "
                                 "endorser email nor a date (YYYY-MM-DDTHH:MM:SSZ)")
        if name in names:
            raise ParameterError(name, "is named twice in the path: its two segments are of "
                                 "two kinds (identifier, endorser email, date)")
        names[name] = segment
    return names


def listing_query(path: dict[str, str] | None = None,
                  status: str = vocabulary.DEFAULT_STATUS) -> Query:
    """The query of a /metadata or /endorsers listing: what the ``path`` names (see
    :func:`path_names`) and the query parameters; latest entries unless ``created``."""
    path = path or {}
    params = Params(request.args, LISTING_PARAMS, refuse_empty=True)
    filters = {"identifier": path_value(params, "identifier", path.get("identifier"),
                                        identifier_value),
               "email": path_value(params, "email", path.get("email"), email_value),
               "tag": params.get("tag", tag_value)}
    created = path_value(params, "created", path.get("created"), date_value)
    sort, descending = params.sort()
    return Query(filters={k: v for k, v in filters.items() if v},
                 status=params.choice("status", STATUSES, status),
                 location=params.choice("location", LOCATIONS, vocabulary.DEFAULT_LOCATION),
                 created=created, sort=sort, descending=descending,
                 limit=params.integer("limit", LISTING_LIMIT, 1, MAX_LIMIT),
                 offset=params.integer("offset", 0, 0, MAX_OFFSET))


@dataclass
class Search:
    """A search as asked: its query, the fingerprint its cursors carry, and the values
    given that differ from the defaults, in the order a canonical URL lists them."""

    query: Query
    fingerprint: str
    given: dict[str, str]


def search_query(args: MultiDict | None = None, strict: bool = True) -> Search:
    """The search of /api/v1/appliances, the search page and the image lists.

    ``args`` default to the request's; the page reads them not ``strict``ly (a link may
    carry parameters of its own, and a form sends its empty fields).
    """
    params = Params(request.args if args is None else args, SEARCH_PARAMS, strict=strict)
    checks = {"identifier": identifier_value, "endorser": email_value, "tag": tag_value}
    filters = {field: params.get(name, checks.get(name, token_value))
               for name, field in FILTERS.items() if params.get(name)}
    fingerprint = params.fingerprint()
    offset = params.integer("offset", 0, 0, MAX_OFFSET)
    if params.get("cursor"):
        if params.get("offset"):
            raise ParameterError("cursor", "give offset or cursor, not both")
        offset = read_cursor(params.get("cursor"), fingerprint)
    sort, descending = params.sort()
    query = Query(q=params.get("q"), filters=filters,
                  status=params.choice("status", STATUSES, vocabulary.DEFAULT_STATUS),
                  location=params.choice("location", LOCATIONS, vocabulary.DEFAULT_LOCATION),
                  created_from=params.date("created_from", False),
                  created_to=params.date("created_to", True),
                  valid_from=params.date("valid_from", False),
                  valid_to=params.date("valid_to", True), sort=sort, descending=descending,
                  limit=params.integer("limit", SEARCH_LIMIT, 1, MAX_LIMIT), offset=offset,
                  facets=params.flag("facets"))
    given = {name: params.values[name] for name in SEARCH_ORDER
             if name in params.values and params.values[name] != SEARCH_DEFAULTS.get(name)}
    return Search(query, fingerprint, given)


def entry_key(identifier: str, email: str, created: str) -> tuple[str, str, str]:
    """A checked entry key (ParameterError naming the part at fault)."""
    identifier_value("identifier", identifier)
    email_value("email", email)
    date_value("created", created)
    return identifier, email, created


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
    limit, chunks, size = current_marketplace().max_bytes, [], 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the document is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
