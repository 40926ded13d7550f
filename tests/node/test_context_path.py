"""``marketplace_endpoint`` as original users wrote it, with the war's context path
(``https://host/marketplace``), works with every command (issue 12, 6, client side).

Decision: the client keeps the path and calls ``<endpoint>/metadata...``, exactly as the
original client did (``'%s/metadata/%s' % (endpoint, identifier)``). An original
marketplace deployed as a war answers only under its context path, so stripping it would
break every original site; ours will serve the same routes under ``/marketplace/`` too
(after the web layer's move), and a site behind a reverse proxy under a path prefix needs
the path kept anyway.

The marketplace here stands behind a real HTTP server that answers only under
``/marketplace/`` (as an original war did, or ours after the move) and passes each
request on to the live server without that prefix; it records every path asked, so that
the test sees that no command called a route outside the context path.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests import factories
from tests.live.conftest import Commands
from tests.node.conftest import image_bytes, run_command

PREFIX = "/marketplace"


class ContextPath(http.server.ThreadingHTTPServer):
    """Serves ``backend`` under PREFIX only; remembers every path it was asked."""

    daemon_threads = True

    def __init__(self, backend: str):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.backend = backend.rstrip("/")
        self.paths: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{PREFIX}"


class _Forward(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self.server.paths.append(self.path)
        if not self.path.startswith(PREFIX + "/"):
            self.send_error(404, "outside the context path")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("accept", "content-type")}
        answer = requests.request(self.command, self.server.backend + self.path[len(PREFIX):],
                                  data=body, headers=headers, timeout=30,
                                  allow_redirects=False)
        self.send_response(answer.status_code)
        for name in ("Content-Type", "Location"):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args) -> None:
        """Quiet: the test reads the recorded paths instead."""


@pytest.fixture(scope="module")
def behind(marketplace) -> Iterator[ContextPath]:
    """The node tests' marketplace behind the context path."""
    proxy = ContextPath(marketplace.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def only_under_the_context_path(proxy: ContextPath) -> None:
    assert proxy.paths, "no request reached the marketplace"
    assert all(p.startswith(PREFIX + "/") for p in proxy.paths), proxy.paths


@pytest.mark.parametrize("written", ["{}", "{}/"])
def test_upload_search_and_deprecate_keep_the_context_path(behind, marketplace, tmp_path,
                                                           ec_signer, written):
    behind.paths.clear()
    home = tmp_path / "home"
    home.mkdir()
    commands = Commands(written.format(behind.endpoint), home)
    word = f"ctx{time.time_ns()}"
    path = tmp_path / "entry.xml"
    path.write_bytes(factories.signed(ec_signer, factories.appliance(os=word)))
    uploaded = commands.run("stratus-upload-metadata", path)
    assert uploaded.returncode == 0, uploaded.stderr
    searched = commands.run("stratus-search-metadata", "--json", "--os", word)
    assert searched.returncode == 0, searched.stderr
    [item] = json.loads(searched.stdout)["items"]
    identifier = item["identifier"]
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_bytes(ec_signer.key_pem())
    certificate.write_bytes(ec_signer.certificate_pem())
    deprecated = commands.run("stratus-deprecate-metadata", identifier, "--email",
                              "eve.curve@example.org", "--pem-key", key, "--pem-cert",
                              certificate)
    assert deprecated.returncode == 0, deprecated.stderr
    only_under_the_context_path(behind)
    asked = {p.split("?")[0].rstrip("/") for p in behind.paths}
    assert f"{PREFIX}/metadata" in asked and f"{PREFIX}/api/v1/appliances" in asked


def test_download_image_keeps_the_context_path(behind, marketplace, origin, rsa_signer,
                                               write_config, node_settings, tmp_path):
    behind.paths.clear()
    image = image_bytes(40_000, seed=11)
    url = origin.add(f"context-{tmp_path.name}.img", image)
    identifier = marketplace.publish(rsa_signer, image, [url])
    config = write_config(fetcher={**node_settings, "marketplace_endpoint": behind.endpoint})
    output = tmp_path / "out.img"
    done = run_command("stratus-download-image", identifier, "-o", str(output),
                       "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert output.read_bytes() == image
    only_under_the_context_path(behind)
    assert any(p.startswith(f"{PREFIX}/metadata/{identifier}") for p in behind.paths)


def test_the_proxy_really_refuses_what_is_outside_the_context_path(behind):
    port = behind.server_address[1]
    assert requests.get(f"http://127.0.0.1:{port}/metadata", timeout=10).status_code == 404
