"""Every link the marketplace gives out, built in one place.

Path parts are quoted by the core's one rule (:func:`~marketplace.metadata.identifier.
path_segment`), entry paths are the core's :func:`~marketplace.metadata.identifier.
entry_path` (the clients request the same), and search links list their parameters in the
canonical order without defaults (:mod:`.params`), so one search has one address.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from flask import request

from marketplace.metadata.identifier import entry_path, path_segment
from marketplace.store.base import Entry
from marketplace.web.params import SEARCH_DEFAULTS, SEARCH_ORDER
from marketplace.web.security import base_url


def absolute(path: str) -> str:
    """A path of this marketplace as an absolute URL, under the context path the request
    came in by (``/marketplace`` for the original clients): for ``Location`` headers."""
    base = base_url()
    root = request.script_root
    return base + ("" if base.endswith(root) else root) + path


def entry_url(entry: Entry) -> str:
    """The stored document of an entry, byte for byte."""
    return entry_path(*entry.key)


def upload_url(identifier: str, email: str, created: str) -> str:
    """Where an upload stands (the ``Location`` of a 202)."""
    return f"/api/v1/uploads/{identifier}/{path_segment(email)}/{created}"


def endorser_url(email: str) -> str:
    return f"/endorsers/{path_segment(email)}"


def tag_url(email: str, tag: str) -> str:
    """The latest entry of an endorser with a tag; the tag is quoted whole (it may hold /)."""
    return f"/tag/{path_segment(email)}/{quote(tag, safe='')}"


def publisher_url(email: str) -> str:
    return f"/publishers/{path_segment(email)}"


def endorser_imagelist_url(base: str, email: str) -> str:
    return f"{base}/imagelists/endorsers/{path_segment(email)}"


def detail_url(entry: Entry, exact: bool = False) -> str:
    """The detail page of an entry: its endorser's latest, or ``exact``ly this one."""
    identifier, email, created = entry.key
    args = {"endorser": email, **({"created": created} if exact else {})}
    return f"/appliances/{identifier}?{urlencode(args, safe='@:')}"


def search_url(values: list[tuple[str, str]] | dict, path: str = "/", **changes) -> str:
    """A URL of the search with some parameters changed (None removes one)."""
    merged = dict(values)
    merged.update(changes)
    kept = [(name, merged[name]) for name in SEARCH_ORDER
            if merged.get(name) not in (None, "")
            and str(merged[name]) != SEARCH_DEFAULTS.get(name)]
    return path + ("?" + urlencode(kept, safe="@:/,") if kept else "")
