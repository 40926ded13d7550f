"""What the marketplace tells and asks browsers, for every route at once (``init_app``).

Anyone with a certificate can sign a document, and listings serve stored documents inline
as XML, so a browser must never run what a document carries. Every answer gets
``nosniff``, ``frame-ancestors 'none'`` and a Content-Security-Policy: data (XML, JSON,
errors, static files) ``default-src 'none'; sandbox``, so nothing in it runs even if it
opens as a page; HTML pages only their own static script and styles.

The admin area must hold even if that failed and a script ran on our origin. The browser
sends an operator's basic credentials with any request of that origin, so a request with
them is only taken as a page load or a form of ours: never a script's ``fetch``, a frame
or an embed (``Sec-Fetch-Dest``), and a state change only from this origin
(``Sec-Fetch-Site``, else ``Origin``/``Referer``). Admin pages sever their opener
(``noopener-allow-popups``), so a script cannot read one through ``window.open``. Bearer
tokens are exempt: a browser never attaches them by itself. Mailed links get the same
checks, with no referrer (their token is in the address).

The Host header is only believed for hosts the marketplace answers to (Flask's
``TRUSTED_HOSTS``); :func:`base_url` is the address shown to people.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import Forbidden, SecurityError

from marketplace.web import negotiation

PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
               "connect-src 'self'; form-action 'self'; base-uri 'none'; "
               "frame-ancestors 'none'")
DATA_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
EVERY_ANSWER = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin",
                "Cross-Origin-Resource-Policy": "same-origin"}
ADMIN = "/admin"
LINKS = "/moderation/"
AREA_ANSWERS = {
    ADMIN: {"Cross-Origin-Opener-Policy": "noopener-allow-popups", "Cache-Control": "no-store"},
    LINKS: {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"},
}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def init_app(app: Flask) -> None:
    """Trusted hosts from the settings, the browser checks and the headers of every answer."""
    settings = app.config["MARKETPLACE"]
    check_public_url(settings["PUBLIC_URL"])
    app.config["TRUSTED_HOSTS"] = trusted_hosts(settings)
    app.before_request(check_browser_request)
    app.after_request(protect)
    app.register_error_handler(SecurityError, untrusted_host)
    app.add_template_global(base_url)


# --- the public address and the hosts we answer to -----------------------------------------


def check_public_url(url: str) -> None:
    """A set PUBLIC_URL is a plain http(s) address; ValueError naming it otherwise."""
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc \
            or parts.query or parts.fragment:
        raise ValueError(f"MARKETPLACE_PUBLIC_URL must be an http(s) address such as "
                         f"https://marketplace.example.org, without user, query or "
                         f"fragment; got {url[:100]!r}")


def trusted_hosts(settings: dict[str, str]) -> list[str] | None:
    """TRUSTED_HOSTS as a list; else PUBLIC_URL's host; None (any host) when neither is set."""
    listed = [host.strip() for host in settings["TRUSTED_HOSTS"].split(",") if host.strip()]
    if listed:
        return listed
    public = settings["PUBLIC_URL"]
    return [urlsplit(public).hostname] if public else None


def base_url() -> str:
    """This marketplace's address as people reach it, without a final slash: PUBLIC_URL
    when set, else the address of this request (whose host is a trusted one)."""
    return current_app.config["MARKETPLACE"]["PUBLIC_URL"].rstrip("/") \
        or request.host_url.rstrip("/")


def untrusted_host(exc: SecurityError) -> Response:
    """400 without echoing the Host header (it is the attacker's text)."""
    return negotiation.error(400, "the Host header names a host this marketplace does not "
                             "answer to (MARKETPLACE_TRUSTED_HOSTS)",
                             media=negotiation.for_error())


# --- the admin area and mailed links --------------------------------------------------------


def guarded() -> bool:
    """Requests a browser sends with an operator's credentials or a link's token; an admin
    request with a bearer token is a program's, never a browser's own doing."""
    path = request.path
    if path.startswith(LINKS):
        return True
    bearer = request.headers.get("Authorization", "").lower().startswith("bearer ")
    return (path == ADMIN or path.startswith(ADMIN + "/")) and not bearer


def check_browser_request() -> None:
    """Refuse (403) a guarded request a script, a frame or another site made."""
    if not guarded():
        return
    destination = request.headers.get("Sec-Fetch-Dest")
    if destination is not None and destination != "document":
        raise Forbidden("This address only opens as a page of its own: it is not fetched by "
                        "scripts, framed or embedded.")
    if request.method not in SAFE_METHODS and not from_this_origin():
        raise Forbidden("This form did not come from this marketplace's own pages.")


def from_this_origin() -> bool:
    """Whether the browser says the request came from our origin; True for clients that
    are no browser (they send neither Sec-Fetch-Site, Origin nor Referer)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in own_origins()
    referer = request.headers.get("Referer")
    return referer is None or origin_of(referer) in own_origins()


def own_origins() -> set[str]:
    return {origin_of(base_url()), origin_of(request.host_url)}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# --- headers ---------------------------------------------------------------------------------


def protect(response: Response) -> Response:
    """Every answer's headers: the page or data policy, then its area's own."""
    response.headers["Content-Security-Policy"] = (
        PAGE_POLICY if response.mimetype == negotiation.HTML_TYPE else DATA_POLICY)
    response.headers.update(EVERY_ANSWER)
    for prefix, headers in AREA_ANSWERS.items():
        if request.path == prefix or request.path.startswith(prefix.rstrip("/") + "/"):
            response.headers.update(headers)
    return response
