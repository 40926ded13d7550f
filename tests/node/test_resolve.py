"""Resolving an identifier on the real marketplace, and refusing what a lying one serves."""

from __future__ import annotations

import hashlib
import os

import pytest

from client.node import download, errors
from client.node.fetcher import Fetcher
from client.node.policy import Policy
from client.node.resolve import resolve, split_listing
from client.node.session import make_session
from client.node.target import BadTarget, Target, parse_target
from tests import factories
from tests.node.conftest import entry_time, image_bytes

TIMEOUT = (5.0, 10.0)


@pytest.fixture
def session():
    return make_session(download.TransferSettings())


def test_the_newest_acceptable_entry_is_chosen_and_the_others_explained(
        marketplace, session, rsa_signer, ec_signer, make_signer):
    image = os.urandom(4096)
    marketplace.publish(rsa_signer, image, ["http://127.0.0.1:9/a.img"], now=entry_time(3600))
    marketplace.publish(ec_signer, image, ["http://127.0.0.1:9/b.img"], now=entry_time(600))
    bob = make_signer("Bob Builder", email="bob@example.org")
    identifier = marketplace.publish(bob, image, ["http://127.0.0.1:9/c.img"],
                                     now=entry_time(60), deprecated="broken build")
    resolution = resolve(Target(identifier, marketplace.url), Policy(), session, TIMEOUT)
    assert resolution.chosen.facts.email == "eve.curve@example.org"
    others = {c.facts.email: c.reasons for c in resolution.others}
    assert others == {
        "jane.tester@example.org": [f"passed, but older than the chosen entry of "
                                    f"{resolution.chosen.created}"],
        "bob@example.org": ["the entry is deprecated: broken build "
                            "(--allow-deprecated accepts it)"]}
    assert resolution.chosen.url == (f"{marketplace.url}metadata/{identifier}/"
                                     f"eve.curve@example.org/{resolution.chosen.created}")
    flagged = resolve(Target(identifier, marketplace.url), Policy(allow_deprecated=True),
                      session, TIMEOUT)
    assert flagged.chosen.facts.email == "bob@example.org"


def test_the_policy_can_make_an_older_entry_the_choice(marketplace, session, rsa_signer,
                                                       ec_signer):
    image = os.urandom(4096)
    marketplace.publish(rsa_signer, image, ["http://127.0.0.1:9/a.img"], now=entry_time(3600))
    identifier = marketplace.publish(ec_signer, image, ["http://127.0.0.1:9/b.img"],
                                     now=entry_time(60))
    policy = Policy(whitelist_endorsers=["jane.tester@example.org"])
    resolution = resolve(Target(identifier, marketplace.url), policy, session, TIMEOUT)
    assert resolution.chosen.facts.email == "jane.tester@example.org"
    assert "not in the whitelist" in resolution.others[0].reasons[0]


def test_every_entry_refused_says_why_for_each(marketplace, session, rsa_signer, ec_signer):
    image = os.urandom(4096)
    marketplace.publish(rsa_signer, image, ["http://127.0.0.1:9/a.img"], now=entry_time(600))
    identifier = marketplace.publish(ec_signer, image, ["http://127.0.0.1:9/b.img"],
                                     now=entry_time(60))
    with pytest.raises(errors.NoAcceptableEntry) as raised:
        resolve(Target(identifier, marketplace.url), Policy(blacklist_images=[identifier]),
                session, TIMEOUT)
    assert raised.value.exit_code == errors.REFUSED
    assert len(raised.value.candidates) == 2
    assert all(c["reasons"] == [f"image {identifier} is blacklisted"]
               for c in raised.value.candidates)


def test_an_unknown_identifier_is_not_found(marketplace, session):
    identifier = factories.appliance(os.urandom(64)).identifier
    with pytest.raises(errors.NotFound):
        resolve(Target(identifier, marketplace.url), Policy(), session, TIMEOUT)


def test_an_unreachable_marketplace_is_an_error_that_says_so(session):
    identifier = factories.appliance(os.urandom(64)).identifier
    with pytest.raises(errors.FetchError) as raised:
        resolve(Target(identifier, "http://127.0.0.1:9/"), Policy(), session, TIMEOUT)
    message = str(raised.value)
    assert message.startswith("cannot reach the marketplace at http://127.0.0.1:9/")
    assert message.endswith(": connection refused"), "not urllib3's words"
    assert "HTTPConnectionPool" not in message and "Errno" not in message


