"""stratus-marketplace without serving: help, init-store, reindex, the demo data set."""

from __future__ import annotations

import stat

import pytest

from marketplace import cli, config, demo
from marketplace.metadata.checks import check_document
from marketplace.service import open_store
from marketplace.store.base import Query


def test_help_documents_every_setting(capsys):
    for argv in (["--help"], ["serve", "--help"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0
        text = capsys.readouterr().out
        for setting in config.SETTINGS:
            assert f"MARKETPLACE_{setting.key}" in text
    assert "--workers" in text and "--debug" in text and "--data-dir" in text


def test_init_store_then_reindex_an_empty_store(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MARKETPLACE_DATA_DIR", raising=False)
    assert cli.main(["init-store", "--data-dir", str(tmp_path / "d")]) == 0
    assert "0 entries" in capsys.readouterr().out
    assert (tmp_path / "d" / "marketplace.db").exists()
    assert cli.main(["reindex", "--data-dir", str(tmp_path / "d")]) == 0
    assert "reindexed 0 entries" in capsys.readouterr().out


def test_a_bad_setting_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MARKETPLACE_STORE", "paper")
    assert cli.main(["init-store", "--data-dir", str(tmp_path)]) == 1
    assert "unknown store" in capsys.readouterr().err


def test_the_demo_data_set_is_signed_varied_and_added_once(tmp_path):
    settings = config.load(str(tmp_path), environ={})
    assert demo.populate(settings) == len(demo.SAMPLES)
    assert demo.populate(settings) == 0

    store = open_store(settings)
    try:
        page = store.search(Query(status="all", limit=100, facets=True))
    finally:
        store.close()
    assert page.total == len(demo.SAMPLES)
    assert page.facets["status"] == {"valid": 7, "deprecated": 1, "expired": 1}
    assert len(page.facets["email"]) == 2
    assert all(e.appliance.tag and e.appliance.description and e.appliance.locations
               for e in page.entries)
    for entry in page.entries:
        check_document(entry.document)
    for key in (tmp_path / demo.PKI_DIR).glob("*-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
