"""How any route answers an error: a document in the request's media type (JSON on the
JSON-only routes) naming what is wrong, with the status the error calls for.

:func:`init_app` registers the handlers app-wide; blueprints with pages of their own (the
HTML pages, the moderation pages, the admin API) put theirs in front for their routes.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnsupportedMediaType

from marketplace.metadata.problems import MetadataError
from marketplace.moderation.mail import MailUnavailable
from marketplace.service import Refused, TooLarge
from marketplace.store.base import Conflict, StoreError
from marketplace.store.state import OverQuota, Removed
from marketplace.web import negotiation
from marketplace.web.current import current_marketplace
from marketplace.web.negotiation import BadMedia
from marketplace.web.params import ParameterError

JSON_ONLY = ("/api/", "/admin/api/", "/healthz", "/openapi.json", "/metrics", "/log/")
RETRY_AFTER = "30"
# Why an upload was turned away, as the metrics count it.
REJECTIONS = ((MetadataError, "invalid"), (TooLarge, "too_large"),
              (RequestEntityTooLarge, "too_large"), (UnsupportedMediaType, "unsupported_media"),
              (Conflict, "conflict"), (StoreError, "unavailable"),
              (ParameterError, "bad_request"), (Refused, "refused"),
              (OverQuota, "mail_limit"))


def rejection(exc: Exception) -> str:
    """The metrics' reason for an upload refused with ``exc``."""
    return next((reason for kind, reason in REJECTIONS if isinstance(exc, kind)), "error")


def init_app(app: Flask) -> None:
    for kind, handler in ((ParameterError, bad_parameter), (BadMedia, bad_media),
                          (MetadataError, refused), (TooLarge, too_large),
                          (Conflict, conflict), (Refused, forbidden), (Removed, removed),
                          (OverQuota, over_quota), (MailUnavailable, mail_unavailable),
                          (StoreError, unavailable), (HTTPException, http_error)):
        app.register_error_handler(kind, handler)


def error_response(status: int, message: str, problems: Iterable[dict] = (),
                   headers: dict | None = None) -> Response:
    """An error in the request's media type (JSON on the JSON-only routes)."""
    media = (negotiation.JSON if request.path.startswith(JSON_ONLY)
             else negotiation.for_error())
    return negotiation.error(status, message, problems, media, headers)


def bad_parameter(exc: ParameterError) -> Response:
    return error_response(400, str(exc), exc.problems)


def bad_media(exc: BadMedia) -> Response:
    return error_response(400, str(exc), [{"element": "media", "rule": "parameter",
                                           "message": str(exc)}])


def refused(exc: MetadataError) -> Response:
    """400 with the problems listed once: the message names the first and counts them."""
    count = exc.total
    return error_response(400, f"the document was refused: {count} problem"
                          f"{'s' if count != 1 else ''}: {exc}",
                          [p.as_dict() for p in exc.problems])


def too_large(exc: TooLarge) -> Response:
    return error_response(413, str(exc), [{"element": "document", "rule": "size-limit",
                                           "message": str(exc)}])


def conflict(exc: Conflict) -> Response:
    return error_response(409, str(exc), [{"element": "slreq:endorsement", "rule": "conflict",
                                           "message": str(exc)}])


def forbidden(exc: Refused) -> Response:
    return error_response(403, f"the document was refused: {exc}", exc.problems)


def removed(exc: Removed) -> Response:
    """An upload of an entry that operators removed: gone, until they lift the removal."""
    return error_response(410, f"the document was refused: {exc}", exc.problems)


def over_quota(exc: OverQuota) -> Response:
    """An upload that would mail more than the quota allows: nothing was kept."""
    return error_response(429, f"the upload was not kept: {exc}",
                          [{"element": "slreq:email", "rule": "mail-limit",
                            "message": str(exc)}],
                          headers={"Retry-After": str(exc.retry_after)})


def mail_unavailable(exc: MailUnavailable) -> Response:
    return error_response(503, str(exc), headers={"Retry-After": RETRY_AFTER})


def unavailable(exc: StoreError) -> Response:
    return error_response(503, f"the store is unavailable, try again later: {exc}",
                          headers={"Retry-After": RETRY_AFTER})


def http_error(exc: HTTPException) -> Response:
    message = exc.description or exc.name
    if isinstance(exc, RequestEntityTooLarge):
        message = ("the request body is larger than the limit of "
                   f"{current_marketplace().max_bytes} bytes")
    elif exc.code == 500:
        message = "internal error: the request could not be completed"
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(exc.code or 500, message, headers=headers)
