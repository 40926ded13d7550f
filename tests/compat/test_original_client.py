"""The original StratusLab client's HTTP exchanges, played against the live server.

Each test sends what the original client code sent (its marketplace modules: Uploader,
ManifestDownloader, Deprecator, the image policy check, and the ``/marketplace/metadata``
requests of stratus-list-images, stratus-show-image and stratus-search-image) and reads the
answer the way that code read it, with ``xml.etree`` as it did. The documents are made in
the original tools' shapes (tests/compat/original.py).

The ``/marketplace/`` route tests and the error-text test need server changes of issue 12,
point 6: the routes under ``/marketplace/``, paths read by their shape, and error replies
whose root's text is the message.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from lxml import etree

from marketplace.metadata import model
from tests import factories
from tests.compat import original
from tests.live.conftest import LiveServer

RDF_TAG = f"{{{original.RDF}}}RDF"
# What the original ManifestInfo required of every entry (a missing one is an error there).
REQUIRED = [(original.DCTERMS, "identifier"), (original.SLREQ, "bytes"),
            (original.DCTERMS, "type"), (original.DCTERMS, "created"),
            (original.DCTERMS, "valid"), (original.DCTERMS, "description"),
            (original.DCTERMS, "compression"), (original.SLTERMS, "os"),
            (original.SLTERMS, "os-arch"), (original.SLTERMS, "os-version"),
            (original.SLTERMS, "version")]
XML_HEADERS = {"Content-Type": "application/xml", "Accept": "application/xml"}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("compat")
    live = LiveServer(root / "data", root)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def endpoint(server) -> str:
    """The endpoint as an original user wrote it: no trailing slash."""
    return server.url.rstrip("/")


def entry_of(**fields):
    values = {"description": "", "compression": "", "version": "1.0", **fields}
    return factories.appliance(**values)


def original_document(signer, now: datetime = NOW, **fields) -> tuple[str, bytes]:
    """An entry built with every element the original template wrote, in the order of the
    original marketplace's tag documents, signed as the original signer signed."""
    appliance = entry_of(tag=f"tag-{now:%H%M%S}", **fields)
    root = original.tag_document_order(model.to_document(appliance))
    return appliance.identifier, original.sign(root, signer, "jane@example.org", now)


def upload(endpoint: str, data: bytes) -> requests.Response:
    """The original Uploader: POST <endpoint>/metadata, the document as is."""
    return requests.post(f"{endpoint}/metadata", data=data, headers=XML_HEADERS, timeout=30)


def manifests(body: bytes) -> list[ET.Element]:
    """The original ManifestDownloader._extractManifestInfos: the RDF children."""
    return ET.fromstring(body).findall(RDF_TAG)


def check_required(rdf: ET.Element) -> None:
    """The original ManifestInfo.parseManifestFromXmlTree's required elements."""
    for namespace, name in REQUIRED:
        assert rdf.find(f".//{{{namespace}}}{name}") is not None, name
    assert rdf.findtext(f".//{{{original.SLREQ}}}endorser/{{{original.SLREQ}}}email")


# --- upload --------------------------------------------------------------------------------

def test_the_original_upload_is_created(endpoint, rsa_signer):
    identifier, data = original_document(rsa_signer)
    answer = upload(endpoint, data)
    assert answer.status_code == 201, answer.text
    # The original Uploader then prints the URL it builds itself: it must resolve.
    final = f"{endpoint}/metadata/{identifier}/jane.tester@example.org/" \
            f"{NOW:%Y-%m-%dT%H:%M:%SZ}"
    assert requests.get(final, headers={"Accept": "application/xml"}, timeout=30).ok


def test_the_original_upload_of_a_bad_document_is_refused(endpoint, rsa_signer):
    _, data = original_document(rsa_signer)
    answer = upload(endpoint, data.replace(b"<slreq:bytes>", b"<slreq:bytes>x", 1))
    assert 400 <= answer.status_code < 500


def test_the_original_uploader_prints_the_servers_message(endpoint, rsa_signer):
    """``etree_from_text(ex.content).text``: the root element's text is the message."""
    _, data = original_document(rsa_signer)
    answer = upload(endpoint, data.replace(b"<slreq:bytes>", b"<slreq:bytes>x", 1))
    message = ET.fromstring(answer.content).text or ""
    assert "slreq:bytes" in message


# --- the manifest download and the policy check --------------------------------------------

def test_the_manifest_download_finds_every_required_element(endpoint, rsa_signer):
    identifier, data = original_document(rsa_signer, NOW - timedelta(minutes=2))
    assert upload(endpoint, data).status_code == 201
    answer = requests.get(f"{endpoint}/metadata/{identifier}",
                          headers={"Accept": "application/xml"}, timeout=30)
    assert answer.status_code == 200
    found = manifests(answer.content)
    assert len(found) == 1
    check_required(found[0])
    assert found[0].findtext(f".//{{{original.DCTERMS}}}identifier") == identifier


