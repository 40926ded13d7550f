"""The node's trust policy on real signed entries: lists, trust store, statuses, checksums."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from client.node import config as fetcher_config
from client.node.policy import Facts, Policy, WeakChecksums
from client.node.resolve import check_candidate
from marketplace.metadata import model
from tests import factories, pki

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _judged_now():
    """Each test judges at its own start: documents are signed at the real time, and a moment
    taken when the module was imported is stale by the time a long suite reaches it."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


def entry(image: bytes = b"image bytes", **fields) -> model.Appliance:
    return factories.appliance(image, **fields)


def judge(signer, policy: Policy, appliance: model.Appliance | None = None,
          email: str | None = None, now: datetime | None = None):
    appliance = appliance or entry()
    document = factories.signed(signer, appliance, email=email, now=now)
    return check_candidate("test", document, appliance.identifier, policy, NOW)


def test_an_empty_policy_accepts_any_verified_entry(rsa_signer):
    candidate = judge(rsa_signer, Policy())
    assert candidate.reasons == []
    assert candidate.facts.certificate_emails == ["jane.tester@example.org"]


def test_whitelisted_endorser_by_email_and_the_others_refused(rsa_signer, ec_signer):
    policy = Policy(whitelist_endorsers=["Jane.Tester@example.org"])
    assert judge(rsa_signer, policy).reasons == []
    reasons = judge(ec_signer, policy).reasons
    assert reasons == ["endorser eve.curve@example.org (CN=Eve Curve,OU=Testing Department,"
                       "O=Marketplace Tests,C=EU) is not in the whitelist of endorsers"]


def test_whitelisted_endorser_by_dn_written_in_another_style(rsa_signer, ec_signer):
    policy = Policy(whitelist_endorsers=["cn=Jane  Tester, ou=Testing Department, "
                                         "o=marketplace tests, c=EU"])
    assert judge(rsa_signer, policy).reasons == []
    assert "not in the whitelist" in judge(ec_signer, policy).reasons[0]


def test_a_claimed_email_cannot_satisfy_a_whitelist(signer_without_email):
    policy = Policy(whitelist_endorsers=["jane.tester@example.org"])
    reasons = judge(signer_without_email, policy, email="jane.tester@example.org").reasons
    assert len(reasons) == 1 and "the document's email is unconfirmed" in reasons[0]


def test_blacklisted_endorsers_by_email_dn_and_claimed_email(rsa_signer, signer_without_email):
    by_email = Policy(blacklist_endorsers=["jane.tester@example.org"])
    assert "is blacklisted (jane.tester@example.org)" in judge(rsa_signer, by_email).reasons[0]
    by_dn = Policy(blacklist_endorsers=["CN=Jane Tester,OU=Testing Department,"
                                        "O=Marketplace Tests,C=EU"])
    assert "is blacklisted" in judge(rsa_signer, by_dn).reasons[0]
    claimed = Policy(blacklist_endorsers=["mallory@example.org"])
    assert "is blacklisted" in judge(signer_without_email, claimed,
                                     email="mallory@example.org").reasons[0]


def test_image_white_and_blacklists(rsa_signer):
    appliance = entry(b"listed image")
    other = entry(b"another image")
    white = Policy(whitelist_images=[appliance.identifier])
    assert judge(rsa_signer, white, appliance).reasons == []
    assert judge(rsa_signer, white, other).reasons == [
        f"image {other.identifier} is not in the whitelist of images"]
    black = Policy(blacklist_images=[appliance.identifier])
    assert judge(rsa_signer, black, appliance).reasons == [
        f"image {appliance.identifier} is blacklisted"]
    assert judge(rsa_signer, black, other).reasons == []


def test_sha1_white_and_blacklists_compare_values_not_text(rsa_signer):
    appliance = entry(b"checksummed image")
    sha1 = appliance.checksums["SHA-1"]
    written = "0000" + sha1.upper()  # leading zeros and case do not matter
    assert judge(rsa_signer, Policy(whitelist_checksums=[written]), appliance).reasons == []
    assert judge(rsa_signer, Policy(whitelist_checksums=["ab" * 20]), appliance).reasons == [
        f"SHA-1 checksum {sha1} is not in the whitelist of checksums"]
    assert judge(rsa_signer, Policy(blacklist_checksums=[written]), appliance).reasons == [
        f"SHA-1 checksum {sha1} is blacklisted"]


