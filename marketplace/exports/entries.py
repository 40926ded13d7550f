"""Every entry a search matches, read from the index page by page (its JSON summaries, never
the signed XML), for the exports that list them all."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from marketplace.store.base import Query, Store

PAGE = 1000


def all_matching(store: Store, query: Query) -> Iterator[dict]:
    """The summaries (``Entry.as_dict``) of every entry ``query`` matches, in its order, with
    the endorser's email added; its own limit and offset are ignored."""
    offset = 0
    while True:
        page = store.search(dataclasses.replace(query, limit=PAGE, offset=offset, facets=False))
        for entry in page.entries:
            yield {**entry.as_dict(), "email": entry.email}
        offset += len(page.entries)
        if not page.entries or offset >= page.total:
            return


def web_location(summary: dict) -> str | None:
    """The first location a subscriber can download (not a ``pdisk:`` one)."""
    return next((u for u in summary.get("locations") or [] if not u.startswith("pdisk:")), None)
