"""The one settings mechanism: precedence, environment, INI files, secrets from files."""

from __future__ import annotations

import pytest

from marketplace import config as server_config
from marketplace.metadata.settings import (
    ConfigError,
    from_environment,
    layered,
    read_ini,
    read_secret,
    section,
)


def test_later_layers_win_and_none_is_not_set():
    assert layered({"a": "1", "b": "1"}, {"a": "2", "b": None}, {"c": "3"}) == \
        {"a": "2", "b": "1", "c": "3"}


def test_only_the_programs_own_variables_are_taken():
    environ = {"MARKETPLACE_STORE": "sqlite", "MARKETPLACE_NOPE": "x", "STORE": "y"}
    assert from_environment(environ, "MARKETPLACE_", ["STORE", "TITLE"]) == {"STORE": "sqlite"}


def test_later_files_override_earlier_ones_and_missing_ones_are_skipped(tmp_path):
    (tmp_path / "a.cfg").write_text("[s]\nkey = a\nother = a\n")
    (tmp_path / "b.cfg").write_text("[s]\nkey = b\n")
    parser = read_ini(tmp_path / "a.cfg", tmp_path / "absent.cfg", tmp_path / "b.cfg")
    assert section(parser, "s") == {"key": "b", "other": "a"}
    assert section(parser, "none") == {}


def test_a_broken_file_is_an_error_naming_it(tmp_path):
    broken = tmp_path / "broken.cfg"
    broken.write_text("key without section\n")
    with pytest.raises(ConfigError, match=r"broken\.cfg"):
        read_ini(broken)


def test_a_secret_comes_from_its_file_without_the_line_end(tmp_path):
    file = tmp_path / "secret"
    file.write_text(" pass word \n")
    assert read_secret("PASSWORD", "", str(file)) == " pass word "
    assert read_secret("PASSWORD", "given", str(file)) == "given"
    assert read_secret("PASSWORD", "", "") is None


def test_a_missing_secret_file_names_the_setting_not_a_secret(tmp_path):
    with pytest.raises(ConfigError, match=r"SMTP_PASSWORD from .*absent: No such file"):
        read_secret("SMTP_PASSWORD", "", str(tmp_path / "absent"))


def test_the_server_reads_its_file_then_the_environment(tmp_path):
    (tmp_path / "marketplace.cfg").write_text("[marketplace]\ntitle = From file\nstore = x\n")
    values = server_config.load(str(tmp_path), environ={"MARKETPLACE_STORE": "sqlite"})
    assert (values["TITLE"], values["STORE"], values["DATA_DIR"]) == \
        ("From file", "sqlite", str(tmp_path))


def test_the_server_refuses_an_unknown_key_in_its_file(tmp_path):
    (tmp_path / "marketplace.cfg").write_text("[marketplace]\ntitel = typo\n")
    with pytest.raises(ConfigError, match="unknown marketplace settings: TITEL"):
        server_config.load(str(tmp_path), environ={})
