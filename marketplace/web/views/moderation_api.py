"""JSON routes of moderation: where an upload stands, the change feed, the admin API.

- ``GET /api/v1/uploads/<identifier>/<email>/<created>``: pending, flagged or published
  (the ``Location`` of a 202 upload);
- ``GET /api/v1/changes?after=N``: publications and removals in order, for replicas;
- ``/admin/api/...``: pending and flagged uploads, removal (and lifting a removal's
  tombstone), blocking, the audit log -- behind :mod:`.auth`; POST bodies are JSON only (no
  cross-site form can send one).

An upload is refused for moderation's reasons with 410 for an entry that operators removed
(its tombstone), 429 with ``Retry-After`` when the endorser or the client had its
confirmation mails.

Those refusals are answered by :mod:`marketplace.web.errors`. Every route is in the web
package's ``openapi.json``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, NotFound, UnsupportedMediaType

from marketplace.metadata.identifier import entry_path
from marketplace.metadata.model import format_date
from marketplace.moderation.auth import NotConfigured, Unauthorized
from marketplace.moderation.endorsers import Endorser
from marketplace.store.state import FLAGGED, PENDING
from marketplace.web import negotiation
from marketplace.web.current import current_guard, current_moderation
from marketplace.web.params import NO_MERGED_SLASHES, ParameterError, Params, entry_key
from marketplace.web.urls import upload_url

public = Blueprint("moderation_api", __name__)
admin = Blueprint("admin_api", __name__, url_prefix="/admin/api")

MAX_REASON = 500
MAX_CHANGES = 1000
MAX_AUDIT = 500
STATES = ("pending", "flagged", "all")


def init_app(app: Flask) -> None:
    """Register the moderation routes (the admin guard is :mod:`..current`'s)."""
    app.register_blueprint(public)
    app.register_blueprint(admin)


# --- public -------------------------------------------------------------------------------


@public.get("/api/v1/uploads/<identifier>/<email>/<created>", **NO_MERGED_SLASHES)
def upload_state(identifier: str, email: str, created: str) -> Response:
    """Where an upload stands: pending, flagged (reported) or published."""
    key = entry_key(identifier, email, created)
    state = current_moderation().standing(key, current_moderation().now())
    if state is None:
        raise NotFound(f"no upload of {identifier} by {email} at {created} is pending or "
                       "published (it may have been aborted, or not confirmed in time)")
    data = {"identifier": identifier, "email": email, "created": created, **state}
    if state["state"] == "published":
        data["url"] = entry_path(identifier, email, created)
    return negotiation.json_response(data)


@public.get("/api/v1/changes")
def changes() -> Response:
    """Publications and removals after a serial, oldest first; ``last`` is the newest."""
    params = Params(request.args, ("after", "limit"), strict=True)
    after = params.integer("after", 0, 0, 2 ** 62)
    limit = params.integer("limit", 500, 1, MAX_CHANGES)
    state = current_moderation().state
    found = state.changes(after, limit)
    return negotiation.json_response({"changes": [c.as_dict() for c in found],
                                      "last": state.last_serial()})


# --- admin --------------------------------------------------------------------------------


@admin.before_request
def authenticate() -> None:
    g.admin = current_guard().check(request.headers.get("Authorization"))


def json_error(status: int, message: str, problems: list | None = None,
               headers: dict | None = None) -> Response:
    return negotiation.error(status, message, problems or [], negotiation.JSON, headers)


@admin.errorhandler(NotConfigured)
def not_configured(exc: NotConfigured) -> Response:
    return json_error(403, str(exc))


@admin.errorhandler(Unauthorized)
def unauthorized(exc: Unauthorized) -> Response:
    current_app.logger.warning("admin authentication failed for %s %s from %s",
                               request.method, request.path, request.remote_addr)
    return json_error(401, str(exc), headers={"WWW-Authenticate": exc.challenge})


@admin.errorhandler(ParameterError)
def bad_parameter(exc: ParameterError) -> Response:
    return json_error(400, str(exc), exc.problems)


@admin.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    return json_error(exc.code or 500, exc.description or exc.name)


def body() -> dict:
    """The JSON object of a POST (415 for anything else)."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send a JSON object as application/json")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ParameterError("body", "must be a JSON object")
    return data


def body_key(data: dict) -> tuple[str, str, str]:
    """The entry a POST names by ``identifier``, ``email`` and ``created``, checked."""
    return entry_key(text_field(data, "identifier", 27), text_field(data, "email", 254),
                     text_field(data, "created", 20))


def text_field(data: dict, name: str, limit: int = MAX_REASON) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(name, "is required: a non-empty string")
    value = " ".join(value.split())
    if len(value) > limit or not value.isprintable():
        raise ParameterError(name, f"must be at most {limit} printable characters")
    return value


def endorser_field(data: dict) -> str:
    text = text_field(data, "endorser", 1000)
    try:
        return Endorser.parse(text).text
    except ValueError as exc:
        raise ParameterError("endorser", str(exc)) from None


@admin.get("/uploads")
def uploads() -> Response:
    """Uploads awaiting confirmation (pending) or reported as abuse (flagged)."""
    params = Params(request.args, ("state",), strict=True)
    state = params.choice("state", STATES, "all")
    current_moderation().purge(current_moderation().now())
    found = current_moderation().state.uploads(None if state == "all" else state)
    return negotiation.json_response({
        "uploads": [{**u.as_dict(), "status_url": upload_url(*u.key)} for u in found],
        "total": len(found),
        "counts": {s: sum(u.state == s for u in found) for s in (PENDING, FLAGGED)}})


@admin.post("/remove")
def remove() -> Response:
    """Remove a published entry and/or discard a held upload; audited with who and why."""
    data = body()
    key = body_key(data)
    reason = text_field(data, "reason")
    moderation = current_moderation()
    removed = moderation.remove(key, g.admin.name, reason, moderation.now())
    if not removed:
        raise NotFound(f"no entry and no held upload of {key[0]} by {key[1]} at {key[2]}")
    return negotiation.json_response({"identifier": key[0], "email": key[1],
                                      "created": key[2], "removed": removed,
                                      "actor": g.admin.name, "reason": reason})


@admin.get("/tombstones")
def tombstones() -> Response:
    """What operators removed (or, on a replica, the primary did): refused until lifted."""
    found = [t.as_dict() for t in current_moderation().state.tombstones()]
    return negotiation.json_response({"tombstones": found, "total": len(found)})


@admin.post("/lift")
def lift() -> Response:
    """Let a removed entry be uploaded again; audited with who and why."""
    data = body()
    key = body_key(data)
    reason = text_field(data, "reason")
    moderation = current_moderation()
    if not moderation.lift(key, g.admin.name, reason, moderation.now()):
        raise NotFound(f"no removal of {key[0]} by {key[1]} at {key[2]} to lift")
    return negotiation.json_response({"identifier": key[0], "email": key[1],
                                      "created": key[2], "lifted": True,
                                      "actor": g.admin.name, "reason": reason})


@admin.post("/block")
def block() -> Response:
    """Block an endorser (an email address or a subject DN): its uploads get 403."""
    data = body()
    moderation = current_moderation()
    endorser, new = moderation.block(endorser_field(data), g.admin.name,
                                     text_field(data, "reason"), moderation.now())
    return negotiation.json_response({"endorser": endorser, "blocked": True, "new": new},
                                     201 if new else 200)


@admin.post("/unblock")
def unblock() -> Response:
    data = body()
    moderation = current_moderation()
    endorser, done = moderation.unblock(endorser_field(data), g.admin.name,
                                        text_field(data, "reason"), moderation.now())
    if not done:
        raise NotFound(f"the endorser {endorser} is not blocked")
    return negotiation.json_response({"endorser": endorser, "blocked": False})


@admin.get("/blocked")
def blocked() -> Response:
    found = [b.as_dict() for b in current_moderation().state.blocked()]
    return negotiation.json_response({"blocked": found, "total": len(found)})


@admin.get("/audit")
def audit() -> Response:
    """The audit log, newest first; ``before`` (a serial) pages back."""
    params = Params(request.args, ("limit", "before"), strict=True)
    limit = params.integer("limit", 100, 1, MAX_AUDIT)
    before = params.integer("before", 0, 1, 2 ** 62) if params.get("before") else None
    records = current_moderation().state.audit(limit, before)
    return negotiation.json_response({
        "records": [r.as_dict() for r in records],
        "next_before": records[-1].serial if len(records) == limit else None,
        "now": format_date(current_moderation().now())})
