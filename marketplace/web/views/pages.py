"""The web pages people use: search, appliance detail, publishers, upload, error pages.

Every page is rendered on the server and works with JavaScript off; ``static/app.js`` only
makes the search live (it re-fetches this page and swaps the results in). The search page
reads exactly the parameters of ``/api/v1/appliances`` through the one parser
(:func:`marketplace.web.params.search_query`), so a page URL and its JSON twin differ only
in path.
Everything shown comes from the store through Jinja's autoescaping: data is never marked
safe. The routes stay clear of the API's (``/metadata``, ``/endorsers``, ``/tag``,
``/api/v1``), whose ``?media=html`` forms are untouched.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Blueprint, Response, redirect, render_template, request
from werkzeug.exceptions import NotFound, RequestEntityTooLarge

from marketplace.metadata import model, vocabulary
from marketplace.metadata.problems import MetadataError
from marketplace.metadata.verdict import Moment, Verdict, judge
from marketplace.metadata.vocabulary import MAX_LIMIT, MAX_OFFSET, SEARCH_LIMIT, SORT_FIELDS
from marketplace.service import PendingConfirmation, Refused, TooLarge
from marketplace.store.base import Conflict, Entry, Page, Query, StoreError
from marketplace.web import metrics, negotiation, security
from marketplace.web.current import current_marketplace, current_moderation, current_store
from marketplace.web.errors import JSON_ONLY, RETRY_AFTER, http_error, rejection
from marketplace.web.params import (
    NO_MERGED_SLASHES,
    SEARCH_ORDER,
    ParameterError,
    Params,
    email_value,
    identifier_value,
    read_capped,
    search_query,
)
from marketplace.web.urls import (
    detail_url,
    endorser_url,
    entry_url,
    publisher_url,
    search_url,
    tag_url,
    upload_url,
)

blueprint = Blueprint("pages", __name__)

STATIC = Path(__file__).resolve().parents[1] / "static"
PAGE_SIZES = (10, 20, 50, 100)
FILTER_LABELS = {"os": "Operating system", "os_version": "OS version", "arch": "Architecture",
                 "endorser": "Endorser", "kind": "Kind", "format": "Format",
                 "hypervisor": "Hypervisor", "q": "Text", "tag": "Tag",
                 "identifier": "Identifier", "type": "Type", "location": "Location",
                 "created_from": "Endorsed from", "created_to": "Endorsed until",
                 "valid_from": "Valid from", "valid_to": "Valid until"}
STATUS_CHOICES = (("valid", "Valid"), ("expired", "Expired"), ("deprecated", "Deprecated"),
                  ("all", "Any status"))
SORT_LABELS = {"created": "Endorsed", "identifier": "Identifier", "email": "Endorser",
               "title": "Title", "os": "OS", "os_version": "OS version",
               "os_arch": "Architecture", "kind": "Kind", "format": "Format",
               "hypervisor": "Hypervisor", "valid": "Valid until", "bytes": "Size"}
DESCENDING_FIRST = ("created", "bytes", "valid")
FIELD_LABELS = {"type": "Type", "kind": "Kind", "os": "Operating system",
                "os_version": "OS version", "os_arch": "Architecture", "version": "Version",
                "compression": "Compression", "locations": "Locations", "format": "Format",
                "creator": "Creator", "created": "Image created", "valid": "Valid until",
                "title": "Title", "tag": "Tag", "description": "Description",
                "hypervisor": "Hypervisor", "disks_bus": "Disks bus",
                "publisher": "Publisher", "deprecated": "Deprecated",
                "serial_number": "Serial number", "inbound_ports": "Inbound ports",
                "outbound_ports": "Outbound ports", "icmp": "ICMP types",
                "is_replaced_by": "Replaced by", "replaces": "Replaces",
                "is_version_of": "Version of"}
API_PATHS = ("/metadata", "/endorsers", "/tag/", *JSON_ONLY)
STATUS_RANK = {"valid": 0, "expired": 1, "deprecated": 2}
MAX_VERSIONS = 100
MAX_RELATED = 10
MAX_PAGE_LINKS = 2


def html(template: str, code: int = 200, **context) -> Response:
    return Response(render_template(f"pages/{template}", **context), code,
                    mimetype=negotiation.HTML_TYPE)


# --- template helpers ---------------------------------------------------------------------


@functools.cache
def asset_version(filename: str) -> str:
    return hashlib.sha256((STATIC / filename).read_bytes()).hexdigest()[:10]


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def day(moment: datetime | str | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = model.parse_date(moment)
    return moment.strftime("%Y-%m-%d")


@blueprint.app_template_global()
def static_url(filename: str) -> str:
    return f"/static/{filename}?v={asset_version(filename)}"


@blueprint.app_template_filter("thousands")
def thousands(number: int) -> str:
    return f"{number:,}"


blueprint.add_app_template_filter(human_size, "size")
blueprint.add_app_template_filter(day, "day")
blueprint.add_app_template_filter(model.format_date, "timestamp")


def row(entry: Entry, now: datetime) -> dict:
    """What a result row shows of an entry."""
    a = entry.appliance
    return {"title": a.title or a.identifier, "description": a.description or "",
            "identifier": a.identifier, "email": entry.email, "created": entry.created,
            "os": a.os, "os_version": a.os_version, "os_arch": a.os_arch, "kind": a.kind,
            "format": a.format, "hypervisor": a.hypervisor, "bytes": a.bytes, "tag": a.tag,
            "status": a.status(now), "url": detail_url(entry),
            "publisher_url": publisher_url(entry.email)}


# --- search -------------------------------------------------------------------------------


@blueprint.get("/")
def search() -> Response:
    """The search page: free text, facet filters with counts, sort, paging; all in the URL."""
    search = search_query(strict=False)
    if list(search.given.items()) != [(k, v) for k, v in request.args.items(multi=True)
                                      if k in SEARCH_ORDER]:
        return redirect(search_url(search.given), 302)
    query = search.query
    query.facets = True
    page = current_store().search(query)
    return html("search.html", **search_context(query, page, search.given))


def search_context(query: Query, page: Page, values: dict[str, str]) -> dict:
    return {"query": query, "values": values, "page": page, "total": page.total,
            "rows": [row(e, query.now) for e in page.entries],
            "facets": facet_groups(query, page), "statuses": status_choices(query, page),
            "active": active_filters(values), "sort_field": query.sort,
            "descending": query.descending, "sort_links": sort_links(query, values),
            "sort_choices": sort_choices(), "page_sizes": page_sizes(query.limit),
            "pager": pager(query, page.total, values),
            "json_url": search_url(values, "/api/v1/appliances"),
            "status_all_url": search_url(values, status="all", offset=None),
            "shown": (query.offset + 1, query.offset + len(page.entries))}


@dataclass
class Option:
    value: str
    label: str
    count: int
    selected: bool


def facet_groups(query: Query, page: Page) -> list[dict]:
    """Each facet's values with their counts; a chosen value is listed even at zero."""
    groups, counted = [], vocabulary.named_facets(page.facets)
    for name in vocabulary.FACETS:
        counts = dict(counted.get(name, {}))
        chosen = query.filters.get(vocabulary.FILTERS[name])
        if chosen and chosen not in counts:
            counts[chosen] = 0
        options = [Option(value, value, count, value == chosen)
                   for value, count in counts.items()]
        groups.append({"name": name, "label": FILTER_LABELS[name], "options": options,
                       "chosen": chosen})
    return groups