def test_the_policy_check_reads_every_entry_of_an_image(endpoint, rsa_signer, ec_signer):
    """The original policy check: ``urllib2.urlopen`` (no Accept header) on
    <endpoint>/metadata/<id>, every RDF parsed, then filtered on the endorser's email,
    the checksums and the deprecated and valid dates."""
    appliance = entry_of(image=os.urandom(64))
    identifier = appliance.identifier
    for signer, minutes in ((rsa_signer, 4), (ec_signer, 3)):
        data = original.sign(model.to_document(appliance), signer, "jane@example.org",
                             NOW - timedelta(minutes=minutes))
        assert upload(endpoint, data).status_code == 201
    answer = requests.get(f"{endpoint}/metadata/{identifier}", timeout=30)
    assert answer.status_code == 200
    found = manifests(answer.content)
    assert len(found) == 2
    for rdf in found:
        check_required(rdf)
        sha1 = [c.findtext(f"{{{original.SLREQ}}}value")
                for c in rdf.iter(f"{{{original.SLREQ}}}checksum")
                if c.findtext(f"{{{original.SLREQ}}}algorithm") == "SHA-1"]
        assert sha1 == [appliance.checksums["SHA-1"]]
        assert rdf.find(f".//{{{original.SLTERMS}}}deprecated") is None
    emails = {rdf.findtext(f".//{{{original.SLREQ}}}endorser/{{{original.SLREQ}}}email")
              for rdf in found}
    assert len(emails) == 2


# --- deprecate -----------------------------------------------------------------------------

def test_the_original_deprecator_deprecates(endpoint, rsa_signer):
    identifier, data = original_document(rsa_signer, NOW - timedelta(minutes=10))
    assert upload(endpoint, data).status_code == 201
    # getManifestAsFile(<id>/<email>): Util.wget, no Accept header.
    fetched = requests.get(f"{endpoint}/metadata/{identifier}/jane.tester@example.org",
                           timeout=30)
    assert fetched.status_code == 200
    root = ET.fromstring(fetched.content)
    rdf = root if root.tag == RDF_TAG else root.find(f".//{RDF_TAG}")
    assert rdf is not None
    tree = etree.fromstring(ET.tostring(rdf))
    moment = NOW - timedelta(minutes=1)
    signed = original.sign(original.deprecator_form(tree, "replaced by 2.0"), rsa_signer,
                           "jane@example.org", moment)
    answer = upload(endpoint, signed)
    assert answer.status_code == 201, answer.text
    # The URL the original Uploader prints (metadataCompleteUrl).
    stored = requests.get(f"{endpoint}/metadata/{identifier}/jane.tester@example.org/"
                          f"{moment:%Y-%m-%dT%H:%M:%SZ}", timeout=30)
    assert stored.status_code == 200
    found = [ET.fromstring(stored.content), *manifests(stored.content)]
    assert "replaced by 2.0" in [r.findtext(f".//{{{original.SLTERMS}}}deprecated")
                                 for r in found]


# --- stratus-list-images, stratus-show-image, stratus-search-image ------------------------

@pytest.fixture
def published(endpoint, rsa_signer) -> str:
    identifier, data = original_document(rsa_signer, NOW - timedelta(minutes=20),
                                         os="CentOS")
    assert upload(endpoint, data).status_code == 201
    return identifier


def test_list_images_reads_the_catalogue_under_the_context_path(endpoint, published):
    answer = requests.get(f"{endpoint}/marketplace/metadata",
                          headers={"Accept": "application/xml"}, timeout=30)
    assert answer.status_code == 200
    identifiers = {rdf.findtext(f".//{{{original.DCTERMS}}}identifier")
                   for rdf in manifests(answer.content)}
    assert published in identifiers


def test_show_image_reads_one_image_under_the_context_path(endpoint, published):
    answer = requests.get(f"{endpoint}/marketplace/metadata/{published}",
                          headers={"Accept": "application/xml"}, timeout=30)
    assert answer.status_code == 200
    found = manifests(answer.content)
    assert found and all(r.findtext(f".//{{{original.DCTERMS}}}identifier") == published
                         for r in found)
    check_required(found[0])


def test_search_image_reads_an_endorsers_images_under_the_context_path(endpoint, published):
    answer = requests.get(f"{endpoint}/marketplace/metadata/jane.tester@example.org/",
                          headers={"Accept": "application/xml"}, timeout=30)
    assert answer.status_code == 200
    identifiers = {rdf.findtext(f".//{{{original.DCTERMS}}}identifier")
                   for rdf in manifests(answer.content)}
    assert published in identifiers
