"""The log as served (C2SP tlog-tiles): tiles and bundles immutable and 404 beyond the
tree, the checkpoint signed by the served key with its time line, re-signed after
LOG_RESIGN, the same from every server of one store and never smaller; witnesses'
cosignatures accepted only from listed keys and for the served text."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from marketplace.log.served import COSIGNATURE_MARK
from marketplace.metadata import note, tlog
from marketplace.store.state import Event
from marketplace.web.current import marketplace_of
from tests.log.conftest import ORIGIN, checkpoint, leaves, publish

IMMUTABLE = "public, max-age=31536000, immutable"


def block_many(app, count: int) -> None:
    """``count`` blocked leaves, straight through the state (uploads would only be slower)."""
    state = marketplace_of(app).store.state
    for n in range(count):
        state.block(f"spammer{n}@example.org", "email",
                    Event("ops", "blocked", "spam", f"spammer{n}@example.org"),
                    datetime.now(UTC))


def test_tiles_and_bundles_are_served_once_and_never_change(log_app, client, rsa_signer):
    publish(client, rsa_signer, days_ago=1)
    publish(client, rsa_signer)
    hashes = [tlog.leaf_hash(leaf) for leaf in leaves(client, 2)]
    tile = client.get("/log/tile/0/000.p/2")
    assert tile.status_code == 200 and tile.data == b"".join(hashes)
    assert tile.mimetype == "application/octet-stream"
    assert tile.headers["Cache-Control"] == IMMUTABLE
    bundle = client.get("/log/tile/entries/000.p/2").data
    for beyond in ("/log/tile/0/000.p/3", "/log/tile/0/000", "/log/tile/entries/000.p/3",
                   "/log/tile/1/000.p/1", "/log/tile/0/001.p/1"):
        assert client.get(beyond).status_code == 404, beyond
    for bad in ("/log/tile/0/0", "/log/tile/0/000.p/0", "/log/tile/0/000.p/256",
                "/log/tile/x/000", "/log/tile/0/x000/001"):
        answer = client.get(bad)
        assert answer.status_code == 404 and "not a tile" in answer.json["error"], bad
    publish(client, rsa_signer, title="third")
    assert client.get("/log/tile/0/000.p/2").data == tile.data
    assert client.get("/log/tile/entries/000.p/2").data == bundle
    assert client.get("/marketplace/log/tile/0/000.p/2").data == tile.data


def test_a_full_tile_has_its_hash_one_level_up(log_app, client):
    block_many(log_app, 257)
    level0 = client.get("/log/tile/0/000").data
    assert len(level0) == 256 * 32
    assert client.get("/log/tile/0/001.p/1").status_code == 200
    level1 = client.get("/log/tile/1/000.p/1")
    assert level1.data == tlog.root_of([level0[i:i + 32] for i in range(0, len(level0), 32)])
    assert len(tlog.read_entry_bundle(client.get("/log/tile/entries/000").data)) == 256
    _, served = checkpoint(client)
    reader = tlog.HashReader(served.size, lambda level, index, width: client.get(
        f"/log/{tlog.tile_path(level, index, width)}").data)
    assert reader.root() == served.root


def test_the_checkpoint_is_signed_with_the_served_key(client, rsa_signer):
    publish(client, rsa_signer)
    response = client.get("/log/checkpoint")
    assert response.mimetype == "text/plain" and "no-cache" in response.headers["Cache-Control"]
    signed, served = checkpoint(client)
    assert served.origin == ORIGIN and served.size == 1
    assert served.root == tlog.root_of([tlog.leaf_hash(leaf) for leaf in leaves(client, 1)])
    assert abs(served.time - datetime.now(UTC).timestamp()) < 3600
    assert served.extensions == (f"time {served.time}",)
    vkey = client.get("/log/key").get_data(as_text=True).strip()
    assert vkey.startswith(ORIGIN + "+")
    assert client.get("/marketplace/log/checkpoint").get_data(as_text=True) == signed


def test_the_checkpoint_is_signed_again_after_log_resign(make_log_app):
    app = make_log_app(log_resign="600")
    client = app.test_client()
    log = app.extensions["log"]
    now = datetime.now(UTC).timestamp()
    log.clock = lambda: now
    first = client.get("/log/checkpoint").get_data(as_text=True)
    log.clock = lambda: now + 599
    assert client.get("/log/checkpoint").get_data(as_text=True) == first
    log.clock = lambda: now + 601
    second, served = checkpoint(client)
    assert second != first and served.time == int(now + 601) and served.size == 0


def test_every_server_of_one_store_serves_the_same_and_never_a_smaller_tree(make_log_app,
                                                                            rsa_signer):
    one, other = make_log_app(), make_log_app()
    first = one.test_client()
    signed, _ = checkpoint(first)
    assert checkpoint(other.test_client())[0] == signed
    publish(other.test_client(), rsa_signer)
    block_many(one, 3)
    sizes = [checkpoint(app.test_client())[1].size for app in (one, other, one, other)]
    assert sizes == [4, 4, 4, 4]
    assert checkpoint(first)[0] == checkpoint(other.test_client())[0]


def test_without_a_key_the_log_says_how_to_make_one(tmp_path, rsa_signer):
    from marketplace.web.app import create_app
    app = create_app(data_dir=str(tmp_path / "keyless"))
    try:
        client = app.test_client()
        answer = client.get("/log/checkpoint")
        assert answer.status_code == 503 and "init-log" in answer.json["error"]
        assert client.get("/log/key").status_code == 503
        assert client.get("/log/tile/0/000.p/1").status_code == 404  # the log is empty
    finally:
        marketplace_of(app).close()


# --- witnesses ---


@pytest.fixture
def witness() -> note.Signer:
    return note.Signer.generate("replica.test/witness", note.COSIGNATURE)


def cosign(text: str, signer: note.Signer, at: int | None = None) -> str:
    return note.sign(text, signer, timestamp=at or int(datetime.now(UTC).timestamp()))


def test_a_listed_witness_cosignature_is_served_with_the_checkpoint(make_log_app, witness,
                                                                     rsa_signer):
    app = make_log_app(log_witnesses=witness.verifier.vkey())
    client = app.test_client()
    publish(client, rsa_signer)
    signed, served = checkpoint(client)
    text = served.text()
    answer = client.post("/log/cosignature", data=cosign(text, witness),
                         content_type="text/plain")
    assert answer.status_code == 200 and answer.json == {"kept": ["replica.test/witness"]}
    carried = client.get("/log/checkpoint").get_data(as_text=True)
    assert carried.startswith(signed) and carried != signed
    _, signatures = note.open_note(carried, [witness.verifier])
    assert [s.name for s in signatures] == ["replica.test/witness"]
    log_key = note.Verifier.parse(client.get("/log/key").get_data(as_text=True))
    note.open_note(carried, [log_key])  # the log's own signature still checks


@pytest.mark.parametrize("attempt, status", [
    ("unlisted", 403), ("forged", 403), ("other-text", 409), ("garbage", 400)])
def test_a_cosignature_is_refused_unless_listed_and_of_the_served_text(
        make_log_app, witness, rsa_signer, attempt, status):
    app = make_log_app(log_witnesses=witness.verifier.vkey())
    client = app.test_client()
    publish(client, rsa_signer)
    _, served = checkpoint(client)
    text = served.text()
    body = {
        "unlisted": lambda: cosign(text, note.Signer.generate("replica.test/witness",
                                                              note.COSIGNATURE)),
        "forged": lambda: forge(cosign(text, witness)),
        "other-text": lambda: cosign(note.Checkpoint(served.origin, served.size, b"\0" * 32,
                                                     served.extensions).text(), witness),
        "garbage": lambda: "not a note",
    }[attempt]()
    answer = client.post("/log/cosignature", data=body, content_type="text/plain")
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.json["error"]
    assert marketplace_of(app).store.state.mark(
        COSIGNATURE_MARK.format(name=witness.name)) is None
    assert client.get("/log/checkpoint").get_data(as_text=True).count("\u2014") == 1


def forge(cosigned: str) -> str:
    """The cosignature with one bit of its signature flipped."""
    text, lines = note.split(cosigned)
    name, raw = lines[0]
    raw = raw[:-1] + bytes([raw[-1] ^ 1])
    return f"{text}\n\u2014 {name} {base64.b64encode(raw).decode()}\n"


def test_a_cosignature_of_an_older_text_is_not_served_with_the_new_one(make_log_app, witness,
                                                                       rsa_signer):
    app = make_log_app(log_witnesses=witness.verifier.vkey())
    client = app.test_client()
    _, served = checkpoint(client)
    assert client.post("/log/cosignature", data=cosign(served.text(), witness),
                       content_type="text/plain").status_code == 200
    publish(client, rsa_signer)
    carried = client.get("/log/checkpoint").get_data(as_text=True)
    assert carried.count("\u2014") == 1  # the log's signature only: the text is new
    with pytest.raises(note.NoteError):
        note.open_note(carried, [witness.verifier])
