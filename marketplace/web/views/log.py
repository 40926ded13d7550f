"""The transparency log over HTTP, in the C2SP ``tlog-tiles`` layout under ``/log/``.

``/log/checkpoint`` (the signed note, never cached), ``/log/key`` (its verifier key),
``/log/tile/<L>/<N>[.p/<W>]`` and ``/log/tile/entries/<N>[.p/<W>]`` (immutable once served:
a tile only ever grows into a new path), and ``POST /log/cosignature`` where a witness
hands in its cosignature of the served checkpoint. Everything is decided in
:mod:`marketplace.log.served`; this module only speaks HTTP.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import NotFound

from marketplace.log.served import CosignatureRefused, NoLogKey, TransparencyLog
from marketplace.metadata import tlog
from marketplace.web import negotiation
from marketplace.web.current import current_store, marketplace_of
from marketplace.web.errors import error_response

blueprint = Blueprint("log", __name__, url_prefix="/log")
TEXT = "text/plain; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"
MAX_COSIGNED = 64 * 1024  # a checkpoint with its signature lines is far smaller


def init_app(app: Flask) -> None:
    """Register the routes; the log (its key read once, checked now) is kept per app."""
    app.extensions["log"] = TransparencyLog.from_settings(
        app.config["MARKETPLACE"], marketplace_of(app).store.state)
    app.register_blueprint(blueprint)


def current_log() -> TransparencyLog:
    return current_app.extensions["log"]


@blueprint.errorhandler(NoLogKey)
def no_key(exc: NoLogKey) -> Response:
    return error_response(503, str(exc), headers={"Retry-After": "3600"})


@blueprint.errorhandler(CosignatureRefused)
def cosignature_refused(exc: CosignatureRefused) -> Response:
    return error_response(exc.status, str(exc), [{"element": "cosignature",
                                                  "rule": "witness", "message": str(exc)}])


@blueprint.get("/checkpoint")
def checkpoint() -> Response:
    """The newest signed checkpoint, with the witnesses' cosignatures of its text."""
    response = Response(current_log().checkpoint(), content_type=TEXT)
    response.cache_control.no_cache = True
    return response


@blueprint.get("/key")
def key() -> Response:
    """The log's verifier key, as ``golang.org/x/mod/sumdb/note`` reads it."""
    return Response(current_log().vkey() + "\n", content_type=TEXT)


@blueprint.get("/tile/<path:path>")
def tile(path: str) -> Response:
    """A hash tile or an entry bundle; 404 for what the tree does not reach yet. (A final
    slash is taken as every route here takes it: as if it were not there.)"""
    try:
        level, index, width = tlog.parse_tile_path("tile/" + path.removesuffix("/"))
    except ValueError as exc:
        raise NotFound(f"not a tile of this log: {exc}") from None
    data = current_log().tile(level, index, width)
    if data is None:
        raise NotFound(f"the log has no tile {path} yet: it holds "
                       f"{current_store().state.log_size()} leaves")
    response = Response(data, content_type="application/octet-stream")
    response.headers["Cache-Control"] = IMMUTABLE
    return response


@blueprint.post("/cosignature")
def cosignature() -> Response:
    """Keep a listed witness's cosignature of the served checkpoint (the checkpoint's
    text, a blank line, then its signature lines, as ``text/plain``)."""
    body = request.get_data(cache=False)
    if len(body) > MAX_COSIGNED:
        raise CosignatureRefused(413, f"a cosigned checkpoint is at most {MAX_COSIGNED} "
                                 "bytes")
    try:
        posted = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CosignatureRefused(400, "a cosigned checkpoint is UTF-8 text") from None
    return negotiation.json_response({"kept": current_log().add_cosignature(posted)})