def status_choices(query: Query, page: Page) -> list[Option]:
    counts = page.facets.get("status", {})
    return [Option(value, label, counts.get(value, 0) if value != "all"
                   else sum(counts.values()), value == query.status)
            for value, label in STATUS_CHOICES]


def active_filters(values: dict[str, str]) -> list[dict]:
    """The filters in force, each with the URL that drops it."""
    return [{"label": FILTER_LABELS[name], "value": value,
             "remove": search_url(values, **{name: None, "offset": None})}
            for name, value in values.items() if name in FILTER_LABELS]


def sort_links(query: Query, values: dict[str, str]) -> dict[str, dict]:
    """Per column: the URL that sorts by it (toggling when it is the current sort)."""
    links = {}
    for field in SORT_FIELDS:
        if field == query.sort:
            descending = not query.descending
            state = "descending" if query.descending else "ascending"
        else:
            descending, state = field in DESCENDING_FIRST, "none"
        links[field] = {"url": search_url(values, sort=("-" if descending else "") + field,
                                          offset=None), "state": state}
    return links


def sort_choices() -> list[tuple[str, str]]:
    choices = []
    for field in ("created", "title", "os", "os_version", "os_arch", "email", "bytes", "valid",
                  "format", "hypervisor", "kind", "identifier"):
        label = SORT_LABELS[field]
        newest, oldest = (("newest first", "oldest first") if field in ("created", "valid")
                          else ("largest first", "smallest first") if field == "bytes"
                          else ("Z to A", "A to Z"))
        first, second = ((f"-{field}", newest), (field, oldest))
        if field not in DESCENDING_FIRST:
            first, second = second, first
        choices += [(first[0], f"{label}, {first[1]}"), (second[0], f"{label}, {second[1]}")]
    return choices


