"""A replica witnesses its primary's log (issue 15, "Witnesses"): with a witness key, each
pull verifies the primary's checkpoint with the primary's configured key, checks it extends
the last one it cosigned (consistency proof from the primary's tiles), cosigns, and hands
the cosignature to the primary, which serves it with that checkpoint. A checkpoint that does
not extend it -- a fork, a rollback -- is refused, never cosigned, and both notes are kept.
The primary is a real server (gunicorn); the replica pulls in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from marketplace import cli, config
from marketplace.log import keys
from marketplace.log.witness import LAST_MARK, Witness
from marketplace.metadata import note
from marketplace.replica import Replicator
from marketplace.service import Marketplace, open_store
from tests.live.conftest import LiveServer
from tests.moderation.conftest import signed
from tests.moderation.test_replica import configure, publish

PRIMARY = "primary.test/log"


@pytest.fixture
def witness_dir(tmp_path) -> tuple:
    """The replica's data dir with its witness key; (dir, the witness's signer)."""
    folder = configure(tmp_path / "replica", public_url="https://replica.test",
                       replica_witness_key=str(tmp_path / "replica" / "witness-key"))
    return folder, keys.init_witness(config.load(str(folder)))


@pytest.fixture
def primary(tmp_path, admin_files, witness_dir):
    """A live primary with a log key, listing the replica's witness key."""
    folder = configure(tmp_path / "primary", admin_token_file=admin_files["admin_token_file"],
                       public_url="https://primary.test", trusted_hosts="127.0.0.1",
                       log_witnesses=witness_dir[1].verifier.vkey())
    signer = keys.init_log(config.load(str(folder)))
    server = LiveServer(folder, tmp_path)
    server.start()
    server.signer = signer
    yield server
    server.stop()


@pytest.fixture
def replicator(primary, witness_dir):
    folder, _ = witness_dir
    settings = config.load(str(folder), primary_url=primary.url,
                           replica_log_key=primary.signer.verifier.vkey())
    market = Marketplace.from_settings(settings, open_store(settings))
    yield Replicator(primary.url, market, witness=Witness.from_settings(settings,
                                                                       market.store.state))
    market.close()


def served_cosigners(primary, witness: note.Signer) -> list[int]:
    """The timestamps of the witness's cosignatures the primary serves (none: [])."""
    checkpoint = primary.get("log/checkpoint").text
    try:
        return [s.timestamp for s in note.open_note(checkpoint, [witness.verifier])[1]]
    except note.NoteError:
        return []


def test_each_pull_cosigns_a_checkpoint_that_extends_the_last(primary, replicator,
                                                              witness_dir, rsa_signer):
    _, witness = witness_dir
    publish(primary, signed(rsa_signer, days_ago=1))
    report = replicator.pull()
    assert report.added == 1
    assert report.witness == {"cosigned": True, "size": 1, "posted": "200"}
    assert len(served_cosigners(primary, witness)) == 1
    publish(primary, signed(rsa_signer, title="second"))
    assert replicator.pull().witness["size"] == 2  # consistent with 1: checked, cosigned
    assert len(served_cosigners(primary, witness)) == 1
    state = replicator.marketplace.store.state
    kept = note.Checkpoint.parse(note.split(state.mark(LAST_MARK.format(origin=PRIMARY)))[0])
    assert kept.size == 2


@pytest.mark.parametrize("seen", ["fork", "rollback"])
def test_a_checkpoint_that_does_not_extend_the_cosigned_one_is_refused(
        primary, replicator, witness_dir, rsa_signer, seen, monkeypatch, tmp_path):
    """What the witness cosigned before is replaced by another tree the primary's key
    signed (a fork shown to this witness earlier, or a larger tree since rolled back)."""
    folder, witness = witness_dir
    publish(primary, signed(rsa_signer, days_ago=1))
    publish(primary, signed(rsa_signer, title="second"))
    size = {"fork": 1, "rollback": 5}[seen]
    other = note.sign(note.Checkpoint(PRIMARY, size, b"\x07" * 32, ("time 1",)).text(),
                      primary.signer)
    state = replicator.marketplace.store.state
    state.set_mark(LAST_MARK.format(origin=PRIMARY), other)
    report = replicator.pull()
    assert report.witness["cosigned"] is False
    assert {"fork": "does not extend", "rollback": "shrank"}[seen] in report.witness["error"]
    evidence = report.witness["evidence"]
    kept = Path(evidence).read_text()
    assert other in kept and primary.get("log/checkpoint").text.split("\n\n")[0] in kept
    assert state.mark(LAST_MARK.format(origin=PRIMARY)) == other  # never moved on
    assert served_cosigners(primary, witness) == []
    replicator.marketplace.close()
    # the command says so with a status of its own
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(folder))
    configure(folder, public_url="https://replica.test", primary_url=primary.url,
              replica_witness_key=str(folder / "witness-key"),
              replica_log_key=primary.signer.verifier.vkey())
    assert cli.main(["replicate", "--once", "-q", "--data-dir", str(folder)]) == cli.SPLIT_VIEW


def test_a_checkpoint_not_signed_by_the_configured_key_is_not_cosigned(primary, witness_dir,
                                                                        rsa_signer):
    folder, witness = witness_dir
    publish(primary, signed(rsa_signer))
    impostor = note.Signer.generate(PRIMARY)
    settings = config.load(str(folder), primary_url=primary.url,
                           replica_log_key=impostor.verifier.vkey())
    market = Marketplace.from_settings(settings, open_store(settings))
    try:
        replicator = Replicator(primary.url, market, witness=Witness.from_settings(
            settings, market.store.state))
        report = replicator.pull()
    finally:
        market.close()
    assert report.witness["cosigned"] is False
    assert "does not verify" in report.witness["error"] and "evidence" not in report.witness
    assert served_cosigners(primary, witness) == []


def test_the_primary_refuses_a_witness_it_does_not_list(primary, rsa_signer):
    publish(primary, signed(rsa_signer))
    text = note.split(primary.get("log/checkpoint").text)[0]
    stranger = note.Signer.generate("stranger.test/witness", note.COSIGNATURE)
    answer = requests.post(primary.url + "log/cosignature", timeout=30,
                           data=note.sign(text, stranger, timestamp=1_800_000_000))
    assert answer.status_code == 403
