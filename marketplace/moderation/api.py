"""JSON routes of moderation: where an upload stands, the change feed, the admin API.

- ``GET /api/v1/uploads/<identifier>/<email>/<created>``: pending, flagged or published
  (the ``Location`` of a 202 upload);
- ``GET /api/v1/changes?after=N``: publications and removals in order, for replicas;
- ``/admin/api/...``: pending and flagged uploads, removal (and lifting a removal's
  tombstone), blocking, the audit log -- behind :mod:`.auth`; POST bodies are JSON only (no
  cross-site form can send one).

It also says how an upload is refused for moderation's reasons: 410 for an entry that
operators removed (its tombstone), 429 with ``Retry-After`` when the endorser or the
client had its confirmation mails.

Every route is in ``schemas/openapi.json``.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, NotFound, UnsupportedMediaType

from marketplace import api, negotiation
from marketplace.metadata.model import format_date
from marketplace.moderation.auth import Guard, NotConfigured, Unauthorized
from marketplace.moderation.endorsers import Endorser
from marketplace.moderation.store import FLAGGED, PENDING, OverQuota, Removed
from marketplace.moderation.workflow import Moderation

public = Blueprint("moderation_api", __name__)
admin = Blueprint("admin_api", __name__, url_prefix="/admin/api")

MAX_REASON = 500
MAX_CHANGES = 1000
MAX_AUDIT = 500
STATES = ("pending", "flagged", "all")


def moderation() -> Moderation:
    return api.service().moderation


def guard() -> Guard:
    return current_app.extensions["admin_guard"]


def install(app: Flask) -> None:
    """Register the moderation routes and the admin guard on an app."""
    app.extensions["admin_guard"] = Guard.from_settings(app.config["MARKETPLACE"])
    app.register_blueprint(public)
    app.register_blueprint(admin)
    app.register_error_handler(Removed, removed_entry)
    app.register_error_handler(OverQuota, over_quota)


def removed_entry(exc: Removed) -> Response:
    """An upload of an entry that operators removed: gone, until they lift the removal."""
    return api.error_response(410, f"the document was refused: {exc}", exc.problems)


def over_quota(exc: OverQuota) -> Response:
    """An upload that would mail more than the quota allows: nothing was kept."""
    return api.error_response(429, f"the upload was not kept: {exc}",
                              [{"element": "slreq:email", "rule": "mail-limit",
                                "message": str(exc)}],
                              headers={"Retry-After": str(exc.retry_after)})


def key_of(identifier: str, email: str, created: str) -> tuple[str, str, str]:
    """A checked entry key (ParameterError naming the part at fault)."""
    api.identifier_value("identifier", identifier)
    api.email_value("email", email)
    api.date_value("created", created)
    return identifier, email, created


# --- public -------------------------------------------------------------------------------


@public.get("/api/v1/uploads/<identifier>/<email>/<created>", **api.EXACT)
def upload_state(identifier: str, email: str, created: str) -> Response:
    """Where an upload stands: pending, flagged (reported) or published."""
    key = key_of(identifier, email, created)
    state = moderation().state(key, moderation().now())
    if state is None:
        raise NotFound(f"no upload of {identifier} by {email} at {created} is pending or "
                       "published (it may have been aborted, or not confirmed in time)")
    data = {"identifier": identifier, "email": email, "created": created, **state}
    if state["state"] == "published":
        data["url"] = f"/metadata/{identifier}/{quote(email, safe='@+')}/{created}"
    return negotiation.json_response(data)


@public.get("/api/v1/changes")
def changes() -> Response:
    """Publications and removals after a serial, oldest first; ``last`` is the newest."""
    params = api.Params(request.args, ("after", "limit"), strict=True)
    after = params.integer("after", 0, 0, 2 ** 62)
    limit = params.integer("limit", 500, 1, MAX_CHANGES)
    db = moderation().db
    return negotiation.json_response({"changes": [c.as_dict() for c in db.changes(after, limit)],
                                      "last": db.last_serial()})


# --- admin --------------------------------------------------------------------------------


@admin.before_request
def authenticate() -> None:
    g.admin = guard().check(request.headers.get("Authorization"))


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


@admin.errorhandler(api.ParameterError)
def bad_parameter(exc: api.ParameterError) -> Response:
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
        raise api.ParameterError("body", "must be a JSON object")
    return data


def text_field(data: dict, name: str, limit: int = MAX_REASON) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise api.ParameterError(name, "is required: a non-empty string")
    value = " ".join(value.split())
    if len(value) > limit or not value.isprintable():
        raise api.ParameterError(name, f"must be at most {limit} printable characters")
    return value


def endorser_field(data: dict) -> str:
    text = text_field(data, "endorser", 1000)
    try:
        return Endorser.parse(text).text
    except ValueError as exc:
        raise api.ParameterError("endorser", str(exc)) from None


@admin.get("/uploads")
def uploads() -> Response:
    """Uploads awaiting confirmation (pending) or reported as abuse (flagged)."""
    params = api.Params(request.args, ("state",), strict=True)
    state = params.choice("state", STATES, "all")
    moderation().purge(moderation().now())
    found = moderation().db.uploads(None if state == "all" else state)
    return negotiation.json_response({
        "uploads": [{**u.as_dict(), "status_url": api.upload_status_url(u)} for u in found],
        "total": len(found),
        "counts": {s: sum(u.state == s for u in found) for s in (PENDING, FLAGGED)}})


@admin.post("/remove")
def remove() -> Response:
    """Remove a published entry and/or discard a held upload; audited with who and why."""
    data = body()
    key = key_of(text_field(data, "identifier", 27), text_field(data, "email", 254),
                 text_field(data, "created", 20))
    reason = text_field(data, "reason")
    removed = moderation().remove(key, g.admin.name, reason, moderation().now())
    if not removed:
        raise NotFound(f"no entry and no held upload of {key[0]} by {key[1]} at {key[2]}")
    return negotiation.json_response({"identifier": key[0], "email": key[1],
                                      "created": key[2], "removed": removed,
                                      "actor": g.admin.name, "reason": reason})


@admin.get("/tombstones")
def tombstones() -> Response:
    """What operators removed (or, on a replica, the primary did): refused until lifted."""
    found = [t.as_dict() for t in moderation().db.tombstones()]
    return negotiation.json_response({"tombstones": found, "total": len(found)})


@admin.post("/lift")
def lift() -> Response:
    """Let a removed entry be uploaded again; audited with who and why."""
    data = body()
    key = key_of(text_field(data, "identifier", 27), text_field(data, "email", 254),
                 text_field(data, "created", 20))
    reason = text_field(data, "reason")
    if not moderation().lift(key, g.admin.name, reason, moderation().now()):
        raise NotFound(f"no removal of {key[0]} by {key[1]} at {key[2]} to lift")
    return negotiation.json_response({"identifier": key[0], "email": key[1],
                                      "created": key[2], "lifted": True,
                                      "actor": g.admin.name, "reason": reason})


@admin.post("/block")
def block() -> Response:
    """Block an endorser (an email address or a subject DN): its uploads get 403."""
    data = body()
    endorser, new = moderation().block(endorser_field(data), g.admin.name,
                                       text_field(data, "reason"), moderation().now())
    return negotiation.json_response({"endorser": endorser, "blocked": True, "new": new},
                                     201 if new else 200)


@admin.post("/unblock")
def unblock() -> Response:
    data = body()
    endorser, done = moderation().unblock(endorser_field(data), g.admin.name,
                                          text_field(data, "reason"), moderation().now())
    if not done:
        raise NotFound(f"the endorser {endorser} is not blocked")
    return negotiation.json_response({"endorser": endorser, "blocked": False})


@admin.get("/blocked")
def blocked() -> Response:
    found = [b.as_dict() for b in moderation().db.blocked()]
    return negotiation.json_response({"blocked": found, "total": len(found)})


@admin.get("/audit")
def audit() -> Response:
    """The audit log, newest first; ``before`` (a serial) pages back."""
    params = api.Params(request.args, ("limit", "before"), strict=True)
    limit = params.integer("limit", 100, 1, MAX_AUDIT)
    before = params.integer("before", 0, 1, 2 ** 62) if params.get("before") else None
    records = moderation().db.audit(limit, before)
    return negotiation.json_response({
        "records": [r.as_dict() for r in records],
        "next_before": records[-1].serial if len(records) == limit else None,
        "now": format_date(moderation().now())})
