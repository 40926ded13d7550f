"""POST /metadata with MARKETPLACE_TRUST_STORE set: a certificate must chain to the store's
CAs, not be revoked by their CRLs, and be valid at upload time; each refusal names why.

The store is given as a folder in the OpenSSL hashed layout grid CAs ship
(``<hash>.0`` certificates, ``<hash>.r0`` CRLs, ``.signing_policy``/``.info`` beside them,
a c_rehash-style symlink), or as one PEM bundle.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

from tests import pki
from tests.moderation.conftest import signed, upload
from tests.server.conftest import moment


def subject_hash(pem: bytes, kind: str = "x509") -> str:
    """OpenSSL's subject hash of a certificate (or CRL issuer), as grid CA folders name
    files; a stand-in when the openssl command is not installed (the loader reads every
    file whatever its name)."""
    if shutil.which("openssl") is None:
        import hashlib
        return hashlib.sha1(pem).hexdigest()[:8]
    option = "-subject_hash" if kind == "x509" else "-hash"
    return subprocess.run(["openssl", kind, option, "-noout"], input=pem, check=True,
                          capture_output=True).stdout.decode().strip()


def hashed_folder(folder: Path, cas: list[pki.Issued], crls=()) -> Path:
    """Write CAs and CRLs in the hashed layout of /etc/grid-security/certificates."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in cas:
        pem = ca.certificate_pem()
        stem = subject_hash(pem)
        (folder / f"{stem}.0").write_bytes(pem)
        (folder / f"{stem}.signing_policy").write_text(
            f"access_id_CA X509 '/{ca.subject.rfc4514_string()}'\npos_rights globus "
            "CA:sign\ncond_subjects globus '\"*\"'\n")
        (folder / f"{stem}.info").write_text("alias = test\nversion = 1.0\n")
    for crl in crls:
        pem = pki.crl_pem(crl)
        (folder / f"{subject_hash(pem, 'crl')}.r0").write_bytes(pem)
    first = next(folder.glob("*.0"))
    (folder / "ca-link.pem").symlink_to(first.name)  # as c_rehash leaves them
    return folder


def test_chain_through_an_intermediate_ca_in_a_hashed_folder_is_accepted(
        make_app, tmp_path, ca, intermediate_ca, make_signer):
    store = hashed_folder(tmp_path / "certificates", [ca, intermediate_ca],
                          [pki.make_crl(ca), pki.make_crl(intermediate_ca)])
    client = make_app(trust_store=str(store)).test_client()
    signer = make_signer("Ivy Intermediate", email="ivy@example.org", issuer=intermediate_ca)
    response = upload(client, signed(signer))
    assert response.status_code == 201, response.json
    assert client.get(response.headers["Location"]).status_code == 200


def test_a_bundle_file_is_a_trust_store_too(make_app, ca_bundle, rsa_signer):
    client = make_app(trust_store=str(ca_bundle)).test_client()
    assert upload(client, signed(rsa_signer)).status_code == 201


def test_certificate_of_an_unknown_ca_is_refused_naming_its_issuer(
        make_app, ca_bundle, other_ca):
    client = make_app(trust_store=str(ca_bundle)).test_client()
    stranger = pki.make_certificate(other_ca, "Stan Ger", email="stan@example.org")
    response = upload(client, signed(stranger))
    assert response.status_code == 400
    problem = response.json["problems"][0]
    assert problem["rule"] == "trust-chain" and problem["element"] == "certificate"
    assert "no trusted CA issued" in problem["message"]
    assert "Unknown Root CA" in problem["message"]
    assert client.get("/metadata", headers={"Accept": "application/json"}).json["total"] == 0


def test_revoked_certificate_is_refused(make_app, tmp_path, ca, intermediate_ca,
                                        make_signer):
    signer = make_signer("Rex Voked", email="rex@example.org", issuer=intermediate_ca)
    crl = pki.make_crl(intermediate_ca, {signer.serial: moment() - timedelta(hours=2)})
    store = hashed_folder(tmp_path / "certificates", [ca, intermediate_ca], [crl])
    client = make_app(trust_store=str(store)).test_client()
    response = upload(client, signed(signer))
    assert response.status_code == 400
    problem = response.json["problems"][0]
    assert problem["rule"] == "revoked"
    assert "Rex Voked" in problem["message"] and "revoked on" in problem["message"]
    other = make_signer("Clara Clean", email="clara@example.org", issuer=intermediate_ca)
    assert upload(client, signed(other)).status_code == 201  # the CRL names only Rex


def test_certificate_expired_at_upload_time_is_refused(make_app, ca_bundle, make_signer):
    client = make_app(trust_store=str(ca_bundle)).test_client()
    expired = make_signer("Old Timer", email="old@example.org",
                          not_before=moment(30), not_after=moment(2))
    response = upload(client, signed(expired, days_ago=3))  # endorsed while it was valid
    assert response.status_code == 400
    problem = response.json["problems"][0]
    assert problem["rule"] == "certificate-validity" and "had expired" in problem["message"]


def test_certificate_not_yet_valid_at_upload_time_is_refused(make_app, ca_bundle,
                                                             make_signer):
    client = make_app(trust_store=str(ca_bundle)).test_client()
    early = make_signer("Early Bird", email="early@example.org",
                        not_before=moment(-2), not_after=moment(-300))
    response = upload(client, signed(early))
    assert response.status_code == 400
    assert "not yet valid" in response.json["problems"][0]["message"]
