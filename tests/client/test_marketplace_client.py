"""The shared HTTP client: what it says when the marketplace refuses, fails or is away.

A small real HTTP server on 127.0.0.1 plays the marketplace's answers, including the
faults the real one does not produce on demand (an HTML error page, a hang).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from client.config import ConfigError
from client.marketplace import Client, MarketplaceError, problem_line
from marketplace.metadata.identifier import metadata_path
from tests.live.conftest import free_port

PROBLEM = {"element": "Signature", "rule": "signature-value", "message": "does not match"}
ANSWERS = {
    "/metadata": (201, {"Location": "/metadata/ID/a@b.org/2024-01-01T00:00:00Z"}, b""),
    "/replay/metadata": (200, {"Location": "/metadata/ID/a@b.org/2024-01-01T00:00:00Z"}, b""),
    "/refuse/metadata": (400, {"Content-Type": "application/json"},
                         json.dumps({"error": "invalid metadata", "status": 400,
                                     "problems": [PROBLEM]}).encode()),
    "/html/metadata": (413, {"Content-Type": "text/html"},
                       b"<html><body><h1>Request Entity Too Large</h1></body></html>"),
    "/noloc/metadata": (201, {}, b""),
    "/api/v1/appliances": (200, {"Content-Type": "application/json"},
                           b'{"items": [], "total": 0}'),
    "/notjson/api/v1/appliances": (200, {"Content-Type": "text/plain"}, b"hello"),
}


class Handler(BaseHTTPRequestHandler):
    def answer(self) -> None:
        path = self.path.split("?")[0]
        if path.startswith("/slow/"):
            time.sleep(3)
        status, headers, body = ANSWERS.get(path.removeprefix("/slow"),
                                            (404, {}, b"not found"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer()

    do_GET = answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_upload_gives_the_absolute_url_and_whether_it_is_new(fake):
    created = Client(fake).upload(b"<doc/>")
    assert created.url == f"{fake}/metadata/ID/a@b.org/2024-01-01T00:00:00Z"
    assert created.created
    assert not Client(fake + "/replay").upload(b"<doc/>").created


def test_a_refusal_carries_the_servers_problems(fake):
    with pytest.raises(MarketplaceError) as caught:
        Client(fake + "/refuse").upload(b"<doc/>")
    error = caught.value
    assert error.status == 400 and error.problems == [PROBLEM]
    assert "HTTP 400" in str(error) and "invalid metadata" in str(error)
    assert error.lines()[1] == "Signature: does not match [signature-value]"


def test_an_html_error_page_is_reduced_to_its_text(fake):
    with pytest.raises(MarketplaceError, match=r"HTTP 413.*Request Entity Too Large"):
        Client(fake + "/html").upload(b"<doc/>")


def test_an_answer_without_location_or_json_is_an_error(fake):
    with pytest.raises(MarketplaceError, match="without a Location"):
        Client(fake + "/noloc").upload(b"<doc/>")
    with pytest.raises(MarketplaceError, match="not JSON"):
        Client(fake + "/notjson").search({})
    assert Client(fake + "/").search({"os": "x"}) == {"items": [], "total": 0}


def test_nobody_listening_is_reported_with_the_endpoint():
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MarketplaceError, match="cannot reach the marketplace at "
                       f"{endpoint}.*is it running") as caught:
        Client(endpoint).search({})
    assert caught.value.status is None


def test_a_hanging_marketplace_times_out(fake):
    with pytest.raises(MarketplaceError, match=r"no answer .* within 1 s"):
        Client(fake + "/slow", timeout=(1.0, 1.0)).search({})


@pytest.mark.parametrize("endpoint", ["ftp://example.org", "127.0.0.1:8080", ""])
def test_an_endpoint_that_is_not_http_is_a_config_error(endpoint):
    with pytest.raises(ConfigError, match="not an http"):
        Client(endpoint)


def test_paths_quote_their_parts_and_problems_read_plainly():
    assert metadata_path("ID", "a+b@c.org", "2024-01-01T00:00:00Z") == \
        "metadata/ID/a+b@c.org/2024-01-01T00:00:00Z"
    assert problem_line({"message": "m"}) == "m"
    assert problem_line("plain") == "plain"