def page_sizes(limit: int) -> list[int]:
    return sorted({*PAGE_SIZES, limit})


def pager(query: Query, total: int, values: dict[str, str], path: str = "/") -> dict:
    """Previous/next and numbered page links around the current page."""
    limit = query.limit
    current = query.offset // limit + 1
    last = max(1, math.ceil(total / limit))

    def link(number: int) -> str:
        return search_url(values, path,
                          offset=str((number - 1) * limit) if number > 1 else None)

    numbers = sorted({1, last, *range(max(1, current - MAX_PAGE_LINKS),
                                      min(last, current + MAX_PAGE_LINKS) + 1)})
    items, previous = [], 0
    for number in numbers:
        if number - previous > 1:
            items.append(None)
        items.append({"number": number, "url": link(number), "current": number == current})
        previous = number
    return {"current": current, "last": last, "last_url": link(last),
            "links": items if last > 1 else [],
            "previous": link(current - 1) if current > 1 else None,
            "next": link(current + 1) if query.offset + limit < total else None}


# --- appliance detail ---------------------------------------------------------------------


PROOFS = {  # how an endorsement's email was proven, as the pages say it
    "certificate": "proven by the signer's certificate, which carries this address",
    "mail": "proven by mail: the address's owner followed the marketplace's confirmation "
            "link",
    None: "not proven: the signer's certificate does not carry this address and it was "
          "never confirmed by mail",
}


@dataclass
class Verification:
    """What a re-check of the stored document says now, and how its email was proven."""

    state: str  # "valid": verifies now; "lapsed": verified when endorsed, not now; "failed"
    certificate: x509.Certificate | None
    problems: list
    email_proof: str | None = None  # "certificate", "mail", or None: not proven


def verify_now(entry: Entry, now: datetime) -> Verification:
    """Re-judge the stored bytes by the trust decision, now and at endorsement."""
    trust = current_marketplace().trust_store
    try:
        verdict = judge(entry.document, Moment.endorsement(None, now), trust)
        return Verification("valid", verdict.certificate, [], email_proof(entry, verdict))
    except MetadataError as exc:
        problems = exc.problems
    try:
        verdict = judge(entry.document, Moment.endorsement(None, entry.created), trust)
        return Verification("lapsed", verdict.certificate, problems,
                            email_proof(entry, verdict))
    except MetadataError:
        return Verification("failed", None, problems)


def email_proof(entry: Entry, verdict: Verdict) -> str | None:
    """How the entry's email was proven: by its certificate, by the mailed link, or not."""
    return current_moderation().email_proof(entry.key, verdict.identity)


def certificate_facts(certificate: x509.Certificate | None) -> dict | None:
    if certificate is None:
        return None
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        algorithm = f"RSA {key.key_size} bits"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = f"ECDSA {key.curve.name}"
    else:
        algorithm = type(key).__name__
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    return {"subject": certificate.subject.rfc4514_string(),
            "issuer": certificate.issuer.rfc4514_string(),
            "serial": f"{certificate.serial_number:X}", "key": algorithm,
            "not_before": certificate.not_valid_before_utc,
            "not_after": certificate.not_valid_after_utc, "fingerprint": fingerprint}


def field_rows(appliance: model.Appliance) -> list[dict]:
    """Every optional field the entry sets, in the profile's order, with its XML name."""
    rows = []
    for spec in model.FIELDS:
        value = getattr(appliance, spec.name)
        if value is None or value == []:
            continue
        values = value if spec.many else [value]
        rows.append({"label": FIELD_LABELS.get(spec.name, spec.name), "qname": spec.qname,
                     "name": spec.name,
                     "texts": [model.format_date(v) if isinstance(v, datetime) else str(v)
                                for v in values]})
    if appliance.rdf_type:
        rows.append({"label": "RDF type", "qname": "rdf:type", "name": "rdf_type",
                     "texts": [appliance.rdf_type]})
    return rows


