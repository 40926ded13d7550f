"""stratus-search-metadata's query and table, without a server."""

from __future__ import annotations

from client.search import build_parser, query, row, table

ITEM = {"identifier": "MMZu9WvwKIro-rtBQfDk4PsKO7_", "os": "ubuntu", "os_version": "24.04",
        "os_arch": "x86_64", "created": "2020-01-01T00:00:00Z", "status": "valid",
        "title": "Ubuntu " + "x" * 60,
        "endorsement": {"email": "jane@example.org", "created": "2024-05-06T07:08:09Z"}}


def test_options_become_the_api_query():
    options = build_parser().parse_args(
        ["web", "server", "--os", "ubuntu", "--os-version", "24.04", "--arch", "x86_64",
         "--endorser", "jane@example.org", "--tag", "lts", "--status", "all", "--limit", "5"])
    assert query(options) == {"q": "web server", "os": "ubuntu", "os_version": "24.04",
                              "arch": "x86_64", "endorser": "jane@example.org", "tag": "lts",
                              "status": "all", "limit": 5}
    assert query(build_parser().parse_args([])) == {"status": "valid", "limit": 50}


def test_a_row_shows_the_endorsement_date_and_a_short_title():
    identifier, system, endorser, created, status, title = row(ITEM)
    assert (identifier, system, endorser, created, status) == (
        "MMZu9WvwKIro-rtBQfDk4PsKO7_", "ubuntu/24.04/x86_64", "jane@example.org",
        "2024-05-06T07:08:09Z", "valid")
    assert len(title) == 40 and title.endswith("\u2026")


def test_a_row_copes_with_missing_fields():
    assert row({"identifier": "X"}) == ("X", "-", "-", "-", "-", "")


def test_the_table_is_aligned_under_its_header():
    lines = table([ITEM, {"identifier": "Y", "os": "debian"}]).splitlines()
    assert lines[0].split() == ["IDENTIFIER", "OS", "ENDORSER", "CREATED", "STATUS", "TITLE"]
    assert lines[1].index("ubuntu") == lines[0].index("OS") == lines[2].index("debian")
