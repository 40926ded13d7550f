"""Certificates and CRLs signed with SHA-1, as every grid CA signed them (issue 12, 4).

A test CA of that era issues SHA-1 certificates and CRLs (RSA and ECDSA, tests/pki.py).
Judged as of a moment before 2017-01-01 they chain to the CA like any other; after it they
are refused by their own rule, ``weak-certificate-signature``, and never with the false
"no trusted CA issued the certificate". ``openssl verify`` agrees with the chain; a forged
SHA-1 certificate (another key, the CA's name) is refused by both.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes

from client import validate
from client.node.policy import Policy
from client.node.resolve import check_candidate
from marketplace.metadata import trust
from marketplace.metadata.problems import MetadataError
from tests import factories, pki

SHA1 = hashes.SHA1()
ENDORSED = datetime(2013, 3, 1, 12, 0, tzinfo=UTC)
AFTER = datetime(2017, 1, 1, tzinfo=UTC)
ERA = (datetime(2010, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))
SIGNER_WINDOW = (datetime(2012, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module", params=[pki.RSA, pki.EC])
def grid(request):
    """A SHA-1 root, a SHA-1 intermediate and a SHA-1 end-entity certificate."""
    root = pki.make_ca("Grid Root CA", key_kind=request.param, validity=ERA,
                       hash_algorithm=SHA1)
    middle = pki.make_ca("Grid CA", key_kind=request.param, issuer=root, validity=ERA,
                         hash_algorithm=SHA1)
    signer = pki.make_certificate(middle, "Grid User", email="grid.user@example.org",
                                  validity=SIGNER_WINDOW, hash_algorithm=SHA1)
    return root, middle, signer


def store_of(*cas: pki.Issued, crls=()) -> trust.TrustStore:
    return trust.TrustStore([ca.certificate for ca in cas], list(crls))


def refusal(store: trust.TrustStore, certificate, at: datetime):
    with pytest.raises(MetadataError) as caught:
        store.check(certificate, at)
    return caught.value.problems[0]


def test_the_test_ca_really_signs_with_sha1(grid):
    for issued in grid:
        assert isinstance(issued.certificate.signature_hash_algorithm, hashes.SHA1)


def test_a_sha1_chain_is_trusted_as_of_2013(grid):
    root, middle, signer = grid
    chain = store_of(root, middle).check(signer.certificate, ENDORSED)
    assert chain == [signer.certificate, middle.certificate]
    assert store_of(root).check(middle.certificate, ENDORSED) == [middle.certificate,
                                                                  root.certificate]


@pytest.mark.parametrize("at", [AFTER, datetime(2026, 1, 1, tzinfo=UTC)])
def test_a_sha1_chain_is_refused_after_2016_by_its_own_rule(grid, at):
    root, middle, signer = grid
    problem = refusal(store_of(root, middle), signer.certificate, at)
    assert problem.rule == "weak-certificate-signature"
    assert "SHA-1" in problem.message and "Grid User" in problem.message
    assert "no trusted CA" not in problem.message


def test_a_forged_sha1_certificate_is_not_issued_by_the_ca(grid):
    root, middle, _ = grid
    impostor = pki.make_ca("Grid CA", validity=ERA)   # the CA's name, another key
    forged = pki.make_certificate(impostor, "Grid User", validity=SIGNER_WINDOW,
                                  hash_algorithm=SHA1)
    for at in (ENDORSED, AFTER):
        problem = refusal(store_of(root, middle), forged.certificate, at)
        assert problem.rule == "trust-chain"


def test_a_sha1_crl_revokes_as_of_2013(grid):
    root, middle, signer = grid
    crl = pki.make_crl(middle, {signer.serial: datetime(2013, 1, 1, tzinfo=UTC)},
                       last_update=datetime(2013, 1, 2, tzinfo=UTC), hash_algorithm=SHA1)
    store = store_of(root, middle, crls=[crl])
    assert store.check(signer.certificate, datetime(2012, 6, 1, tzinfo=UTC))
    assert refusal(store, signer.certificate, ENDORSED).rule == "revoked"


def test_a_sha1_crl_is_refused_after_2016_by_its_own_rule(grid):
    """Not skipped (revocation would then pass unseen): refused, naming the CRL."""
    root, middle, _ = grid
    sha256_signer = pki.make_certificate(middle, "New User", validity=SIGNER_WINDOW)
    crl = pki.make_crl(middle, {}, last_update=datetime(2013, 1, 2, tzinfo=UTC),
                       hash_algorithm=SHA1)
    problem = refusal(store_of(root, middle, crls=[crl]), sha256_signer.certificate, AFTER)
    assert problem.rule == "weak-certificate-signature"
    assert "CRL" in problem.message


# --- openssl verify agrees on the chain ----------------------------------------------------

def openssl_verify(tmp_path, cas, certificate, at: datetime) -> bool:
    bundle = tmp_path / "cas.pem"
    bundle.write_bytes(b"".join(ca.certificate_pem() for ca in cas))
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(certificate.certificate_pem())
    result = subprocess.run(["openssl", "verify", "-attime", str(int(at.timestamp())),
                             "-CAfile", str(bundle), str(leaf)],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0


def test_openssl_verify_agrees_on_the_sha1_chain(grid, tmp_path):
    root, middle, signer = grid
    assert openssl_verify(tmp_path, [root, middle], signer, ENDORSED)
    assert store_of(root, middle).check(signer.certificate, ENDORSED)
    impostor = pki.make_ca("Grid CA", validity=ERA)
    forged = pki.make_certificate(impostor, "Grid User", validity=SIGNER_WINDOW,
                                  hash_algorithm=SHA1)
    assert not openssl_verify(tmp_path, [root, middle], forged, ENDORSED)
    assert refusal(store_of(root, middle), forged.certificate, ENDORSED).rule == "trust-chain"


# --- the commands and the node -------------------------------------------------------------

@pytest.fixture
def grid_document(grid, tmp_path):
    """A document endorsed in 2013 by the SHA-1 signer, and the CA bundle."""
    root, middle, signer = grid
    bundle = tmp_path / "grid-cas.pem"
    bundle.write_bytes(root.certificate_pem() + middle.certificate_pem())
    path = tmp_path / "entry.xml"
    path.write_bytes(factories.signed(signer, factories.appliance(created=ENDORSED),
                                      now=ENDORSED, profile="stratuslab"))
    return path, bundle


def run_validate(capsys, *args: str) -> tuple[int, list[dict]]:
    code = validate.main(["--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_validate_accepts_as_of_the_endorsement_and_refuses_at_a_later_moment(
        capsys, grid_document):
    path, bundle = grid_document
    code, [result] = run_validate(capsys, "--trust-store", str(bundle), str(path))
    assert (code, result["valid"], result["judged_at"]) == (0, True, "2013-03-01T12:00:00Z")
    code, [result] = run_validate(capsys, "--trust-store", str(bundle),
                                  "--at", "2015-06-01T00:00:00Z", str(path))
    assert (code, result["valid"]) == (0, True)
    code, [result] = run_validate(capsys, "--trust-store", str(bundle),
                                  "--at", "2020-06-01T00:00:00Z", str(path))
    assert code == 1
    assert [p["rule"] for p in result["problems"]] == ["weak-certificate-signature"]


def test_the_node_accepts_an_entry_endorsed_in_2013_by_a_sha1_certificate(grid, tmp_path):
    root, middle, signer = grid
    folder = tmp_path / "certificates"
    folder.mkdir()
    (folder / "root.0").write_bytes(root.certificate_pem())
    (folder / "middle.0").write_bytes(middle.certificate_pem())
    policy = Policy(trust_paths=[folder])
    old = factories.appliance(created=ENDORSED)
    data = factories.signed(signer, old, now=ENDORSED, profile="stratuslab")
    now = datetime.now(UTC)
    assert check_candidate("test", data, old.identifier, policy, now).reasons == []
    recent = factories.appliance()
    data = factories.signed(signer, recent, profile="stratuslab")
    reasons = check_candidate("test", data, recent.identifier, policy, now).reasons
    assert len(reasons) == 1 and "[weak-certificate-signature]" in reasons[0]
