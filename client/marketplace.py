"""A small client of the marketplace's REST API, shared by the upload, search and deprecate
commands: one ``requests`` session, timeouts on every call, and errors that say what the
server said (its list of problems) or why it could not be reached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests

from client.config import ConfigError, Settings
from marketplace.metadata.identifier import metadata_path

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
JSON = "application/json"
XML = "application/rdf+xml"
_TAGS = re.compile(r"<[^>]+>")


class MarketplaceError(OSError):
    """The marketplace refused a request or could not be reached.

    An OSError, so every command reports it like any other I/O failure. ``status`` is the
    HTTP status (None when there was no answer) and ``problems`` the server's list of
    ``{"element", "rule", "message"}`` dicts.
    """

    def __init__(self, message: str, status: int | None = None,
                 problems: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.problems = problems or []

    def __str__(self) -> str:
        return self.message

    def lines(self) -> list[str]:
        """The message, then one line per problem the server named."""
        return [self.message] + [problem_line(p) for p in self.problems]

    def as_dict(self) -> dict:
        return {"error": self.message, "status": self.status, "problems": self.problems}


def problem_line(problem: dict | str) -> str:
    """One server-reported problem as ``element: message [rule]``."""
    if not isinstance(problem, dict):
        return str(problem)
    text = problem.get("message") or str(problem)
    if problem.get("element"):
        text = f"{problem['element']}: {text}"
    return f"{text} [{problem['rule']}]" if problem.get("rule") else text


@dataclass(frozen=True)
class Uploaded:
    """The answer to an upload: where the entry lives and whether it is new; or, when
    ``pending`` (202), where the upload stands until its endorser confirms it by mail."""

    url: str
    created: bool
    pending: bool = False


@dataclass
class Client:
    """The REST API of one marketplace, e.g. ``Client("http://127.0.0.1:8080")``."""

    endpoint: str
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"marketplace endpoint {self.endpoint!r} is not an http(s) URL")
        self.endpoint = self.endpoint.rstrip("/") + "/"

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        """The marketplace of ``--marketplace-endpoint`` / ``STRATUSLAB_MARKETPLACE_ENDPOINT``
        / the config file's ``marketplace_endpoint`` / the default."""
        return cls(settings.get("marketplace_endpoint") or DEFAULT_ENDPOINT)

    def url(self, path: str) -> str:
        """The absolute URL of a path (or of an already absolute URL) on this marketplace."""
        return urljoin(self.endpoint, path)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """Send a request; raise MarketplaceError for no answer or a status of 400 or more."""
        url = self.url(path)
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise MarketplaceError(f"no answer from the marketplace at {url} within "
                                   f"{self.timeout[1]:.0f} s") from None
        except requests.ConnectionError as exc:
            raise MarketplaceError(f"cannot reach the marketplace at {self.endpoint} "
                                   f"({_reason(exc)}); is it running? (--marketplace-endpoint "
                                   "or STRATUSLAB_MARKETPLACE_ENDPOINT)") from None
        except requests.RequestException as exc:
            raise MarketplaceError(f"request to {url} failed: {exc}") from None
        if response.status_code >= 400:
            raise refusal(response)
        return response

    def upload(self, document: bytes) -> Uploaded:
        """POST a signed document; where it is stored and whether it is new (201) or was
        already there (200), or where it awaits its endorser's confirmation (202)."""
        response = self.request("POST", "metadata", data=document,
                                headers={"Content-Type": XML, "Accept": JSON})
        location = response.headers.get("Location")
        if not location:
            raise MarketplaceError(f"the marketplace answered {response.status_code} without "
                                   "a Location", response.status_code)
        return Uploaded(self.url(location), response.status_code == 201,
                        response.status_code == 202)

    def search(self, params: dict[str, str | int]) -> dict:
        """``GET /api/v1/appliances``: ``{"items": [...], "total": N, ...}``."""
        return self.json("api/v1/appliances", params)

    def json(self, path: str, params: dict | None = None) -> dict | list:
        """GET a path as JSON."""
        response = self.request("GET", path, params=params, headers={"Accept": JSON})
        try:
            return response.json()
        except ValueError:
            raise MarketplaceError(f"the marketplace's answer to {response.url} is not JSON",
                                   response.status_code) from None

    def document(self, identifier: str, email: str, created: str) -> bytes:
        """The stored signed document of one entry, byte for byte."""
        path = metadata_path(identifier, email, created)
        return self.request("GET", path, headers={"Accept": XML}).content


def refusal(response: requests.Response) -> MarketplaceError:
    """A MarketplaceError saying what the server said, from a JSON error body or its text."""
    head = f"the marketplace refused {response.request.method} {response.url}: HTTP " \
           f"{response.status_code} {response.reason or ''}".rstrip()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("message")
        problems = body.get("problems") or []
        return MarketplaceError(f"{head}: {message}" if message else head,
                                response.status_code, list(problems))
    text = " ".join(_TAGS.sub(" ", response.text or "").split())[:300]
    return MarketplaceError(f"{head}: {text}" if text else head, response.status_code)


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "timed out", "Temporary failure in name resolution"):
        if marker in text:
            return marker.lower()
    return text
