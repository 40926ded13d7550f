"""Fixtures of the server tests: an app on each store (a real SQLite file in tmp_path, a real
Elasticsearch), its test client,
and helpers that publish real signed documents through ``POST /metadata``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from marketplace.store.base import Store
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories

JANE = "jane.tester@example.org"
EVE = "eve.curve@example.org"


@pytest.fixture(params=("sqlite", "elasticsearch"))
def app(request, tmp_path):
    """A marketplace on a fresh store of each backend in turn: SQLite in ``tmp_path``, or a
    real Elasticsearch (index prefix of this test's own)."""
    overrides = {}
    if request.param == "elasticsearch":
        cluster = request.getfixturevalue("elasticsearch")
        overrides = cluster.settings(request.getfixturevalue("es_prefix"))
    app = create_app(data_dir=str(tmp_path), **overrides)
    yield app
    marketplace_of(app).store.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def store(app) -> Store:
    return marketplace_of(app).store


def key_of(location: str) -> list[str]:
    """The identifier, email and date of the entry a ``Location`` names (an absolute URL,
    under ``/marketplace`` or not)."""
    return urlsplit(location).path.split("/")[-3:]


def moment(days_ago: float = 0) -> datetime:
    """A whole-second UTC time ``days_ago`` before now."""
    return (datetime.now(UTC) - timedelta(days=days_ago)).replace(microsecond=0)


@pytest.fixture
def post(client) -> Callable:
    """POST bytes to /metadata as ``application/xml`` (or another content type)."""

    def send(document: bytes, content_type: str = "application/xml", **kwargs):
        return client.post("/metadata", data=document, content_type=content_type, **kwargs)

    return send


@pytest.fixture
def publish(post, rsa_signer) -> Callable:
    """Sign an entry (``fields`` override the factory's) and upload it; 201 expected.

    ``image`` fixes the identifier, ``signer`` and ``when`` the endorser and date.
    Returns ``(document, location)``.
    """

    def publish_one(image: bytes | None = None, signer=None, when: datetime | None = None,
                    **fields) -> tuple[bytes, str]:
        document = factories.signed(signer or rsa_signer, factories.appliance(image, **fields),
                                    now=when or moment())
        response = post(document)
        assert response.status_code == 201, response.get_data(as_text=True)
        return document, response.headers["Location"]

    return publish_one
