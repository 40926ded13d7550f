"""The whole catalogue without ``limit`` (issue 12, point 6) costs the live server about a
page of memory, not the catalogue's size.

A worker of the real server (gunicorn, one worker so the request lands where it is measured)
serves a catalogue many pages long; its peak resident size (``VmHWM``) is read after a few
full pages have been served (so a page's cost is already in the peak) and again after the
whole listing, read by the client a chunk at a time. A listing built in memory holds at
least its whole body (it grew the worker by twice that when tried); a streamed one, about a
page.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from marketplace.metadata.vocabulary import MAX_LIMIT
from marketplace.store.base import Entry
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories
from tests.live.conftest import LiveServer
from tests.server.test_amplification import peak_kb, workers_of

PAGES = 24
CHUNK = 64 * 1024
WARM_UP = 4  # full pages served first, one per thread of the worker (serve's default)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, ec_signer):
    """A SQLite store of ``PAGES`` pages of entries (published through the state directly,
    with their feed rows and log leaves: the signatures are real, uploading each would only
    slow the test)."""
    root = tmp_path_factory.mktemp("streamed")
    app = create_app(data_dir=str(root / "data"))
    state = marketplace_of(app).store.state
    for index in range(PAGES * MAX_LIMIT):
        state.publish(Entry.from_document(factories.signed(
            ec_signer, factories.appliance(title=f"entry {index}"))), datetime.now(UTC))
    marketplace_of(app).close()
    return root


@pytest.fixture
def server(catalogue):
    """A live marketplace on the catalogue, started for each test: a fresh worker, whose
    peak no earlier test raised."""
    live = LiveServer(catalogue / "data", catalogue, workers=1)
    live.start()
    yield live
    live.stop()


def received(url: str, **params) -> int:
    """The size of the answer, read a chunk at a time (the client holds no more)."""
    with requests.get(url, params=params, stream=True, timeout=300) as answer:
        assert answer.status_code == 200, answer.text[:500]
        return sum(len(chunk) for chunk in answer.iter_content(CHUNK))


@pytest.mark.parametrize("media", ["xml", "json"])
def test_the_whole_catalogue_costs_about_a_page_of_memory(server, media):
    pages = [received(server.url + "metadata", media=media, limit=MAX_LIMIT)
             for _ in range(WARM_UP)]
    (worker,) = workers_of(server)
    before = peak_kb(worker)
    whole = received(server.url + "metadata", media=media)
    assert whole > (PAGES - 1) * pages[0]
    assert workers_of(server) == [worker], "the worker was replaced"
    growth = peak_kb(worker) - before
    assert growth * 1024 < whole / 2, (
        f"the worker grew by {growth} kB serving {whole // 1024} kB ({media})")
