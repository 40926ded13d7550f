"""HTML pages of moderation: the mailed links (``/moderation/...``) and the operators'
pages (``/admin/...``), on the web UI's base template.

A mailed link (``/moderation/confirm?token=...``, likewise ``abort`` and ``abuse``) opens a
page with one button: mail scanners that fetch links (GET, HEAD, OPTIONS or anything else)
change nothing; only the button's POST acts. It posts to the same address, so the token is
never written into a page.

The admin pages need the same credentials as the admin API (a browser asks for the
account of ``MARKETPLACE_ADMIN_ACCOUNTS_FILE``); their forms carry a CSRF token. Headers
and the same-origin checks of both areas are :mod:`marketplace.web.security`'s.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, g, redirect, render_template, request
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound

from marketplace.metadata.model import format_date
from marketplace.moderation.auth import NotConfigured, Unauthorized
from marketplace.moderation.endorsers import Endorser
from marketplace.moderation.mail import ACTIONS
from marketplace.moderation.workflow import LinkGone
from marketplace.store.state import FLAGGED, PENDING
from marketplace.web import negotiation
from marketplace.web.current import current_guard, current_moderation
from marketplace.web.params import ParameterError, Params, entry_key

links = Blueprint("moderation_pages", __name__, url_prefix="/moderation")
admin = Blueprint("admin_pages", __name__, url_prefix="/admin")

LINK_TEXT = {
    "confirm": ("Confirm the publication", "Publish it", "button--primary"),
    "abort": ("Abort the upload", "Discard it", ""),
    "abuse": ("Report an upload you did not make", "Report it to the operators", ""),
}
DONE = {"removed": "The entry was removed.", "blocked": "The endorser is blocked.",
        "unblocked": "The endorser is no longer blocked.",
        "already-blocked": "That endorser was blocked already.",
        "lifted": "The removal is lifted: the entry may be uploaded again."}
AUDIT_PAGE = 100


def init_app(app: Flask) -> None:
    app.register_blueprint(links)
    app.register_blueprint(admin)


def page(template: str, status: int = 200, **context) -> Response:
    return Response(render_template(f"moderation/{template}", **context), status,
                    mimetype=negotiation.HTML_TYPE)


def message(status: int, title: str, text: str, headers: dict | None = None) -> Response:
    response = page("message.html", status, title=title, text=text, status_code=status)
    response.headers.update(headers or {})
    return response


# --- mailed links -------------------------------------------------------------------------


@links.route("/<action>", methods=["GET", "POST"])
def follow(action: str) -> Response:
    """POST (the page's button) does it; any other method (GET, and the HEAD Flask
    answers with it) only shows what the link would do."""
    if action not in ACTIONS:
        raise NotFound("There is no such link.")
    token = request.args.get("token", "")
    now = current_moderation().now()
    if request.method != "POST":
        upload = current_moderation().pending(token, now)
        heading, button, style = LINK_TEXT[action]
        return page("link.html", action=action, upload=upload, heading=heading,
                    button=button, style=style, expires=format_date(upload.expires))
    outcome = current_moderation().respond(action, token, now)
    url = None
    if outcome.state in ("published", "known"):
        url = f"/appliances/{outcome.upload.identifier}"
    return page("done.html", outcome=outcome, url=url)


@links.errorhandler(LinkGone)
def link_gone(exc: LinkGone) -> Response:
    return message(404, "This link is no longer valid", f"{str(exc).capitalize()}.")


@links.errorhandler(HTTPException)
def link_error(exc: HTTPException) -> Response:
    return message(exc.code or 500, exc.name, exc.description or exc.name)


# --- admin pages --------------------------------------------------------------------------


@admin.before_request
def authenticate() -> None:
    g.admin = current_guard().check(request.headers.get("Authorization"))
    if request.method == "POST" and not g.admin.check_form(request.form.get("csrf")):
        raise Forbidden("This form did not come from the admin page: open the page again "
                        "and send it from there.")


@admin.errorhandler(NotConfigured)
def not_configured(exc: NotConfigured) -> Response:
    return message(403, "Administration is off", f"{exc}.")


@admin.errorhandler(Unauthorized)
def unauthorized(exc: Unauthorized) -> Response:
    return message(401, "Sign in to administer the marketplace", f"{exc}.",
                   {"WWW-Authenticate": exc.challenge})


@admin.errorhandler(ParameterError)
def bad_parameter(exc: ParameterError) -> Response:
    return message(400, "That cannot be done", f"{exc.name}: {exc.message}.")


@admin.errorhandler(HTTPException)
def admin_error(exc: HTTPException) -> Response:
    return message(exc.code or 500, exc.name, exc.description or exc.name)


@admin.get("/")
def home() -> Response:
    """Held uploads, blocked endorsers, the forms, and the latest of the audit log."""
    now = current_moderation().now()
    current_moderation().purge(now)
    held = current_moderation().state.uploads()
    return page("admin.html", admin=g.admin, csrf=g.admin.form_token(),
                pending=[u for u in held if u.state == PENDING],
                flagged=[u for u in held if u.state == FLAGGED],
                blocked=current_moderation().state.blocked(),
                tombstones=current_moderation().state.tombstones(),
                audit=current_moderation().state.audit(20),
                done=DONE.get(request.args.get("done", "")), now=format_date(now))


@admin.get("/audit")
def audit() -> Response:
    params = Params(request.args, ("before",))
    before = params.integer("before", 0, 1, 2 ** 62) if params.get("before") else None
    records = current_moderation().state.audit(AUDIT_PAGE, before)
    older = records[-1].serial if len(records) == AUDIT_PAGE else None
    return page("audit.html", admin=g.admin, records=records, older=older)


def form_text(name: str, limit: int = 500) -> str:
    value = " ".join(request.form.get(name, "").split())
    if not value:
        raise ParameterError(name, "is required")
    if len(value) > limit or not value.isprintable():
        raise ParameterError(name, f"must be at most {limit} printable characters")
    return value


def endorser_text() -> str:
    try:
        return Endorser.parse(form_text("endorser", 1000)).text
    except ValueError as exc:
        raise ParameterError("endorser", str(exc)) from None


@admin.post("/remove")
def remove() -> Response:
    key = entry_key(form_text("identifier", 27), form_text("email", 254),
                 form_text("created", 20))
    moderation = current_moderation()
    if not moderation.remove(key, g.admin.name, form_text("reason"), moderation.now()):
        raise NotFound(f"There is no entry and no held upload of {key[0]} by {key[1]} at "
                       f"{key[2]}.")
    return redirect("/admin/?done=removed", 303)


@admin.post("/block")
def block() -> Response:
    _, new = current_moderation().block(endorser_text(), g.admin.name, form_text("reason"),
                                current_moderation().now())
    return redirect(f"/admin/?done={'blocked' if new else 'already-blocked'}", 303)


@admin.post("/unblock")
def unblock() -> Response:
    moderation = current_moderation()
    endorser, done = moderation.unblock(endorser_text(), g.admin.name, form_text("reason"),
                                        moderation.now())
    if not done:
        raise BadRequest(f"The endorser {endorser} is not blocked.")
    return redirect("/admin/?done=unblocked", 303)


@admin.post("/lift")
def lift() -> Response:
    key = entry_key(form_text("identifier", 27), form_text("email", 254),
                 form_text("created", 20))
    moderation = current_moderation()
    if not moderation.lift(key, g.admin.name, form_text("reason"), moderation.now()):
        raise NotFound(f"There is no removal of {key[0]} by {key[1]} at {key[2]} to lift.")
    return redirect("/admin/?done=lifted", 303)
