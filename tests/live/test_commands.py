"""The commands against the real server: upload, list, filter, negotiate, deprecate, tag,
endorsers, reindex."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from lxml import etree

from marketplace.metadata import document, model
from marketplace.metadata.checks import check_document
from tests import factories
from tests.live.conftest import Commands

XML_TYPES = ("application/xml", "application/rdf+xml", "text/xml")


def identifier_of(path) -> str:
    return model.from_document(document.parse(path.read_bytes())).identifier


def uploaded_urls(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_upload_prints_the_url_of_each_entry_served_back_byte_identical(
        commands, live_server, ec_signer, write_signed, unique):
    files = [write_signed(ec_signer, f"{n}.xml", os=unique) for n in ("a", "b")]
    urls = uploaded_urls(commands.run("stratus-upload-metadata", *files))
    assert len(urls) == 2
    for path, url in zip(files, urls, strict=True):
        assert url.startswith(live_server.url + "metadata/" + identifier_of(path) +
                              "/eve.curve@example.org/")
        response = live_server.get(url.removeprefix(live_server.url))
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith(XML_TYPES)
        assert response.content == path.read_bytes()


def test_a_replayed_upload_is_not_stored_twice(commands, live_server, ec_signer, write_signed,
                                               unique):
    path = write_signed(ec_signer, "once.xml", os=unique)
    first = uploaded_urls(commands.run("stratus-upload-metadata", path))
    again = commands.run("stratus-upload-metadata", path)
    assert uploaded_urls(again) == first
    assert "already stored" in again.stderr
    assert live_server.search(os=unique)["total"] == 1


def test_each_failure_is_reported_with_the_servers_problems(commands, live_server, ec_signer,
                                                            write_signed, tmp_path, unique):
    good = write_signed(ec_signer, "good.xml", os=unique)
    tampered = write_signed(ec_signer, "tampered.xml", os=unique, title="Original title")
    tampered.write_bytes(tampered.read_bytes().replace(b"Original title", b"Changed title"))
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_bytes(document.serialize(model.to_document(factories.appliance(os=unique))))
    missing = tmp_path / "missing.xml"

    result = commands.run("stratus-upload-metadata", good, tampered, unsigned, missing)

    assert result.returncode == 3, result.stderr
    assert len(result.stdout.split()) == 1
    assert "tampered.xml" in result.stderr and "signature-value" in result.stderr
    assert "unsigned.xml" in result.stderr and "not signed" in result.stderr
    assert "missing.xml" in result.stderr and "cannot read" in result.stderr
    assert live_server.search(os=unique)["total"] == 1


def test_upload_json_gives_one_result_per_file(commands, ec_signer, write_signed, unique):
    good = write_signed(ec_signer, "good.xml", os=unique)
    bad = write_signed(ec_signer, "bad.xml", os=unique, title="Title as signed")
    bad.write_bytes(bad.read_bytes().replace(b"Title as signed", b"Title as edited"))
    result = commands.run("stratus-upload-metadata", "--json", good, bad)
    assert result.returncode == 1
    outcome = {r["file"]: r for r in json.loads(result.stdout)}
    assert outcome[str(good)]["ok"] and outcome[str(good)]["new"]
    assert outcome[str(bad)]["status"] == 400
    assert any(p["rule"] == "signature-value" for p in outcome[str(bad)]["problems"])


def test_an_unreachable_marketplace_is_reported_clearly(tmp_path, ec_signer, write_signed):
    from tests.live.conftest import free_port
    path = write_signed(ec_signer, "x.xml")
    home = tmp_path / "home"
    home.mkdir()
    result = Commands(f"http://127.0.0.1:{free_port()}", home).run(
        "stratus-upload-metadata", path)
    assert result.returncode == 1
    assert "cannot reach the marketplace" in result.stderr


def test_search_filters_and_free_text(commands, ec_signer, rsa_signer, write_signed, unique):
    files = [
        write_signed(ec_signer, "a.xml", os=unique, os_version="1", os_arch="x86_64",
                     title=f"Alpha {unique}x server", tag=f"{unique}-tag"),
        write_signed(ec_signer, "b.xml", os=unique, os_version="2", os_arch="aarch64",
                     title="Beta desktop"),
        write_signed(rsa_signer, "c.xml", os=unique, os_version="2", os_arch="x86_64",
                     title="Gamma server", format="qcow2"),
    ]
    uploaded_urls(commands.run("stratus-upload-metadata", *files))
    a, b, c = map(identifier_of, files)

    def found(*args: str) -> set[str]:
        result = commands.run("stratus-search-metadata", "--json", "--os", unique, *args)
        assert result.returncode == 0, result.stderr
        return {item["identifier"] for item in json.loads(result.stdout)["items"]}

    assert found() == {a, b, c}
    assert found("--arch", "aarch64") == {b}
    assert found("--os-version", "2", "--arch", "x86_64") == {c}
    assert found("--endorser", "jane.tester@example.org") == {c}
    assert found("--format", "qcow2") == {c}
    assert found("--tag", f"{unique}-tag") == {a}
    assert found("server") == {a, c}
    assert found(f"{unique}x") == {a}
    assert found("--status", "deprecated") == set()

    table = commands.run("stratus-search-metadata", "--os", unique, "--arch", "aarch64")
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()
    assert header.split() == ["IDENTIFIER", "OS", "ENDORSER", "CREATED", "STATUS", "TITLE"]
    assert line.split()[:3] == [b, f"{unique}/2/aarch64", "eve.curve@example.org"]
    assert line.split()[4:] == ["valid", "Beta", "desktop"]
    assert "1 of 1 entries" in table.stderr


def test_listing_and_content_negotiation(commands, live_server, ec_signer, write_signed,
                                         unique):
    path = write_signed(ec_signer, "n.xml", os=unique, title=f"Negotiated {unique}")
    identifier = identifier_of(path)
    uploaded_urls(commands.run("stratus-upload-metadata", path))
    listing = f"metadata/{identifier}"

    default = live_server.get(listing)
    assert default.status_code == 200
    assert default.headers["Content-Type"].startswith(XML_TYPES)
    etree.fromstring(default.content)
    assert identifier.encode() in default.content

    as_json = live_server.get(listing, headers={"Accept": "application/json"})
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert identifier in json.dumps(as_json.json())

    as_html = live_server.get(listing, headers={"Accept": "text/html"})
    assert as_html.headers["Content-Type"].startswith("text/html")
    assert identifier in as_html.text

    forced = live_server.get(listing + "?media=xml", headers={"Accept": "application/json"})
    assert forced.headers["Content-Type"].startswith(XML_TYPES)

    everything = live_server.get("metadata", params={"media": "json"})
    assert identifier in json.dumps(everything.json())

    missing = live_server.get("metadata/AAAAAAAAAAAAAAAAAAAAAAAAAAA/nobody@example.org/"
                              "2020-01-01T00:00:00Z", headers={"Accept": "application/json"})
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/json")
    assert missing.json()["error"]


def test_deprecate_re_signs_and_uploads_a_deprecated_entry(commands, live_server, ec_signer,
                                                           pem_files, write_signed, unique):
    path = write_signed(ec_signer, "d.xml", os=unique)
    identifier = identifier_of(path)
    uploaded_urls(commands.run("stratus-upload-metadata", path))

    result = commands.run("stratus-deprecate-metadata", identifier, "--email",
                          "eve.curve@example.org", "--reason", "replaced by a newer build",
                          *pem_files(ec_signer))

    [url] = uploaded_urls(result)
    stored = live_server.get(url.removeprefix(live_server.url)).content
    checked = check_document(stored)
    assert checked.appliance.deprecated == "replaced by a newer build"
    assert checked.appliance.identifier == identifier
    assert live_server.search(os=unique)["total"] == 0
    [item] = live_server.search(os=unique, status="deprecated")["items"]
    assert item["identifier"] == identifier


def test_deprecate_refuses_a_signer_who_is_not_the_endorser(commands, live_server, rsa_signer,
                                                            ec_signer, pem_files, write_signed,
                                                            unique):
    path = write_signed(rsa_signer, "j.xml", os=unique)
    uploaded_urls(commands.run("stratus-upload-metadata", path))

    result = commands.run("stratus-deprecate-metadata", identifier_of(path), "--email",
                          "jane.tester@example.org", *pem_files(ec_signer))

    assert result.returncode == 1
    assert "endorsed by jane.tester@example.org" in result.stderr
    assert live_server.search(os=unique, status="deprecated")["total"] == 0
    assert live_server.search(os=unique)["total"] == 1


def test_deprecate_names_a_missing_entry(commands, ec_signer, pem_files):
    result = commands.run("stratus-deprecate-metadata", "AAAAAAAAAAAAAAAAAAAAAAAAAAA",
                          "--email", "eve.curve@example.org", *pem_files(ec_signer))
    assert result.returncode == 1
    assert "AAAAAAAAAAAAAAAAAAAAAAAAAAA" in result.stderr


def test_tag_gives_the_latest_entry_not_deprecated(commands, live_server, ec_signer, pem_files,
                                                   write_signed, unique):
    now = datetime.now(UTC).replace(microsecond=0)
    older = write_signed(ec_signer, "old.xml", now=now - timedelta(minutes=2), os=unique,
                         tag=unique)
    newer = write_signed(ec_signer, "new.xml", now=now - timedelta(minutes=1), os=unique,
                         tag=unique)
    uploaded_urls(commands.run("stratus-upload-metadata", older, newer))
    tag_path = f"tag/eve.curve@example.org/{unique}"

    assert identifier_of(newer) in live_server.get(tag_path, params={"media": "json"}).text
    tags = live_server.get("endorsers/eve.curve@example.org/tags", params={"media": "json"})
    assert unique in tags.text

    uploaded_urls(commands.run("stratus-deprecate-metadata", identifier_of(newer), "--email",
                               "eve.curve@example.org", *pem_files(ec_signer)))
    answer = live_server.get(tag_path, params={"media": "json"}).text
    assert identifier_of(older) in answer
    assert identifier_of(newer) not in answer


def test_endorsers(commands, live_server, ec_signer, rsa_signer, write_signed, unique):
    files = [write_signed(ec_signer, "e.xml", os=unique),
             write_signed(rsa_signer, "r.xml", os=unique)]
    uploaded_urls(commands.run("stratus-upload-metadata", *files))
    everyone = live_server.get("endorsers", params={"media": "json"})
    assert everyone.status_code == 200
    assert "eve.curve@example.org" in everyone.text
    assert "jane.tester@example.org" in everyone.text
    one = live_server.get("endorsers/jane.tester@example.org", params={"media": "json"})
    assert one.status_code == 200
    assert "jane.tester@example.org" in one.text