@blueprint.get("/appliances/<identifier>", **NO_MERGED_SLASHES)
def appliance(identifier: str) -> Response:
    """One entry of an identifier (newest by default; ``endorser`` and ``created`` choose)."""
    identifier = identifier_value("identifier", identifier)
    params = Params(request.args, ("endorser", "created"))
    email = params.get("endorser", email_value)
    created = params.date("created")
    versions = current_store().search(Query(filters={"identifier": identifier}, status="all",
                                    latest_only=False, limit=MAX_VERSIONS)).entries
    chosen = [v for v in versions if (email is None or v.email == email)
              and (created is None or v.created == created)]
    if not chosen and email and created:
        exact = current_store().get(identifier, email, created)
        chosen = [exact] if exact else []
    if not chosen:
        raise NotFound(f"No appliance with identifier {identifier}"
                       + (f" endorsed by {email}" if email else "")
                       + (f" on {model.format_date(created)}" if created else "") + ".")
    now = datetime.now(UTC)
    return html("appliance.html", **appliance_context(preferred(chosen, now), versions, now))


def preferred(chosen: list[Entry], now: datetime) -> Entry:
    """The entry a visitor means among the newest first: a valid one before an expired one
    before a deprecated one, so that one endorser's deprecation does not hide another
    endorser's entry that still stands."""
    return min(chosen, key=lambda e: STATUS_RANK.get(e.appliance.status(now), len(STATUS_RANK)))


def appliance_context(entry: Entry, versions: list[Entry], now: datetime) -> dict:
    a = entry.appliance
    verification = verify_now(entry, now)
    xml_url = entry_url(entry)
    endpoint = security.base_url()
    return {
        "entry": entry, "a": a, "status": a.status(now), "now": now,
        "fields": field_rows(a), "verification": verification,
        "certificate": certificate_facts(verification.certificate),
        "email_proof": PROOFS[verification.email_proof] if verification.state != "failed"
        else None,
        "xml_url": xml_url, "json_url": xml_url + "?media=json",
        "api_url": f"/api/v1/appliances/{a.identifier}",
        "tag_url": tag_url(entry.email, a.tag) if a.tag else None,
        "fetch_command": f"stratus-image-cache pull {a.identifier} "
                         f"--marketplace-endpoint {endpoint}",
        "versions": [{"entry": v, "url": detail_url(v, exact=True),
                      "status": v.appliance.status(now), "current": v.key == entry.key,
                      "title": v.appliance.title or v.identifier,
                      "publisher_url": publisher_url(v.email)} for v in versions],
        "related": related(entry, now), "publisher_url": publisher_url(entry.email),
        "tag_search": (search_url({"endorser": entry.email, "tag": a.tag, "status": "all"})
                       if a.tag else None),
    }


def related(entry: Entry, now: datetime) -> list[dict]:
    """The endorser's other appliances (latest entries) with the same tag: a tag belongs to
    its endorser, as in ``/tag/<email>/<tag>``."""
    tag = entry.appliance.tag
    if not tag:
        return []
    page = current_store().search(Query(filters={"email": entry.email, "tag": tag}, status="all",
                                limit=MAX_RELATED + 1))
    return [row(e, now) for e in page.entries if e.identifier != entry.identifier][:MAX_RELATED]


# --- publishers ---------------------------------------------------------------------------


@blueprint.get("/publishers")
def publishers() -> Response:
    """Every endorser, with how many entries they published and when last."""
    return html("publishers.html", endorsers=[
        {"email": e.email, "subject": e.subject, "entries": e.entries, "latest": e.latest,
         "url": publisher_url(e.email)} for e in current_store().endorsers()])


@blueprint.get("/publishers/<email>", **NO_MERGED_SLASHES)
def publisher(email: str) -> Response:
    """What one endorser published, newest first, with their tags."""
    email = email_value("email", email)
    params = Params(request.args, ("limit", "offset"))
    query = Query(filters={"email": email}, status="all", sort="created", descending=True,
                  limit=params.integer("limit", SEARCH_LIMIT, 1, MAX_LIMIT),
                  offset=params.integer("offset", 0, 0, MAX_OFFSET))
    page = current_store().search(query)
    if not page.total:
        raise NotFound(f"Nobody with the email {email} has published an appliance here.")
    entries, signed_by = current_moderation().unmixed(page.entries)
    signers = [{"subject": s, "proof": PROOFS[p], "proven": bool(p)} for s, p in signed_by]
    values = {"limit": str(query.limit)} if query.limit != SEARCH_LIMIT else {}
    tags = [{"tag": tag, "count": count,
             "url": search_url({"endorser": email, "tag": tag, "status": "all"})}
            for tag, count in current_store().tags(email).items()]
    return html("publisher.html", email=email, signers=signers, total=page.total,
                rows=[row(e, query.now) for e in entries], tags=tags,
                left_out=len(page.entries) - len(entries),
                shown=(query.offset + 1, query.offset + len(page.entries)),
                pager=pager(query, page.total, values, publisher_url(email)),
                search_url=search_url({"endorser": email, "status": "all"}),
                api_url=f"{endorser_url(email)}?media=json")


