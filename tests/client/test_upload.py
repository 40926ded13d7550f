"""stratus-upload-metadata against a real marketplace served on 127.0.0.1: what it says when
an upload is held for its endorser's confirmation, and that each problem is said once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from client import upload
from marketplace.metadata import document, model
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories
from tests.live.conftest import free_port


class Mailbox:
    """Takes every mail; the confirmation mail's content is not what is tested here."""

    def __init__(self):
        self.recipients: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.recipients += envelope.rcpt_tos
        return "250 OK"


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., str]]:
    """``serve(**settings)``: the URL of a marketplace on SQLite with these settings."""
    running = []

    def start(**settings) -> str:
        app = create_app(data_dir=str(tmp_path / f"data{len(running)}"), **settings)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append((app, server))
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for app, server in running:
        server.shutdown()
        server.server_close()
        marketplace_of(app).close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def confirming(serve, mailbox, ca, tmp_path) -> str:
    """A marketplace that holds uploads of unlisted endorsers until they confirm by mail."""
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.certificate_pem())
    whitelist = tmp_path / "whitelist"
    whitelist.write_text("# nobody is published at once\n")
    return serve(trust_store=str(bundle), endorser_whitelist=str(whitelist),
                 unlisted_endorsers="confirm", smtp_host="127.0.0.1",
                 smtp_port=str(mailbox[1]), smtp_from="marketplace@example.org",
                 public_url="http://marketplace.test",
                 trusted_hosts="marketplace.test, 127.0.0.1")


def signed_file(tmp_path, signer, name="entry.xml", **fields):
    path = tmp_path / name
    path.write_bytes(factories.signed(signer, factories.appliance(**fields)))
    return path


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["", "quiet"])
def test_a_held_upload_says_to_check_the_mail_not_already_stored(
        quiet, capsys, confirming, mailbox, rsa_signer, tmp_path):
    """It used to say "already stored, not added again": the publisher never learnt that
    the entry waits for a mailed link."""
    path = signed_file(tmp_path, rsa_signer)
    code = upload.main([str(path), "--marketplace-endpoint", confirming, *quiet])
    out, err = capsys.readouterr()
    assert (code, out) == (0, "")
    assert "already stored" not in err
    assert err.startswith(f"{path}: held until its endorser confirms it: follow the link "
                          "mailed to the endorser's address (where it stands: "
                          "http://marketplace.test/api/v1/uploads/")
    assert mailbox[0].recipients == ["jane.tester@example.org"]


def test_a_held_upload_in_json(capsys, confirming, rsa_signer, tmp_path):
    path = signed_file(tmp_path, rsa_signer)
    assert upload.main([str(path), "--marketplace-endpoint", confirming, "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert (result["ok"], result["pending"], result["new"]) == (True, True, False)
    assert "/api/v1/uploads/" in result["url"]


def test_each_problem_is_printed_once(capsys, serve, tmp_path):
    url = serve()
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_bytes(document.serialize(model.to_document(factories.appliance())))
    assert upload.main([str(unsigned), "--marketplace-endpoint", url]) == 1
    err = capsys.readouterr().err
    assert err.count("the document is not signed") == 1, err
    assert err.startswith(f"error: {unsigned}: the marketplace refused POST ")


def test_a_new_upload_still_prints_its_url(capsys, serve, rsa_signer, tmp_path):
    url = serve()
    path = signed_file(tmp_path, rsa_signer)
    assert upload.main([str(path), "--marketplace-endpoint", url]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{url}metadata/") and err == ""
    assert upload.main([str(path), "--marketplace-endpoint", url]) == 0
    assert capsys.readouterr().err == f"{path}: already stored, not added again\n"
