"""marketplace/web/openapi.json against the live server (issue 11, finding 14), with Schemathesis.

The real server (gunicorn, ``stratus-marketplace serve``) on a free 127.0.0.1 port, with
admin tokens and one published entry whose key is the document's own example, so that the
example phase reaches the 200 answers. Schemathesis runs every phase with every check,
bounded in examples and time: no 5xx, every status, content type, header and body as
documented, schema-valid requests accepted and schema-violating ones refused.

Two checks do not apply where a schema cannot say what the server decides:
``positive_data_acceptance`` for ``POST /metadata`` (a string is schema-valid, a signed
document is more) and, for the admin API, both input checks: its free-text ``reason`` and
``endorser`` (an email or an RFC 2253 DN) are judged by rules no pattern can write.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from marketplace.log import keys
from marketplace.metadata import model, note
from marketplace.metadata.identifier import identifier_to_sha1
from tests import factories, gpg, pki
from tests.live.conftest import LiveServer, clean_environ, script

MAX_EXAMPLES = 25
RUN_TIMEOUT = 110
REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE_IDENTIFIER = "MMZu9WvwKIro-rtBQfDk4PsKO7_"
EXAMPLE_CREATED = datetime(2026, 1, 1, tzinfo=UTC)

CONFIG = """\
hooks = "tests.server.schemathesis_hooks"

[checks]
enabled = true
# A request line past gunicorn's limit is refused by gunicorn itself, with 414.
negative_data_rejection.expected-statuses = [
    "400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", "429"]

[generation]
max-examples = {max_examples}

[[operations]]
include-path = "/metadata"
include-method = "POST"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path-regex = "^/admin/api/"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, rsa_signer):
    """A live marketplace with every export signed (S/MIME and GPG keys) and a log key, so
    that no route answers 503 for a setting left out."""
    root = tmp_path_factory.mktemp("schemathesis")
    token = secrets.token_urlsafe(24)
    (root / "tokens").write_text(f"schemathesis:{token}\n")
    data = root / "data"
    data.mkdir()
    key, certificate = pki.write_pem(rsa_signer, root, "lists")
    keys.create(root / "log-key", note.Signer.generate("schemathesis.test/log"))
    with gpg.signing_home("Marketplace Streams <streams@example.org>") as (home, fpr, _):
        (data / "marketplace.cfg").write_text(
            f"[marketplace]\nADMIN_TOKEN_FILE = {root / 'tokens'}\n"
            f"IMAGELIST_CERTIFICATE = {certificate}\nIMAGELIST_KEY = {key}\n"
            f"GPG_HOME = {home}\nGPG_KEY = {fpr}\nLOG_KEY = {root / 'log-key'}\n")
        live = LiveServer(data, root)
        live.start()
        publish_the_example_entry(live, rsa_signer)
        yield live, token
        live.stop()


def publish_the_example_entry(live: LiveServer, signer) -> None:
    """The entry the document's examples name: its identifier, Jane's email, its date."""
    entry = factories.appliance(tag="latest")
    entry = model.Appliance(**{**entry.__dict__, "identifier": EXAMPLE_IDENTIFIER,
                               "checksums": {"SHA-1": identifier_to_sha1(EXAMPLE_IDENTIFIER)},
                               "extra": []})
    document = factories.signed(signer, entry, now=EXAMPLE_CREATED)
    response = requests.post(live.url + "metadata", data=document, timeout=30,
                             headers={"Content-Type": "application/xml",
                                      "Accept": "application/json"})
    assert response.status_code == 201, response.text


def test_the_api_keeps_its_openapi_document(server, tmp_path):
    live, token = server
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(max_examples=MAX_EXAMPLES))
    run = subprocess.run(
        [script("schemathesis"), "--config-file", str(config), "run",
         live.url + "openapi.json", "--workers", "1", "--no-color",
         "--seed", "11", "--header", f"Authorization: Bearer {token}"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL,
        cwd=tmp_path, env=clean_environ(HOME=str(tmp_path), PYTHONPATH=python_path()))
    report = run.stdout[-12000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    assert selected and selected[1] == selected[2], report
    assert f"Tested: {selected[1]}" in run.stdout, report


def python_path() -> str:
    """This checkout first, so that the CLI imports the hooks module of these tests."""
    return os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