# --- upload -------------------------------------------------------------------------------


@blueprint.get("/upload")
def upload_form() -> Response:
    return html("upload.html")


@blueprint.post("/upload")
def upload() -> Response:
    """Accept a signed document from the form and say what became of it, in plain words."""
    sent = request.files.get("file")
    if sent is None or not sent.filename:
        return html("upload.html", 400, verdict={
            "outcome": "missing", "message": "Choose a signed metadata file to upload."})
    try:
        entry, publication = current_marketplace().accept(read_capped(sent.stream),
                                                          client=request.remote_addr or "")
    except PendingConfirmation as held:
        return html("upload.html", 202, verdict={
            "outcome": "pending", "filename": sent.filename, "upload": held.upload,
            "mailed": held.mailed, "status_url": upload_url(*held.upload.key)})
    except Refused as exc:
        metrics.upload_rejected("refused")
        return html("upload.html", 403, verdict={"outcome": "refused", "problems": [],
                                                 "filename": sent.filename,
                                                 "message": f"{str(exc).capitalize()}."})
    except (MetadataError, TooLarge, Conflict, StoreError) as exc:
        metrics.upload_rejected(rejection(exc))
        return refused(exc, sent.filename)
    new = publication.new
    metrics.upload_accepted(new)
    return html("upload.html", 201 if new else 200, verdict={
        "outcome": "accepted" if new else "known", "filename": sent.filename,
        "entry": row(entry, datetime.now(UTC)), "url": detail_url(entry, exact=True),
        "xml_url": entry_url(entry)})


def refused(exc: Exception, filename: str) -> Response:
    if isinstance(exc, MetadataError):
        count = len(exc.problems)
        return html("upload.html", 400, verdict={
            "outcome": "refused", "filename": filename, "problems": exc.problems,
            "message": f"The marketplace refused this document: {count} "
                       f"problem{'s' if count != 1 else ''} to fix."})
    status, message = {
        TooLarge: (413, f"The file is too large: {exc}."),
        Conflict: (409, f"It contradicts what the marketplace holds: {exc}."),
        StoreError: (503, "The marketplace cannot store anything right now; try again in a "
                          "minute."),
    }[next(t for t in (TooLarge, Conflict, StoreError) if isinstance(exc, t))]
    return html("upload.html", status, verdict={"outcome": "refused", "filename": filename,
                                                 "message": message, "problems": []})


@blueprint.errorhandler(RequestEntityTooLarge)
def upload_too_large(exc: RequestEntityTooLarge) -> Response:
    metrics.upload_rejected("too_large")
    return html("upload.html", 413, verdict={
        "outcome": "refused", "problems": [],
        "message": "The file is too large: the limit is "
                   f"{current_marketplace().max_bytes:,} bytes."})


# --- errors -------------------------------------------------------------------------------


@blueprint.errorhandler(ParameterError)
def bad_parameter(exc: ParameterError) -> Response:
    return html("error.html", 400, status=400, title="That search cannot be run",
                message=f"The parameter “{exc.name}” {exc.message}.")


@blueprint.errorhandler(StoreError)
def unavailable(exc: StoreError) -> Response:
    response = html("error.html", 503, status=503, title="The marketplace is unavailable",
                    message="Its store does not answer right now. Try again in a minute.")
    response.headers["Retry-After"] = RETRY_AFTER
    return response


@blueprint.app_errorhandler(NotFound)
def not_found(exc: NotFound) -> Response:
    """A friendly page for people; API paths and non-HTML clients get the API's answer."""
    wants_page = request.blueprint == "pages" or (
        not request.path.startswith(API_PATHS)
        and negotiation.for_error() == negotiation.HTML)
    if not wants_page:
        return http_error(exc)
    message = exc.description if request.blueprint == "pages" else (
        "There is no page at this address. It may have moved, or the link may be mistyped.")
    return html("error.html", 404, status=404, title="Not found", message=message)
