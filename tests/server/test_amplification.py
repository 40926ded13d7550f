"""Error amplification (issue 11, finding 5) against the live server: a hostile document
within the upload limit gets a small answer and costs a worker little memory.

A 984 KB document of 140,000 empty attributes once made a 35-40 MB error reply (every
problem listed twice) and grew a worker by 750 MB to 1.4 GB. The worker's peak resident
size (``VmHWM`` in ``/proc/<pid>/status``) is read before and after each hostile upload.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from marketplace.metadata.document import MAX_DOCUMENT_BYTES
from tests import factories
from tests.live.conftest import LiveServer

MAX_PROBLEMS = 50
MAX_REPLY = 64 * 1024
MAX_GROWTH_KB = 50 * 1024
EX = 'xmlns:ex="http://example.org/"'


def _foreign(body: str) -> str:
    return f"<ex:n {EX}>{body}</ex:n>"


SHAPES = {
    "empty-attributes": _foreign(
        '<ex:e a="" b="" c="" d="" e="" f="" g="" h="" i="" j=""/>' * 14_000),
    "many-elements": _foreign("<ex:e/>" * 130_000),
    "deep-nesting": _foreign("<ex:e>" * 250 + "</ex:e>" * 250),
    "long-attribute-value": f'<ex:n {EX} ex:v="{"v" * 1_000_000}"/>',
    "many-namespace-declarations": "<ex:n " + " ".join(
        f'xmlns:n{i}="urn:{i}"' for i in range(40_000)) + f" {EX}/>",
    "many-problems-within-the-limits": "".join(f'<dcterms:title b{i}=""/>'
                                               for i in range(4000)),
    "long-invalid-value": "<slterms:serial-number>" + "x" * 1_000_000
                          + "</slterms:serial-number>",
}


def hostile(signed: bytes, fragment: str) -> bytes:
    """``signed`` with ``fragment`` added to its description, cut to the upload limit."""
    document = signed.replace(b"</rdf:Description>", fragment.encode() + b"</rdf:Description>")
    if len(document) > MAX_DOCUMENT_BYTES:
        excess = len(document) - MAX_DOCUMENT_BYTES
        document = document.replace(b"v" * excess, b"", 1).replace(b"x" * excess, b"", 1)
    assert len(document) <= MAX_DOCUMENT_BYTES, len(document)
    return document


def peak_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


def workers_of(server: LiveServer) -> list[int]:
    """The pids of the server's worker processes (children of the gunicorn master)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{server.process.pid}$", text, re.MULTILINE):
            found.append(int(status.parent.name))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One worker, so that every upload lands in the process that is measured."""
    root = tmp_path_factory.mktemp("amplification")
    live = LiveServer(root / "data", root, workers=1)
    live.start()
    yield live
    live.stop()


def upload(server: LiveServer, document: bytes, accept: str = "application/json"):
    return requests.post(server.url + "metadata", data=document, timeout=120,
                         headers={"Content-Type": "application/xml", "Accept": accept})


@pytest.fixture(scope="module")
def warm_worker(server, rsa_signer) -> int:
    """The worker's pid once every thread has validated, refused and stored a document
    (each thread compiles its own XML Schema)."""
    invalid = factories.signed(rsa_signer, factories.appliance(inbound_ports=[70000]))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: upload(server, invalid).status_code, range(16)))
    assert set(answers) == {400}
    assert upload(server, factories.signed(rsa_signer)).status_code == 201
    (worker,) = workers_of(server)
    return worker


@pytest.mark.parametrize("shape", SHAPES)
def test_hostile_upload_gets_a_small_answer_and_costs_little_memory(
        server, warm_worker, rsa_signer, shape):
    document = hostile(factories.signed(rsa_signer), SHAPES[shape])
    before = peak_kb(warm_worker)
    for accept in ("application/json", "application/xml"):
        response = upload(server, document, accept)
        assert response.status_code == 400, response.text[:500]
        assert len(response.content) < MAX_REPLY, (shape, accept, len(response.content))
    problems = response_problems(upload(server, document))
    assert 1 <= len(problems) <= MAX_PROBLEMS + 1
    messages = Counter(p["message"] for p in problems)
    assert all(count == 1 for count in messages.values()), messages.most_common(1)
    assert workers_of(server) == [warm_worker], "the worker was replaced"
    growth = peak_kb(warm_worker) - before
    assert growth < MAX_GROWTH_KB, f"{shape}: the worker grew by {growth // 1024} MB"


def response_problems(response: requests.Response) -> list[dict]:
    assert response.status_code == 400
    return response.json()["problems"]


def test_problems_are_not_listed_twice(server, rsa_signer):
    """The error text names the first problem and counts the others; it does not repeat
    the list that follows it."""
    document = hostile(factories.signed(rsa_signer),
                       SHAPES["many-problems-within-the-limits"])
    body = upload(server, document).json()
    assert len(body["problems"]) == MAX_PROBLEMS + 1
    assert body["problems"][-1]["rule"] == "too-many-problems"
    assert "4000 problems" in body["error"]
    assert body["problems"][0]["message"] in body["error"]
    assert not any(p["message"] in body["error"] for p in body["problems"][1:])
    assert len(body["error"]) < 1000
