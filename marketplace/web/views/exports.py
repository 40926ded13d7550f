"""The web side of the exports: image lists, simplestreams and Atom feeds over HTTP.

Each answer carries a strong ``ETag`` made of the store's change marker and what the export
depends on, and ``Last-Modified``; a repeated request costs the marker's two cheap reads and
answers 304 (``If-None-Match``) or the kept render, until the next change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, redirect, request
from werkzeug.datastructures import MultiDict

from marketplace.exports import feed, imagelist, simplestreams
from marketplace.exports.changes import Marker, Rendered, Renders, etag, marker
from marketplace.exports.entries import all_matching, web_location
from marketplace.exports.signing import GPGSigner, NotConfigured, SigningFailed, SMIMESigner
from marketplace.metadata.vocabulary import SEARCH_LIMIT
from marketplace.store.base import Query
from marketplace.web import negotiation
from marketplace.web.current import current_settings, current_store
from marketplace.web.errors import error_response
from marketplace.web.params import (
    NO_MERGED_SLASHES,
    ParameterError,
    date_value,
    email_value,
    identifier_value,
    search_query,
)
from marketplace.web.urls import endorser_imagelist_url

blueprint = Blueprint("exports", __name__)
FEED_SEARCHES = ("/", "/api/v1/appliances")
TEXT = "text/plain; charset=utf-8"  # signed lists and .sjson: MIME or PGP text
JSON = "application/json"


def init_app(app) -> None:
    """Register the routes; renders and loaded keys are kept per app."""
    app.extensions["exports"] = {"renders": Renders()}
    app.register_blueprint(blueprint)


def _kept() -> dict:
    return current_app.extensions["exports"]


def _base_url() -> str:
    return (current_settings()["PUBLIC_URL"] or request.url_root).rstrip("/")


def _answer(tag: str, make) -> Response:
    """304 when the client holds ``tag`` (nothing rendered, in whichever worker process),
    else the render of ``tag``, made once."""
    if request.if_none_match.contains(tag):
        unchanged = Response(status=304)
        unchanged.set_etag(tag)
        unchanged.cache_control.no_cache = True
        return unchanged
    rendered = _kept()["renders"].get(tag, make)
    response = Response(rendered.body, content_type=rendered.content_type)
    response.headers.extend(rendered.headers)
    response.set_etag(tag)
    response.last_modified = rendered.modified
    response.cache_control.no_cache = True
    return response.make_conditional(request)


def _once(name: str, load):
    kept = _kept()
    if name not in kept:
        kept[name] = load()
    return kept[name]


# --- HEPiX image lists -------------------------------------------------------------------


def _definitions() -> dict[str, imagelist.Definition]:
    path = current_settings()["IMAGELISTS"]
    if not path:
        return {}
    return _once("definitions", lambda: _checked(imagelist.load_definitions(Path(path))))


def _checked(definitions: dict[str, imagelist.Definition]) -> dict[str, imagelist.Definition]:
    """The definitions, once each search was found valid (a bad one is the operator's to
    fix: every list answers 503 naming it until then)."""
    for definition in definitions.values():
        _list_query(definition)
    return definitions


def _list_query(definition: imagelist.Definition) -> Query:
    try:
        query = search_query(MultiDict(definition.search), strict=True).query
    except ParameterError as exc:
        raise imagelist.DefinitionError(f"image list [{definition.name}]: {exc}") from None
    query.status = "valid"
    return query


def _smime() -> SMIMESigner:
    settings = current_settings()
    return _once("smime", lambda: SMIMESigner.from_files(settings["IMAGELIST_CERTIFICATE"],
                                                         settings["IMAGELIST_KEY"]))


@blueprint.get("/imagelists")
def imagelists() -> Response:
    """The operator's lists and each endorser's list, by name and by email."""
    base = _base_url()
    return negotiation.json_response({
        "lists": {name: f"{base}/imagelists/{name}" for name in sorted(_definitions())},
        "endorsers": {e.email: endorser_imagelist_url(base, e.email)
                      for e in current_store().endorsers()}})


@blueprint.get("/imagelists/<name>", **NO_MERGED_SLASHES)
def named_imagelist(name: str) -> Response:
    definition = _definitions().get(name)
    if definition is None:
        abort(404, f"no image list named {name!r}; see /imagelists")
    return _imagelist(definition)


@blueprint.get("/imagelists/endorsers/<email>", **NO_MERGED_SLASHES)
def endorser_imagelist(email: str) -> Response:
    return _imagelist(imagelist.endorser_definition(_known_endorser(email)))


def _known_endorser(email: str) -> str:
    """The email of an endorser with entries here (any status); else 404."""
    email = email_value("email", email)
    if not current_store().search(Query(filters={"email": email}, status="all", limit=0)).total:
        abort(404, f"no endorser {email} has published here")
    return email


def _imagelist(definition: imagelist.Definition) -> Response:
    signer = _smime()
    now = datetime.now(UTC)
    lifetime = timedelta(days=float(current_settings()["IMAGELIST_LIFETIME_DAYS"]))
    half = lifetime.total_seconds() / 2
    window = int(now.timestamp() // half)
    created = datetime.fromtimestamp(window * half, UTC)
    version = f"{marker(current_store(), now).version}.{window}"
    base = _base_url()
    tag = etag("imagelist", definition, version, base, signer.certificate.serial_number)

    def make() -> Rendered:
        built = imagelist.build(definition, all_matching(current_store(), _list_query(definition)),
                                signer.endorser(), version, created, lifetime, base)
        left_out = ", ".join(f"{n} {why}" for why, n in built.left_out.items()) or "none"
        return Rendered(signer.sign(built.text.encode()), TEXT, now,
                        (("X-Image-List-Images", str(built.images)),
                         ("X-Image-List-Left-Out", left_out)))

    return _answer(tag, make)


# --- simplestreams -----------------------------------------------------------------------


def _gpg() -> GPGSigner:
    settings = current_settings()
    return GPGSigner.from_settings(settings["GPG_HOME"], settings["GPG_KEY"])


def _products(version: str, now: datetime) -> dict:
    """The products document of this store state; the index and the products file share it."""
    kept = _kept().get("products")
    if kept is not None and kept[0] == version:
        return kept[1]
    summaries = list(all_matching(current_store(), Query(status="valid", now=now)))
    newest = max((s["endorsement"]["created"] for s in summaries), default=None)
    updated = datetime.fromisoformat(newest) if newest else now
    document = simplestreams.products(summaries, updated)
    _kept()["products"] = (version, document)
    return document


def _stream(name: str, signed: bool) -> Response:
    signer = _gpg() if signed else None
    now = datetime.now(UTC)
    version = marker(current_store(), now).version
    tag = etag("streams", name, signed, version, _base_url(), signer.key if signer else None)

    def make() -> Rendered:
        products = _products(version, now)
        document = products if name == "images" else simplestreams.index(
            products, now, signed=signed)
        body = simplestreams.dump(document)
        if signer is None:
            return Rendered(body, JSON, now)
        return Rendered(signer.clearsign(body), TEXT, now)

    return _answer(tag, make)


@blueprint.get("/streams/v1/index.json")
def streams_index() -> Response:
    return _stream("index", signed=False)


@blueprint.get("/streams/v1/index.sjson")
def streams_index_signed() -> Response:
    return _stream("index", signed=True)


@blueprint.get("/streams/v1/images.json")
def streams_products() -> Response:
    return _stream("images", signed=False)


@blueprint.get("/streams/v1/images.sjson")
def streams_products_signed() -> Response:
    return _stream("images", signed=True)


@blueprint.get("/streams/v1/images/<identifier>/<email>/<created>", **NO_MERGED_SLASHES)
def stream_item(identifier: str, email: str, created: str) -> Response:
    """An item's fixed path: a redirect to the image's first web location."""
    query = Query(filters={"identifier": identifier_value("identifier", identifier),
                           "email": email_value("email", email)},
                  created=date_value("created", created), status="all", limit=1)
    found = current_store().search(query).entries
    location = web_location(found[0].as_dict()) if found else None
    if location is None:
        abort(404, f"no image {identifier} by {email} at {created}")
    return redirect(location, 302)


# --- Atom feeds --------------------------------------------------------------------------


@blueprint.before_app_request
def atom_form_of_search():
    """``media=atom`` on the search page or the search API: the same search as a feed."""
    if request.args.get("media") == "atom" and request.path in FEED_SEARCHES:
        return search_feed()
    return None


@blueprint.get("/feeds/appliances")
def search_feed() -> Response:
    args = MultiDict([(k, v) for k, v in request.args.items(multi=True) if k != "media"])
    query = search_query(args, strict=True).query
    shown = "&".join(f"{k}={v}" for k, v in args.items(multi=True))
    return _feed(query, "Appliances" + (f" matching {shown}" if shown else ""),
                 sorted(args.items(multi=True)))


@blueprint.get("/feeds/endorsers/<email>", **NO_MERGED_SLASHES)
def endorser_feed(email: str) -> Response:
    email = _known_endorser(email)
    query = Query(filters={"email": email}, status="all", limit=SEARCH_LIMIT)
    return _feed(query, f"Appliances endorsed by {email}", [("endorser", email)])


def _feed(query: Query, title: str, key: list) -> Response:
    now = query.now
    query.sort, query.descending = "created", True
    mark: Marker = marker(current_store(), now)
    base = _base_url()
    tag = etag("feed", request.path, key, query.limit, query.offset, mark.version, base)

    def make() -> Rendered:
        page = current_store().search(query)
        summaries = [{**e.as_dict(), "email": e.email} for e in page.entries]
        self_url = base + request.full_path.rstrip("?")
        html_url = base + "/?" + request.query_string.decode("ascii", "replace")
        body = feed.feed(f"{title} · {current_settings()['TITLE']}", self_url, html_url.rstrip("?"),
                         summaries, now)
        return Rendered(body, feed.CONTENT_TYPE, now)

    return _answer(tag, make)


# --- errors ------------------------------------------------------------------------------


@blueprint.app_errorhandler(NotConfigured)
def not_configured(exc: NotConfigured) -> Response:
    return error_response(503, str(exc), [{"element": name, "rule": "setting",
                                               "message": "not set"} for name in exc.settings])


@blueprint.app_errorhandler(SigningFailed)
@blueprint.app_errorhandler(imagelist.DefinitionError)
def misconfigured(exc: Exception) -> Response:
    return error_response(503, str(exc))
