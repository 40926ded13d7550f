"""A demo data set, made at run time so a newcomer sees a working marketplace at once.

A demo CA and two signers are generated with ``cryptography`` (ECDSA P-256) and written
under ``DATA_DIR/demo-pki/`` (private keys with mode 0600; nothing is committed). A handful
of realistic entries (Ubuntu, Debian, CentOS, ttylinux, a data disk; one deprecated, one
expired, tags, descriptions, web and pdisk locations) are signed with them and accepted
through :meth:`Marketplace.accept`, the same checks an upload goes through. The demo CA is
not in any trust store: with ``MARKETPLACE_TRUST_STORE`` set, add ``demo-pki/ca-cert.pem``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from marketplace.metadata import document, model, signature
from marketplace.metadata.files import write_atomic
from marketplace.metadata.identifier import sha1_to_identifier
from marketplace.metadata.keys import Credentials
from marketplace.service import Marketplace, open_store

PKI_DIR = "demo-pki"
SIGNERS = {"alice": ("Alice Imagemaker", "alice@images.example.org"),
           "bob": ("Bob Builder", "bob@builds.example.org")}
GIB = 1024 ** 3


@dataclass(frozen=True)
class Sample:
    """One demo entry: who signs it, how many days ago, and its fields."""

    signer: str
    days_ago: int
    fields: dict


def _web(name: str) -> str:
    return f"https://images.example.org/appliances/{name}"


SAMPLES = (
    Sample("alice", 20, dict(os="ubuntu", os_version="24.04", os_arch="x86_64", format="qcow2",
                             compression="gz", bytes=2 * GIB, tag="ubuntu-lts",
                             title="Ubuntu 24.04 LTS server",
                             description="Minimal Ubuntu Noble server with cloud-init and "
                             "OpenSSH; log in as ubuntu with your key.",
                             locations=[_web("ubuntu-24.04-x86_64.qcow2.gz")])),
    Sample("alice", 200, dict(os="ubuntu", os_version="22.04", os_arch="x86_64",
                              format="qcow2", compression="gz", bytes=2 * GIB, tag="ubuntu-lts",
                              title="Ubuntu 22.04 LTS server",
                              description="Ubuntu Jammy server with cloud-init.",
                              locations=[_web("ubuntu-22.04-x86_64.qcow2.gz"),
                                         "pdisk:mp.example.org:8445:ubuntu-22.04"])),
    Sample("alice", 400, dict(os="ubuntu", os_version="20.04", os_arch="x86_64", format="raw",
                              compression="bz2", bytes=5 * GIB // 2, tag="ubuntu-focal",
                              title="Ubuntu 20.04 LTS server",
                              description="Ubuntu Focal server; standard support has ended.",
                              deprecated="end of standard support: use Ubuntu 24.04",
                              locations=[_web("ubuntu-20.04-x86_64.img.bz2")])),
    Sample("bob", 30, dict(os="debian", os_version="12", os_arch="x86_64", format="qcow2",
                           compression="xz", bytes=GIB + GIB // 2, tag="debian-stable",
                           title="Debian 12 (bookworm) generic cloud image",
                           description="Debian bookworm with cloud-init, unattended upgrades "
                           "on.", locations=[_web("debian-12-x86_64.qcow2.xz")])),
    Sample("bob", 28, dict(os="debian", os_version="12", os_arch="aarch64", format="qcow2",
                           compression="xz", bytes=GIB + GIB // 2, tag="debian-stable-arm",
                           title="Debian 12 (bookworm) for ARM64",
                           description="Debian bookworm for aarch64 hosts.",
                           locations=[_web("debian-12-aarch64.qcow2.xz")])),
    Sample("bob", 700, dict(os="centos", os_version="7", os_arch="x86_64", format="qcow2",
                            compression="gz", bytes=8 * GIB, tag="centos7",
                            title="CentOS 7 with EPEL",
                            description="CentOS 7 minimal with EPEL; CentOS 7 reached its end "
                            "of life, so this entry's validity has passed.",
                            valid_days=-30, locations=[_web("centos-7-x86_64.qcow2.gz")])),
    Sample("bob", 60, dict(os="centos", os_version="stream9", os_arch="x86_64", format="qcow2",
                           compression="gz", bytes=10 * GIB, tag="centos-stream",
                           title="CentOS Stream 9",
                           description="CentOS Stream 9 generic cloud image.",
                           locations=[_web("centos-stream9-x86_64.qcow2.gz")])),
    Sample("alice", 90, dict(os="ttylinux", os_version="16.1", os_arch="x86_64", format="raw",
                             compression="gz", bytes=40 * 1024 * 1024, tag="ttylinux",
                             title="ttylinux 16.1, a tiny test machine",
                             description="A 40 MB Linux that boots in seconds: the StratusLab "
                             "tutorials' favourite for trying a cloud.",
                             inbound_ports=[22], locations=[_web("ttylinux-16.1-x86_64.img.gz"),
                                                            "pdisk:mp.example.org:8445:ttylinux"])),
    Sample("alice", 10, dict(kind="disk", type="grid", os=None, os_version=None, os_arch=None,
                             format="raw", compression=None, bytes=20 * GIB, tag="ref-data",
                             title="Reference genome data disk",
                             description="A read-only data disk with the GRCh38 reference "
                             "genome, to attach to analysis machines.",
                             locations=[_web("grch38-data.img")])),
)


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "EU"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Marketplace Demo"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signing_key, ca: bool,
                 email: str | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=800))
               .not_valid_after(now + timedelta(days=3 * 365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if email:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]),
                                        critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_atomic(path, key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()), mode=0o600)


def make_pki(folder: Path) -> dict[str, Credentials]:
    """A new demo CA and one credential per signer, written as PEM files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Marketplace Demo CA", "Certificate Authorities")
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    _write_key(folder / "ca-key.pem", ca_key)
    write_atomic(folder / "ca-cert.pem", ca.public_bytes(serialization.Encoding.PEM))
    signers = {}
    for stem, (common_name, email) in SIGNERS.items():
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _certificate(_name(common_name, "Demo Publishers"), ca_name,
                                   key.public_key(), ca_key, ca=False, email=email)
        _write_key(folder / f"{stem}-key.pem", key)
        write_atomic(folder / f"{stem}-cert.pem",
                     certificate.public_bytes(serialization.Encoding.PEM))
        signers[stem] = Credentials(key, certificate)
    return signers


