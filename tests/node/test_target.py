"""What a node command is asked for: the original's relative form ``<id>/<email>/<created>``
(issue 12, 7), and marketplace endpoints with the original's context path (issue 12, 6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from client.node import errors
from client.node.target import BadTarget, Target, parse_target
from tests.node.conftest import image_bytes, run_command

ID = "MMZu9WvwKIro-rtBQfDk4PsKO7_"
ENDPOINT = "http://127.0.0.1:8080"


def test_the_relative_form_names_one_entry_on_the_configured_marketplace():
    target = parse_target(f"{ID}/jane@example.org/2013-03-01T12:00:00Z", ENDPOINT)
    assert target == Target(ID, ENDPOINT, ("jane@example.org", "2013-03-01T12:00:00Z"))


@pytest.mark.parametrize("text", [
    f"{ID}/jane@example.org",                      # the entry needs its date too
    f"{ID}//2013-03-01T12:00:00Z",
    f"{ID}/jane@example.org/2013-03-01T12:00:00Z/extra",
    "not-an-identifier/jane@example.org/2013-03-01T12:00:00Z",
])
def test_other_relative_forms_are_refused_naming_the_accepted_ones(text):
    with pytest.raises(BadTarget) as caught:
        parse_target(text, ENDPOINT)
    assert "<identifier>/<email>/<created>" in str(caught.value)


@pytest.mark.parametrize("endpoint", ["https://host/marketplace", "https://host/marketplace/",
                                      "https://host/marketplace//"])
def test_an_endpoint_with_the_original_context_path_keeps_it(endpoint):
    """The original client called ``<endpoint>/metadata/<id>``: so does the node."""
    assert parse_target(ID, endpoint).listing_url == f"https://host/marketplace/metadata/{ID}"
    assert parse_target(f"https://other/marketplace/metadata/{ID}", endpoint).listing_url == \
        f"https://other/marketplace/metadata/{ID}"


def test_download_image_takes_the_relative_form(marketplace, origin, rsa_signer, tmp_path,
                                                write_config, node_settings):
    image = image_bytes(50_000, seed=7)
    url = origin.add(f"relative-{tmp_path.name}.img", image)
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    identifier = marketplace.publish(rsa_signer, image, [url], now=created)
    newer = created + timedelta(minutes=1)
    marketplace.publish(rsa_signer, image, [url], now=newer, title="newer")
    config = write_config(fetcher=node_settings)
    relative = f"{identifier}/jane.tester@example.org/{created:%Y-%m-%dT%H:%M:%SZ}"
    output = tmp_path / "out.img"
    done = run_command("stratus-download-image", relative, "-o", str(output), "--json",
                       "--config", str(config))
    assert done.returncode == errors.OK, done.stderr
    answer = json.loads(done.stdout)
    assert output.read_bytes() == image
    assert answer["identifier"] == identifier
    assert f"/{created:%Y-%m-%dT%H:%M:%SZ}" in json.dumps(answer)   # that entry, not the newer


def test_download_image_refuses_a_malformed_relative_form_with_usage_status(tmp_path,
                                                                           write_config,
                                                                           node_settings):
    config = write_config(fetcher=node_settings)
    done = run_command("stratus-download-image", f"{ID}/jane@example.org", "-o",
                       str(tmp_path / "x.img"), "--config", str(config))
    assert done.returncode == errors.USAGE
    assert "<identifier>/<email>/<created>" in done.stderr
