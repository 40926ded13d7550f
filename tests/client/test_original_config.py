"""Original StratusLab user configs and options work with our commands.

The original client read ``~/.stratuslab/stratuslab-user.cfg`` with ConfigParser: a
``[default]`` section naming a ``selected_section`` whose keys override it, ``-S`` to
choose another, ``%%`` for a literal ``%``, and the key names ``p12_certificate`` and
``p12_password``. Commands run in-process; HOME is a folder of each test's own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from client import build, sign, upload
from client.config import Settings
from client.marketplace import Client
from tests import pki
from tests.client.test_creator_commands import CONFIG, DESCRIPTION, ENDORSER, run, text

ORIGINAL = """\
[default]
selected_section = lal
endpoint_timeout = 5

[lal]
marketplace_endpoint = https://marketplace.example.org/marketplace
author = LAL %% Team
p12_certificate = {p12}
p12_password = {password}

[other]
author = Other Team
"""


pytestmark = pytest.mark.usefixtures("home")  # tests/client/conftest.py


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "appliance.img"
    path.write_bytes(os.urandom(4096))
    return path


@pytest.fixture
def unsigned(capsys, tmp_path, image) -> Path:
    return built(capsys, image, tmp_path / "appliance.xml")


def built(capsys, image: Path, output: Path, *options) -> Path:
    code, _, err = run(capsys, build.main, image, "--output", output, *options)
    assert (code, err) == (0, "")
    return output


def original_config(home: Path, mode: int = 0o600, **values: str) -> Path:
    path = home / CONFIG
    path.parent.mkdir(exist_ok=True)
    path.write_text(ORIGINAL.format(**{"p12": "", "password": "", **values}))
    path.chmod(mode)
    return path


def test_the_selected_section_overrides_default_and_percent_is_undoubled(capsys, tmp_path,
                                                                        home, image):
    original_config(home)
    document = built(capsys, image, tmp_path / "meta.xml")
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "LAL % Team"


@pytest.mark.parametrize("how", ["-S", "--user-config-section", "variable"])
def test_another_section_chosen_by_option_or_variable(how, capsys, tmp_path, home, image,
                                                      monkeypatch):
    original_config(home)
    options = []
    if how == "variable":
        monkeypatch.setenv("STRATUSLAB_USER_CONFIG_SECTION", "other")
    else:
        options = [how, "other"]
    document = built(capsys, image, tmp_path / "meta.xml", *options)
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "Other Team"


def test_a_selected_section_that_is_missing_is_a_clear_error(capsys, home, image):
    path = original_config(home)
    code, out, err = run(capsys, build.main, image, "-S", "nowhere", "-o", "-")
    assert (code, out) == (1, "")
    assert err == (f"error: config file {path} has no section [nowhere] (selected by "
                   "-S/STRATUSLAB_USER_CONFIG_SECTION)\n")


def test_short_config_option(capsys, tmp_path, home, image):
    chosen = tmp_path / "chosen.cfg"
    chosen.write_text("[default]\nselected_section = s\n[s]\nauthor = Short %%c\n")
    document = built(capsys, image, tmp_path / "meta.xml", "-c", chosen)
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "Short %c"


def test_original_p12_keys_sign(capsys, tmp_path, home, unsigned, rsa_signer, monkeypatch):
    """``p12_certificate`` and ``p12_password`` (a password with a doubled %) sign."""
    monkeypatch.delenv("STRATUSLAB_P12_PASSWORD", raising=False)
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12", password=b"50% off")
    original_config(home, p12=str(path), password="50%% off")
    code, _, err = run(capsys, sign.main, unsigned)
    assert (code, err) == (0, "")
    assert text(unsigned, f"{ENDORSER}/slreq:email") == "jane.tester@example.org"


def test_a_password_in_a_config_others_can_read_is_warned_about(capsys, tmp_path, home,
                                                                unsigned, rsa_signer,
                                                                monkeypatch):
    monkeypatch.delenv("STRATUSLAB_P12_PASSWORD", raising=False)
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    config = original_config(home, mode=0o644, p12=str(path), password=pki.PASSWORD.decode())
    code, _, err = run(capsys, sign.main, unsigned)
    assert code == 0
    assert err == (f"warning: {config} holds a password and other users can read it: "
                   "chmod 600 it\n")


def test_the_original_certificate_variable(capsys, tmp_path, home, unsigned, rsa_signer,
                                           monkeypatch):
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    monkeypatch.setenv("STRATUSLAB_P12_CERTIFICATE", str(path))
    monkeypatch.setenv("STRATUSLAB_P12_PASSWORD", pki.PASSWORD.decode())
    code, _, err = run(capsys, sign.main, unsigned)
    assert (code, err) == (0, "")


def test_verbose_says_which_settings_file_was_read(capsys, tmp_path, home, image):
    path = original_config(home)
    code, _, err = run(capsys, build.main, image, "-v", "-o", tmp_path / "m.xml")
    assert code == 0
    assert f"settings file {path}: " in err


def test_an_original_endpoint_with_its_context_path_is_read_from_the_section(home):
    original_config(home)
    options = upload.build_parser().parse_args([os.devnull])
    assert Client.from_settings(Settings(options)).endpoint == \
        "https://marketplace.example.org/marketplace/"
