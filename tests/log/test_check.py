"""check-log: a row deleted or altered by hand in the SQLite file -- change feed, audit log,
documents, tombstones, blocks -- or a leaf altered, is found and named, by
``stratus-marketplace check-log`` (exit status 1, one line each) and by ``/healthz`` after
the check a server runs when it starts."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

import pytest

from marketplace import cli
from marketplace.log.check import check_log
from marketplace.store.base import Entry
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests.log.conftest import SETTINGS, admin, data_dir, key_of, publish
from tests.moderation.conftest import signed


@pytest.fixture
def history(log_app, client, rsa_signer, ec_signer):
    """A store with a history: two entries published, one removed (its tombstone), an
    endorser blocked; (its data dir, the kept entry's key, the removed one's)."""
    _, kept = publish(client, rsa_signer, days_ago=1)
    _, removed = publish(client, ec_signer)
    admin(client, "remove", **key_of(removed), reason="malware")
    admin(client, "block", endorser="mallory@example.org", reason="spam")
    folder = data_dir(log_app)
    marketplace_of(log_app).close()
    return folder, tuple(key_of(kept).values()), tuple(key_of(removed).values())


def edit(folder, sql: str, *args) -> None:
    """What an operator (or an intruder) with the database file can do: statements
    separated by ``;``, each changing one row."""
    with closing(sqlite3.connect(folder / "marketplace.db")) as db, db:
        for statement in sql.split(";"):
            assert db.execute(statement, args[:statement.count("?")]).rowcount == 1, \
                statement


EDITS = {
    "feed row deleted": ("DELETE FROM changes WHERE identifier=? AND action='publish'",
                         "kept", "leaf 0 (publish"),
    "feed row altered": ("UPDATE changes SET at='2020-01-01T00:00:00Z' WHERE identifier=?",
                         "kept", "is not what leaf 0 says"),
    "audit row deleted": ("DELETE FROM audit WHERE action='removed' AND identifier=?",
                          "removed", "(removed"),
    "audit row altered": ("UPDATE audit SET reason='nothing much' WHERE action='blocked'",
                          None, "is not what leaf 3 says: its reason differs"),
    "audit time altered": ("UPDATE audit SET at='2020-01-01T00:00:00Z', actor='nobody' "
                           "WHERE action='removed'", None, "its time and actor differ"),
    "document altered": ("UPDATE documents SET document=CAST(document || x'0a' AS BLOB) "
                         "WHERE identifier=?", "kept", "SHA-256 differs"),
    # the document and its index row (a document row alone leaves a listing that breaks)
    "entry deleted": ("DELETE FROM documents WHERE identifier=?; DELETE FROM entries WHERE "
                      "identifier=?", "kept", "which the store does not hold"),
    "tombstone deleted": ("DELETE FROM tombstones WHERE identifier=?", "removed",
                          "which has no tombstone"),
    "tombstone added": ("INSERT INTO tombstones SELECT identifier, email, created, "
                        "'removed-by-operator', created, 'ops', 'x' FROM documents "
                        "WHERE identifier=?", "kept", "has no removal leaf"),
    "block deleted": ("DELETE FROM blocked WHERE endorser='mallory@example.org'", None,
                      "blocked mallory@example.org, who is not blocked"),
    "leaf altered": ("UPDATE log_leaves SET leaf=CAST(replace(leaf, '\"removed\"', "
                     "'\"lifted\"') AS BLOB) WHERE event='removed'", None,
                     "is not the one its leaves give"),
}


def run_check(folder, capsys) -> tuple[int, list[str]]:
    status = cli.main(["check-log", "--data-dir", str(folder)])
    return status, capsys.readouterr().out.splitlines()


def test_an_untouched_store_agrees_with_its_log(history, capsys):
    folder, _, _ = history
    status, lines = run_check(folder, capsys)
    assert status == 0 and lines == ["checked 4 leaves: the store agrees with the log"]


@pytest.mark.parametrize("edited", EDITS)
def test_check_log_names_a_row_edited_by_hand(history, capsys, edited):
    folder, kept, removed = history
    sql, which, expected = EDITS[edited]
    edit(folder, sql, *({"kept": kept, "removed": removed}[which][:1] * 2 if which else ()))
    status, lines = run_check(folder, capsys)
    assert status == 1, lines
    problems = lines[:-1]
    assert problems and any(expected in line for line in problems), problems
    assert lines[-1] == f"checked 4 leaves: {len(problems)} disagreement(s) with the log"


def test_healthz_says_so_after_the_check_a_server_runs_at_start(history, capsys):
    folder, kept, _ = history
    edit(folder, "DELETE FROM changes WHERE identifier=?", kept[0])
    settings = cli.settings_for(cli.build_parser().parse_args(
        ["check-log", "--data-dir", str(folder)]))
    assert not cli.log_check(settings).ok  # what `serve` runs before its workers start
    app = create_app(data_dir=str(folder), **SETTINGS)
    try:
        health = app.test_client().get("/healthz")
    finally:
        marketplace_of(app).close()
    assert health.status_code == 503
    assert health.json["status"] == "log-mismatch" and health.json["store"] is True
    assert health.json["log"]["ok"] is False and health.json["log"]["problem_count"] == 1
    assert "has no change in the feed" in health.json["log"]["problems"][0]


def test_check_log_speaks_json(history, capsys):
    folder, _, removed = history
    edit(folder, "DELETE FROM tombstones WHERE identifier=?", removed[0])
    assert cli.main(["check-log", "--json", "--data-dir", str(folder)]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and answer["log_size"] == 4
    assert answer["problem_count"] == len(answer["problems"]) == 1


def test_a_full_tile_level_is_recomputed_too(log_app):
    from tests.log.test_served import block_many
    block_many(log_app, 256)
    store = marketplace_of(log_app).store
    assert check_log(store).ok
    with closing(sqlite3.connect(data_dir(log_app) / "marketplace.db")) as db, db:
        db.execute("UPDATE log_hashes SET hash=zeroblob(32) WHERE level=1 AND position=0")
    problems = check_log(store).problems
    assert problems == ["the stored hash 0 of tile level 1 is not the one its leaves give"]


def test_a_store_migrated_from_before_the_log_agrees_with_it(tmp_path, rsa_signer,
                                                             monkeypatch, capsys):
    """The log starts where a migrated history starts: its summary leaves are not taken
    for rows missing, and what comes after is checked as usual."""
    from tests.moderation.test_migration import OldDataDir
    monkeypatch.setenv("MARKETPLACE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MARKETPLACE_MODERATION_DB", raising=False)
    old = OldDataDir(tmp_path, rsa_signer)
    assert old.init_store() == 0
    capsys.readouterr()
    store = old.store()
    try:
        store.state.publish(Entry.from_document(signed(rsa_signer, title="new")),
                            datetime.now(UTC))
    finally:
        store.close()
    status, lines = run_check(tmp_path, capsys)
    assert status == 0, lines
    assert lines == ["checked 5 leaves: the store agrees with the log"]
    edit(tmp_path, "DELETE FROM changes WHERE serial=5")  # the first after the history
    status, lines = run_check(tmp_path, capsys)
    assert status == 1 and "leaf 4 (publish" in lines[0], lines