def test_trusted_cas_accept_their_signers_only(rsa_signer, other_ca, make_signer, ca,
                                               tmp_path):
    trusted = tmp_path / "certificates"
    trusted.mkdir()
    (trusted / "test-ca.pem").write_bytes(ca.certificate_pem())
    policy = Policy(trust_paths=[trusted])
    assert judge(rsa_signer, policy).reasons == []
    stranger = make_signer("Stan Ger", email="stan@example.org", issuer=other_ca)
    reasons = judge(stranger, policy).reasons
    assert len(reasons) == 1 and "no trusted CA issued the certificate" in reasons[0]
    assert judge(stranger, Policy()).reasons == []  # without a trust store: any valid signer


def test_a_revoked_signer_is_refused_by_the_crl(ca, make_signer, tmp_path):
    signer = make_signer("Rev Oked", email="rev@example.org", fresh_key=False)
    trusted = tmp_path / "certificates"
    trusted.mkdir()
    (trusted / "test-ca.pem").write_bytes(ca.certificate_pem())
    (trusted / "test-ca.r0").write_bytes(pki.crl_pem(pki.make_crl(
        ca, {signer.serial: NOW - timedelta(hours=2)})))
    reasons = judge(signer, Policy(trust_paths=[trusted]), now=NOW - timedelta(hours=1)).reasons
    assert len(reasons) == 1 and "was revoked on" in reasons[0]
    # signed before the revocation: the certificate was good as of the endorsement date
    assert judge(signer, Policy(trust_paths=[trusted]),
                 now=NOW - timedelta(hours=3)).reasons == []


def test_the_certificate_is_checked_as_of_the_endorsement_date(interop):
    """An original StratusLab document: its certificate expired long ago, but was valid
    when it signed; the entry itself has expired too."""
    document = (interop / "valid-ca-signed.xml").read_bytes()
    identifier = "BEE8-MMAw-Lk_IgsEExAy3d9R8h"
    refused = check_candidate("test", document, identifier, Policy(), NOW)
    assert refused.reasons == ["the entry expired on 2012-03-05T14:12:57Z "
                               "(--allow-expired accepts it)"]
    assert check_candidate("test", document, identifier, Policy(allow_expired=True),
                           NOW).reasons == []


def test_a_certificate_not_valid_at_the_endorsement_date_is_refused(make_signer):
    signer = make_signer("Late Comer", email="late@example.org",
                         not_before=NOW - timedelta(hours=1))
    reasons = judge(signer, Policy(), now=NOW - timedelta(hours=2)).reasons
    assert len(reasons) == 1 and "was not yet valid at" in reasons[0]


def test_expired_and_deprecated_entries_need_the_flags(rsa_signer):
    expired = entry(b"old image", created=NOW - timedelta(days=10),
                    valid=NOW - timedelta(days=1))
    reasons = judge(rsa_signer, Policy(), expired).reasons
    assert reasons == [f"the entry expired on {model.format_date(expired.valid)} "
                       "(--allow-expired accepts it)"]
    assert judge(rsa_signer, Policy(allow_expired=True), expired).reasons == []
    deprecated = entry(b"replaced image", deprecated="use the 24.04 image")
    assert judge(rsa_signer, Policy(), deprecated).reasons == [
        "the entry is deprecated: use the 24.04 image (--allow-deprecated accepts it)"]
    assert judge(rsa_signer, Policy(allow_deprecated=True), deprecated).reasons == []


