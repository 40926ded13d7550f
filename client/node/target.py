"""What the user asked for: an identifier, the original's relative form of one entry
(``<identifier>/<email>/<created>``), or a marketplace URL naming one (or one entry).

Standard library only (plus the identifier rule): parsing a target is on the cache-hit path.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from marketplace.metadata.identifier import is_identifier


@dataclass(frozen=True)
class Target:
    """An identifier on a marketplace, perhaps one endorser's entry of it."""

    identifier: str
    endpoint: str
    entry: tuple[str, str] | None = None  # (email, created) of one entry

    @property
    def base(self) -> str:
        """The endpoint with one trailing slash (BadTarget when it is not an http(s) URL)."""
        return normal_endpoint(self.endpoint)

    @property
    def listing_url(self) -> str:
        return urljoin(self.base, f"metadata/{self.identifier}")


class BadTarget(ValueError):
    """Neither an identifier nor a marketplace URL."""


def parse_target(text: str, endpoint: str) -> Target:
    """An identifier, ``<id>/<email>/<created>`` on ``endpoint`` (what the original
    ``stratus-download-image`` took, and the path of an entry's URL after ``metadata/``), or
    a marketplace URL ``.../metadata/<id>[/<email>/<created>]`` (whose own host is then the
    marketplace asked)."""
    text = text.strip()
    if is_identifier(text):
        return Target(text, endpoint)
    relative = text.split("/")
    if len(relative) == 3 and is_identifier(relative[0]) and all(relative):
        return Target(relative[0], endpoint, (relative[1], relative[2]))
    parts = urlsplit(text)
    segments = [unquote(s) for s in parts.path.split("/")]
    if parts.scheme in ("http", "https") and parts.netloc and "metadata" in segments:
        at = len(segments) - 1 - segments[::-1].index("metadata")
        rest = [s for s in segments[at + 1:] if s]
        if rest and is_identifier(rest[0]) and len(rest) in (1, 3):
            base = f"{parts.scheme}://{parts.netloc}{'/'.join(segments[:at])}/"
            entry = (rest[1], rest[2]) if len(rest) == 3 else None
            return Target(rest[0], base, entry)
    raise BadTarget(f"{text!r} is neither an image identifier (27 characters of A-Z a-z 0-9 "
                    "- _), nor <identifier>/<email>/<created>, nor a marketplace URL such as "
                    "https://host/metadata/<identifier>")


def normal_endpoint(endpoint: str) -> str:
    """The endpoint with one trailing slash; BadTarget unless it is an http(s) URL."""
    parts = urlsplit(endpoint or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadTarget(f"marketplace endpoint {endpoint!r} is not an http(s) URL "
                        "(--marketplace-endpoint, STRATUSLAB_MARKETPLACE_ENDPOINT or "
                        "marketplace_endpoint in fetcher.cfg)")
    return endpoint.rstrip("/") + "/"