def entry(sample: Sample, now: datetime) -> model.Appliance:
    """The unsigned entry of a sample; checksums of a made-up image named by its fields."""
    fields = {"type": "base", "kind": "machine", "hypervisor": "kvm", "disks_bus": "virtio",
              "publisher": "Marketplace Demo", "creator": SIGNERS[sample.signer][0],
              **sample.fields}
    size = fields.pop("bytes")
    valid_days = fields.pop("valid_days", 365)
    seed = f"demo image {fields['title']}".encode()
    sha1 = hashlib.sha1(seed).hexdigest()
    created = now - timedelta(days=sample.days_ago)
    return model.Appliance(
        identifier=sha1_to_identifier(sha1), bytes=size,
        checksums={"MD5": hashlib.md5(seed).hexdigest(), "SHA-1": sha1,
                   "SHA-256": hashlib.sha256(seed).hexdigest()},
        created=created, valid=now + timedelta(days=valid_days), **fields)


def documents(signers: dict[str, Credentials], now: datetime | None = None) -> list[bytes]:
    """Every sample as a document signed by its signer, dated in the past."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    signed = []
    for sample in SAMPLES:
        root = model.to_document(entry(sample, now))
        signature.sign(root, signers[sample.signer],
                       now=now - timedelta(days=sample.days_ago, hours=-1))
        signed.append(document.serialize(root))
    return signed


def populate(settings: dict[str, str]) -> int:
    """Add the demo entries when the store is empty; how many were added."""
    store = open_store(settings)
    try:
        if store.count():
            return 0
        signers = make_pki(Path(settings["DATA_DIR"]) / PKI_DIR)
        marketplace = Marketplace.from_settings(settings, store)
        return sum(marketplace.accept(data)[1].new for data in documents(signers))
    finally:
        store.close()
