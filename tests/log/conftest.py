"""Fixtures of the log tests: a marketplace on a real SQLite file with a log key made by
``init-log``'s function, admin credentials, and helpers that act through its HTTP API and
read the log back as a node would (tiles and bundles over the app's routes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marketplace import config
from marketplace.log import keys
from marketplace.metadata import note, tlog
from marketplace.metadata.logleaf import LogEvent
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories
from tests.moderation.conftest import (  # noqa: F401 (fixtures, for the tests here too)
    admin_files,
    bearer,
    ca_bundle,
    confirming,
    make_app,
    smtp,
)
from tests.server.conftest import moment

PUBLIC_URL = "https://marketplace.test"
ORIGIN = "marketplace.test/log"
SETTINGS = {"public_url": PUBLIC_URL,
            "trusted_hosts": "marketplace.test, localhost"}  # the test client's host
ADMIN = bearer()


@pytest.fixture
def log_settings(admin_files, tmp_path) -> Callable[..., dict[str, str]]:  # noqa: F811
    """``log_settings(**more)``: the overrides of a log app (its data dir is tmp_path/data)."""

    def make(**more: str) -> dict[str, str]:
        return {**SETTINGS, **admin_files, **more}

    return make


@pytest.fixture
def make_log_app(tmp_path, log_settings) -> Iterator[Callable]:
    """``make_log_app(**settings)``: a marketplace with a log key in tmp_path/data (made once;
    several apps on one data dir are several servers of one store)."""
    apps = []
    data = tmp_path / "data"

    def make(**more: str):
        overrides = log_settings(**more)
        if not keys.log_key_path(config.load(str(data), **overrides)).exists():
            keys.init_log(config.load(str(data), **overrides))
        app = create_app(data_dir=str(data), **overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        marketplace_of(app).close()


@pytest.fixture
def log_app(make_log_app):
    return make_log_app()


@pytest.fixture
def client(log_app):
    return log_app.test_client()


def upload(client, document: bytes):
    response = client.post("/metadata", data=document, content_type="application/xml",
                           headers={"Accept": "application/json"})
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response


def publish(client, signer, days_ago: float = 0, **fields) -> tuple[bytes, dict]:
    """Sign and upload a fresh entry; (its document, the upload answer)."""
    document = factories.signed(signer, factories.appliance(**fields), now=moment(days_ago))
    return document, upload(client, document).json


def admin(client, action: str, **body):
    response = client.post(f"/admin/api/{action}", headers=ADMIN, json=body)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.json


def key_of(answer: dict) -> dict[str, str]:
    return {k: answer[k] for k in ("identifier", "email", "created")}


def checkpoint(client, prefix: str = "") -> tuple[str, note.Checkpoint]:
    """The served signed note and its checkpoint, verified with the served key."""
    signed = client.get(f"{prefix}/log/checkpoint").get_data(as_text=True)
    verifier = note.Verifier.parse(client.get(f"{prefix}/log/key").get_data(as_text=True))
    text, _ = note.open_note(signed, [verifier])
    return signed, note.Checkpoint.parse(text)


def leaves(client, size: int) -> list[bytes]:
    """Every leaf of a log of ``size``, read from the served entry bundles."""
    found = []
    for level, index, width in tlog.tiles_for(size):
        if level == 0:
            path = tlog.tile_path(0, index, width, entries=True)
            response = client.get(f"/log/{path}")
            assert response.status_code == 200, path
            found += tlog.read_entry_bundle(response.data)
    return found


def events(client, size: int | None = None) -> list[LogEvent]:
    """The events of the log, as served (its size from the checkpoint unless given)."""
    size = checkpoint(client)[1].size if size is None else size
    return [LogEvent.parse(leaf) for leaf in leaves(client, size)]


def data_dir(app) -> Path:
    return Path(app.config["MARKETPLACE"]["DATA_DIR"])