def test_weak_checksums_only_need_allow_weak(rsa_signer):
    weak = entry(b"weakly described image")
    weak.checksums = {"MD5": hashlib.md5(b"weakly described image").hexdigest(),
                      "SHA-1": weak.checksums["SHA-1"]}
    reasons = judge(rsa_signer, Policy(), weak).reasons
    assert reasons == ["the entry has only weak checksums (MD5, SHA-1); SHA-256 or SHA-512 "
                       "is needed (--allow-weak accepts MD5/SHA-1)"]
    assert judge(rsa_signer, Policy(allow_weak=True), weak).reasons == []


def test_which_checksums_are_verified():
    both = {"MD5": "a", "SHA-1": "b", "SHA-256": "c", "SHA-512": "d"}
    assert Policy().algorithms(both) == ["SHA-256"]
    assert Policy().algorithms({"SHA-1": "b", "SHA-512": "d"}) == ["SHA-512"]
    assert Policy(verify_all=True).algorithms(both) == ["SHA-256", "SHA-512", "SHA-1", "MD5"]
    assert Policy(allow_weak=True).algorithms({"MD5": "a", "SHA-1": "b"}) == ["SHA-1"]
    with pytest.raises(WeakChecksums):
        Policy(verify_all=True).algorithms({"SHA-1": "b"})


def test_a_tampered_document_fails_verification(rsa_signer):
    appliance = entry(b"tampered image")
    document = factories.signed(rsa_signer, appliance)
    sha256 = appliance.checksums["SHA-256"].encode()
    tampered = document.replace(sha256, hashlib.sha256(b"evil").hexdigest().encode())
    candidate = check_candidate("test", tampered, appliance.identifier, Policy(), NOW)
    assert candidate.facts is None
    assert any("signature does not match" in r for r in candidate.reasons)


def test_an_entry_of_another_image_is_refused(rsa_signer):
    appliance = entry(b"some image")
    asked = entry(b"the image asked for").identifier
    document = factories.signed(rsa_signer, appliance)
    candidate = check_candidate("test", document, asked, Policy(), NOW)
    assert candidate.reasons == [f"the entry describes image {appliance.identifier}, "
                                 f"not {asked}"]


@pytest.mark.parametrize("fields", [{}, {"deprecated": "gone"},
                                    {"valid": NOW - timedelta(seconds=5)}])
def test_the_policy_status_agrees_with_the_model(rsa_signer, fields):
    appliance = entry(b"status image", created=NOW - timedelta(days=1), **fields)
    candidate = judge(rsa_signer, Policy(), appliance)
    status = candidate.checked.appliance.status(NOW)
    assert (status == model.VALID) == (Policy().status_refusals(candidate.facts, NOW) == [])


def test_facts_survive_a_round_trip_through_json(rsa_signer):
    facts = judge(rsa_signer, Policy()).facts
    assert Facts.from_dict(facts.as_dict()) == facts


def test_the_policy_is_read_from_the_config_and_an_original_policy_cfg(write_config, tmp_path):
    original = tmp_path / "policy.cfg"
    original.write_text("[endorsers]\nwhitelistendorsers =\n    jane@example.org\n"
                        "    CN=Jane Doe, O=Example, C=EU\n"
                        "[images]\nblacklistimages = AAAA, BBBB\n"
                        "[checksums]\nblacklistchecksums =\n")
    path = write_config(fetcher={"policy_file": str(original)},
                        checksums={"whitelistchecksums": ["00ff", "abcd"]},
                        trust={"certificates": str(tmp_path / "cas")})
    policy = Policy.from_config(fetcher_config.load(path, environ={}))
    assert policy.whitelist_endorsers == ["jane@example.org", "CN=Jane Doe, O=Example, C=EU"]
    assert policy.blacklist_images == ["AAAA", "BBBB"]
    assert policy.whitelist_checksums == ["00ff", "abcd"]
    assert policy.trust_paths == [tmp_path / "cas"]
    with pytest.raises(OSError, match="not found"):
        policy.trust_store()


def test_an_endorser_entry_that_is_neither_email_nor_dn_is_a_config_error():
    from client.node.config import ConfigError
    with pytest.raises(ConfigError, match="blacklistendorsers: 'CN' is neither"):
        Policy(blacklist_endorsers=["jane.tester@example.org", "CN"])