def test_a_marketplace_url_names_the_identifier_and_maybe_one_entry(marketplace, session,
                                                                    rsa_signer, ec_signer):
    image = os.urandom(4096)
    marketplace.publish(rsa_signer, image, ["http://127.0.0.1:9/a.img"], now=entry_time(600))
    identifier = marketplace.publish(ec_signer, image, ["http://127.0.0.1:9/b.img"],
                                     now=entry_time(60))
    target = parse_target(f"{marketplace.url}metadata/{identifier}", "http://unused:1")
    assert target == Target(identifier, marketplace.url.rstrip("/") + "/")
    older = resolve(target, Policy(), session, TIMEOUT).others[0]
    one = parse_target(older.url, "http://unused:1")
    assert one.entry == ("jane.tester@example.org", older.created)
    resolution = resolve(one, Policy(), session, TIMEOUT)
    assert resolution.chosen.facts.email == "jane.tester@example.org" and not resolution.others
    with pytest.raises(BadTarget):
        parse_target("not-an-identifier", marketplace.url)
    with pytest.raises(BadTarget):
        parse_target(f"{marketplace.url}search?q={identifier}", marketplace.url)


# --- a lying marketplace ------------------------------------------------------------------


def _signed(signer, image: bytes, locations: list[str]) -> tuple[str, bytes, str]:
    appliance = factories.appliance(image, locations=locations)
    return appliance.identifier, factories.signed(signer, appliance), \
        appliance.checksums["SHA-256"]


def test_a_tampered_checksum_is_refused(liar, session, rsa_signer):
    identifier, document, sha256 = _signed(rsa_signer, b"real image", ["http://a/x.img"])
    evil = hashlib.sha256(b"evil image").hexdigest()
    liar.serve(document.replace(sha256.encode(), evil.encode()))
    with pytest.raises(errors.NoAcceptableEntry) as raised:
        resolve(Target(identifier, liar.url), Policy(), session, TIMEOUT)
    reasons = raised.value.candidates[0]["reasons"]
    assert any("signature does not match the document" in r for r in reasons)


def test_a_tampered_location_is_refused(liar, session, rsa_signer):
    identifier, document, _ = _signed(rsa_signer, b"real image", ["http://good.example/x.img"])
    liar.serve(document.replace(b"http://good.example/x.img", b"http://evil.example/x.img"))
    with pytest.raises(errors.NoAcceptableEntry):
        resolve(Target(identifier, liar.url), Policy(), session, TIMEOUT)


def test_a_valid_entry_of_another_image_is_refused(liar, session, rsa_signer):
    _, other, _ = _signed(rsa_signer, b"another image", ["http://a/x.img"])
    asked = factories.appliance(b"the image asked for").identifier
    liar.serve(other)
    with pytest.raises(errors.NoAcceptableEntry) as raised:
        resolve(Target(asked, liar.url), Policy(), session, TIMEOUT)
    assert "the entry describes image" in raised.value.candidates[0]["reasons"][0]


def test_the_honest_entry_beside_a_tampered_one_is_used(liar, session, rsa_signer, ec_signer):
    identifier, honest, _ = _signed(rsa_signer, b"shared image", ["http://good/x.img"])
    _, other, sha256 = _signed(ec_signer, b"shared image", ["http://good/x.img"])
    liar.serve(honest, other.replace(sha256.encode(), b"0" * 64))
    resolution = resolve(Target(identifier, liar.url), Policy(), session, TIMEOUT)
    assert resolution.chosen.facts.email == "jane.tester@example.org"
    assert any("signature does not match" in r for r in resolution.others[0].reasons)


def test_a_lying_marketplace_fills_no_cache(liar, origin, make_config, rsa_signer):
    image = image_bytes(100_000, seed=3)
    url = origin.add("x.img", image)
    identifier, document, sha256 = _signed(rsa_signer, image, [url])
    liar.serve(document.replace(sha256.encode(), hashlib.sha256(b"x").hexdigest().encode()))
    config = make_config(marketplace_endpoint=liar.url)
    fetcher = Fetcher(config)
    with pytest.raises(errors.NoAcceptableEntry):
        fetcher.pull(identifier)
    assert origin.requests["x.img"] == 0, "the image was fetched for a refused entry"
    assert list((config.cache_dir / "images").iterdir()) == []
    assert fetcher.events.sent[-1]["event"] == "refused"


def test_hostile_listings_are_errors(liar, session):
    identifier = factories.appliance(b"x").identifier
    for body in (b"not xml at all", b'<!DOCTYPE m [<!ENTITY e "x">]><metadata>&e;</metadata>',
                 b"<html><body>hello</body></html>"):
        liar.body = body
        with pytest.raises(errors.FetchError):
            resolve(Target(identifier, liar.url), Policy(), session, TIMEOUT)


def test_a_listing_is_split_into_documents_that_still_verify(rsa_signer, ec_signer):
    identifier, first, _ = _signed(rsa_signer, b"image", ["http://a/x.img"])
    _, second, _ = _signed(ec_signer, b"image", ["http://a/x.img"])
    listing = (b'<?xml version="1.0" encoding="UTF-8"?>\n<metadata total="2">\n'
               + first.split(b"?>", 1)[1] + b"\n" + second.split(b"?>", 1)[1] + b"</metadata>")
    total, documents = split_listing(listing)
    assert total == 2 and len(documents) == 2
    from marketplace.metadata.checks import check_document

    assert [check_document(d).appliance.identifier for d in documents] == [identifier] * 2
