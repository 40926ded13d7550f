"""The image creator's commands: stratus-build-metadata, -sign-, -validate- and stratus-copy-config.

The commands run in-process through their ``main(argv)`` entry points (output captured with
``capsys``), and end to end as the installed console scripts. Images are real files of
random bytes (and zeros, as disk images have), compressed with the real compressors;
every expected size and checksum is computed here with ``hashlib`` over the uncompressed
bytes. Keys and certificates are real ones from ``tests.pki``. HOME is a temporary
directory and no ``STRATUSLAB_*`` variable is inherited, so the user's own config never
leaks in.
"""

from __future__ import annotations

import bz2
import configparser
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import string
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from client import build, config, copy_config, sign, upload, validate
from marketplace.metadata import model, validation
from tests import pki
from tests.live.conftest import COMMAND_TIMEOUT, clean_environ, script

NS = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
      "dcterms": "http://purl.org/dc/terms/",
      "slreq": "http://mp.stratuslab.eu/slreq#",
      "slterms": "http://mp.stratuslab.eu/slterms#",
      "ds": "http://www.w3.org/2000/09/xmldsig#"}
DESCRIPTION = "/rdf:RDF/rdf:Description"
ENDORSER = f"{DESCRIPTION}/slreq:endorsement/slreq:endorser"
COMPRESSORS = {
    "": lambda data: data,
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
}
SUFFIXES = tuple(COMPRESSORS)
HASHES = {"MD5": hashlib.md5, "SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256,
          "SHA-512": hashlib.sha512}
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
XMLSEC1 = shutil.which("xmlsec1") or "xmlsec1"
CONFIG = Path(".stratuslab") / "stratuslab-user.cfg"


# --- helpers and fixtures -------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("home")  # tests/client/conftest.py


def image_content(random_bytes: int = 1_300_000, zeros: int = 3_000_000) -> bytes:
    """An image's uncompressed bytes: random data (more than one hashing chunk), then zeros."""
    return os.urandom(random_bytes) + bytes(zeros)


@pytest.fixture(scope="module")
def content() -> bytes:
    return image_content()


@pytest.fixture(scope="module")
def images(tmp_path_factory, content) -> dict[str, Path]:
    """The same content raw and compressed, by suffix ('' for raw); read-only for the tests."""
    directory = tmp_path_factory.mktemp("images")
    paths = {}
    for suffix, compress in COMPRESSORS.items():
        paths[suffix] = directory / f"appliance.img{suffix}"
        paths[suffix].write_bytes(compress(content))
    return paths


def identifier_of(sha1: str) -> str:
    """FORMAT.md's identifier, computed here independently of the library."""
    number, letters = int(sha1, 16), []
    for _ in range(27):
        number, digit = divmod(number, 64)
        letters.append(ALPHABET[digit])
    return "".join(reversed(letters))


def expected_checksums(data: bytes) -> dict[str, str]:
    return {name: make(data).hexdigest() for name, make in HASHES.items()}


def run(capsys, main, *args) -> tuple[int, str, str]:
    """Run a command in-process: (exit status, standard output, standard error)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def tree(data: bytes | Path) -> etree._Element:
    return etree.fromstring(data.read_bytes() if isinstance(data, Path) else data)


def texts(data: bytes | Path, path: str) -> list[str]:
    return [e if isinstance(e, str) else e.text
            for e in tree(data).xpath(path, namespaces=NS)]


def text(data: bytes | Path, path: str) -> str | None:
    """The text of the element at ``path``, None when absent; fails when there are several."""
    values = texts(data, path)
    assert len(values) <= 1, f"{len(values)} elements at {path}"
    return values[0] if values else None


def checksums(data: bytes | Path) -> dict[str, str]:
    return {c.findtext("slreq:algorithm", namespaces=NS): c.findtext("slreq:value", namespaces=NS)
            for c in tree(data).xpath(f"{DESCRIPTION}/slreq:checksum", namespaces=NS)}


def date(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def built(capsys, image: Path | None, output: Path, *options) -> Path:
    """Build the metadata of ``image`` (None: no image) into ``output`` and return its path."""
    code, _, err = run(capsys, build.main, *([image] if image else []), "--output", output,
                       *options)
    assert (code, err) == (0, "")
    return output


@pytest.fixture
def unsigned(capsys, tmp_path, images) -> Path:
    """An unsigned document of the raw image, titled 'original title'."""
    return built(capsys, images[""], tmp_path / "appliance.xml", "--title", "original title")


@pytest.fixture
def p12(tmp_path, rsa_signer, monkeypatch) -> list[str]:
    """Jane Tester's PKCS#12 file, its password in STRATUSLAB_P12_PASSWORD."""
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    monkeypatch.setenv("STRATUSLAB_P12_PASSWORD", pki.PASSWORD.decode())
    return ["--p12-cert", str(path)]


CREDENTIALS = ("p12-rsa-password-from-env", "p12-ec-password-file", "pem-rsa",
               "pem-ec-encrypted-password-from-env")


def credential_options(way: str, directory: Path, monkeypatch, rsa_signer,
                       ec_signer) -> tuple[list[str], pki.Issued]:
    """Signing options for one way of giving the credentials, and the signer they name."""
    if way == "p12-rsa-password-from-env":
        path = pki.write_pkcs12(rsa_signer, directory / "rsa.p12")
        monkeypatch.setenv("STRATUSLAB_P12_PASSWORD", pki.PASSWORD.decode())
        return ["--p12-cert", str(path)], rsa_signer
    if way == "p12-ec-password-file":
        path = pki.write_pkcs12(ec_signer, directory / "ec.p12", password=b"from a file")
        secret = directory / "p12-password"
        secret.write_text("from a file\n")
        return ["--p12-cert", str(path), "--p12-password-file", str(secret)], ec_signer
    if way == "pem-rsa":
        key, certificate = pki.write_pem(rsa_signer, directory, "rsa")
        return ["--pem-key", str(key), "--pem-cert", str(certificate)], rsa_signer
    key, certificate = pki.write_pem(ec_signer, directory, "ec", password=b"pem secret")
    monkeypatch.setenv("STRATUSLAB_PEM_PASSWORD", "pem secret")
    return ["--pem-key", str(key), "--pem-cert", str(certificate)], ec_signer


def write_config(home: Path, **settings: str) -> Path:
    """A user config file with a [default] section holding ``settings``."""
    path = home / CONFIG
    path.parent.mkdir(exist_ok=True)
    path.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return path


def code_of_validation(capsys, document: Path) -> int:
    """Validate an unsigned document: its exit status, after checking the verdict line."""
    code, out, _ = run(capsys, validate.main, document)
    assert out == f"{document}: valid, not signed, status valid\n"
    return code


def email_of(signer: pki.Issued) -> str:
    """The rfc822 name in the signer's certificate."""
    names = signer.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return names.value.get_values_for_type(x509.RFC822Name)[0]


def signer_line(path: Path, signer: pki.Issued) -> str:
    return f"{path}: valid, signed by {signer.subject.rfc4514_string()}, status valid"


# --- 1. build -> sign -> validate -----------------------------------------------------------

@pytest.mark.parametrize("way", CREDENTIALS)
@pytest.mark.parametrize("suffix", SUFFIXES, ids=lambda s: s or "raw")
def test_round_trip_build_sign_validate(suffix, way, capsys, tmp_path, images, content,
                                        monkeypatch, rsa_signer, ec_signer):
    options, signer = credential_options(way, tmp_path, monkeypatch, rsa_signer, ec_signer)
    document = built(capsys, images[suffix], tmp_path / "appliance.xml")
    want = expected_checksums(content)

    code, out, err = run(capsys, sign.main, document, *options)
    assert (code, err) == (0, "")
    email = email_of(signer)
    assert out == f"signed {document}: {identifier_of(want['SHA-1'])} by {email}\n"

    code, out, err = run(capsys, validate.main, document)
    assert (code, out, err) == (0, signer_line(document, signer) + "\n", "")

    assert checksums(document) == want
    assert text(document, f"{DESCRIPTION}/slreq:bytes") == str(len(content))
    assert text(document, f"{DESCRIPTION}/dcterms:identifier") == identifier_of(want["SHA-1"])
    assert text(document, f"{DESCRIPTION}/dcterms:compression") == (suffix[1:] or None)
    assert text(document, f"{ENDORSER}/slreq:email") == email
    assert text(document, f"{ENDORSER}/slreq:subject") == signer.subject.rfc4514_string()
    assert texts(document, f"{ENDORSER}/slreq:issuer") == [signer.certificate.issuer
                                                            .rfc4514_string()]


# --- 2. a second implementation verifies our signatures -------------------------------------

def xmlsec1_verify(document: Path, certificate: x509.Certificate, directory: Path):
    pem = directory / "signer-cert.pem"
    pem.write_bytes(certificate.public_bytes(Encoding.PEM))
    return subprocess.run(
        [XMLSEC1, "--verify", "--pubkey-cert-pem", str(pem), "--enabled-reference-uris",
         "empty", str(document)], capture_output=True, text=True, check=False)


SIGNATURE_METHODS = {
    ("default", pki.RSA): "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    ("default", pki.EC): "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    ("stratuslab", pki.RSA): "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    ("stratuslab", pki.EC): "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
}


@pytest.mark.parametrize(("profile", "kind"), sorted(SIGNATURE_METHODS))
def test_xmlsec1_verifies_what_the_sign_command_wrote(profile, kind, capsys, tmp_path,
                                                      unsigned, rsa_signer, ec_signer):
    signer = rsa_signer if kind == pki.RSA else ec_signer
    key, certificate = pki.write_pem(signer, tmp_path)
    code, _, err = run(capsys, sign.main, unsigned, "--pem-key", key, "--pem-cert",
                       certificate, "--profile", profile)
    assert (code, err) == (0, "")
    assert text(unsigned, "/rdf:RDF/ds:Signature/ds:SignedInfo/ds:SignatureMethod/@Algorithm") \
        == SIGNATURE_METHODS[profile, kind]

    result = xmlsec1_verify(unsigned, signer.certificate, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stderr

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(unsigned.read_bytes().replace(b"original title", b"0riginal title"))
    assert xmlsec1_verify(tampered, signer.certificate, tmp_path).returncode != 0


# --- 3. stratus-build-metadata --------------------------------------------------------------

def test_every_build_option_lands_in_its_element(capsys, tmp_path, images, content):
    document = built(
        capsys, images[".gz"], tmp_path / "meta.xml",
        "--author", "Jane Tester", "--type", "grid", "--kind", "disk", "--os", "ubuntu",
        "--os-version", "24.04", "--os-arch", "x86_64", "--image-version", "2.1",
        "--format", "qcow2", "--hypervisor", "kvm", "--location", "http://a.example/1.img.gz",
        "--location", "https://b.example/2.img.gz", "--location", "http://c.example/3",
        "--title", "My appliance", "--tag", "my-tag", "--comment", "An image for tests",
        "--disks-bus", "scsi", "--publisher", "Marketplace Tests")

    expected = {
        "dcterms:creator": "Jane Tester", "dcterms:type": "grid", "slterms:kind": "disk",
        "slterms:os": "ubuntu", "slterms:os-version": "24.04", "slterms:os-arch": "x86_64",
        "slterms:version": "2.1", "dcterms:format": "qcow2", "slterms:hypervisor": "kvm",
        "dcterms:title": "My appliance", "dcterms:alternative": "my-tag",
        "dcterms:description": "An image for tests", "slterms:disks-bus": "scsi",
        "dcterms:publisher": "Marketplace Tests", "dcterms:compression": "gz",
        "slreq:bytes": str(len(content)),
    }
    assert {name: text(document, f"{DESCRIPTION}/{name}") for name in expected} == expected
    assert texts(document, f"{DESCRIPTION}/slterms:location") == [
        "http://a.example/1.img.gz", "https://b.example/2.img.gz", "http://c.example/3"]
    assert checksums(document) == expected_checksums(content)
    assert code_of_validation(capsys, document) == 0


def test_build_defaults_and_the_one_year_validity(capsys, tmp_path, images):
    before = datetime.now(UTC).replace(microsecond=0)
    document = built(capsys, images[""], tmp_path / "meta.xml")
    after = datetime.now(UTC)

    defaults = {name: text(document, f"{DESCRIPTION}/{name}") for name in (
        "dcterms:type", "slterms:kind", "dcterms:format", "dcterms:compression",
        "dcterms:creator", "slterms:os", "dcterms:title", "slterms:location")}
    assert defaults == {"dcterms:type": "base", "slterms:kind": "machine",
                        "dcterms:format": "raw", "dcterms:compression": None,
                        "dcterms:creator": None, "slterms:os": None, "dcterms:title": None,
                        "slterms:location": None}
    created = date(text(document, f"{DESCRIPTION}/dcterms:created"))
    assert before <= created <= after
    assert date(text(document, f"{DESCRIPTION}/dcterms:valid")) - created == timedelta(days=365)
    assert text(document, f"{DESCRIPTION}/slreq:endorsement") is None  # present, empty


def test_the_validity_option_sets_the_period(capsys, tmp_path, images):
    document = built(capsys, images[""], tmp_path / "meta.xml", "--validity", "30")
    created = date(text(document, f"{DESCRIPTION}/dcterms:created"))
    assert date(text(document, f"{DESCRIPTION}/dcterms:valid")) - created == timedelta(days=30)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_a_bad_validity_from_the_environment_is_a_clear_error(value, capsys, tmp_path, images,
                                                              monkeypatch):
    monkeypatch.setenv("STRATUSLAB_VALIDITY", value)
    output = tmp_path / "meta.xml"
    code, out, err = run(capsys, build.main, images[""], "--output", output)
    assert (code, out) == (1, "")
    assert err == (f"error: validity must be a whole number of days of at least 1, "
                   f"not {value!r}\n")
    assert not output.exists()


def test_the_format_is_guessed_from_the_name_under_the_compression_suffix(capsys, tmp_path):
    data = image_content(4096, 4096)
    image = tmp_path / "disk.qcow2.bz2"
    image.write_bytes(bz2.compress(data))
    document = built(capsys, image, tmp_path / "meta.xml")
    assert text(document, f"{DESCRIPTION}/dcterms:format") == "qcow2"
    assert text(document, f"{DESCRIPTION}/dcterms:compression") == "bz2"
    assert checksums(document) == expected_checksums(data)


def test_the_compression_option_overrides_the_name(capsys, tmp_path, content):
    image = tmp_path / "appliance.bin"
    image.write_bytes(lzma.compress(content[:100_000]))
    document = built(capsys, image, tmp_path / "meta.xml", "--compression", "xz")
    assert text(document, f"{DESCRIPTION}/dcterms:compression") == "xz"
    assert checksums(document) == expected_checksums(content[:100_000])
    assert text(document, f"{DESCRIPTION}/slreq:bytes") == "100000"


def test_correct_given_checksums_are_accepted_in_any_case(capsys, tmp_path, images, content):
    want = expected_checksums(content)
    document = built(capsys, images[".zst"], tmp_path / "meta.xml", "--sha1",
                     want["SHA-1"].upper(), "--md5", want["MD5"], "--sha256", want["SHA-256"],
                     "--sha512", want["SHA-512"], "--bytes", str(len(content)))
    assert checksums(document) == want


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-1", "SHA-256", "SHA-512"])
def test_a_wrong_given_checksum_is_an_error_naming_it(algorithm, capsys, tmp_path, images,
                                                      content):
    wrong = HASHES[algorithm](b"another image").hexdigest()
    option = "--" + algorithm.lower().replace("-", "")
    output = tmp_path / "meta.xml"
    code, out, err = run(capsys, build.main, images[".gz"], option, wrong, "--output", output)
    actual = HASHES[algorithm](content).hexdigest()
    assert (code, out) == (1, "")
    assert err == (f"error: slreq:checksum: the image's {algorithm} is {actual}, not {wrong} "
                   "[given-checksum]\n")
    assert not output.exists()


def test_a_wrong_given_size_is_an_error(capsys, tmp_path, images, content):
    code, out, err = run(capsys, build.main, images[".xz"], "--bytes", len(content) - 1)
    assert (code, out) == (1, "")
    assert err == (f"error: slreq:bytes: the image has {len(content)} bytes, "
                   f"not {len(content) - 1} [given-size]\n")


def test_bytes_and_sha1_describe_an_image_that_is_not_here(capsys, tmp_path):
    data = b"an image somewhere else\n" * 1000
    sha1, sha256 = hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()
    document = built(capsys, None, tmp_path / "meta.xml", "--bytes", len(data), "--sha1", sha1,
                     "--sha256", sha256.upper(), "--location", "http://x.example/i.img")
    assert checksums(document) == {"SHA-1": sha1, "SHA-256": sha256}
    assert text(document, f"{DESCRIPTION}/slreq:bytes") == str(len(data))
    assert text(document, f"{DESCRIPTION}/dcterms:identifier") == identifier_of(sha1)
    assert text(document, "/rdf:RDF/rdf:Description/@rdf:about") == "#" + identifier_of(sha1)


@pytest.mark.parametrize("options", [[], ["--bytes", "10"], ["--sha1", "a" * 40]])
def test_without_an_image_both_bytes_and_sha1_are_needed(options, capsys):
    code, out, err = run(capsys, build.main, *options)
    assert (code, out) == (1, "")
    assert err == "error: image: give an image file, or --bytes and --sha1 [required]\n"


def test_a_missing_image_is_an_error(capsys, tmp_path):
    code, out, err = run(capsys, build.main, tmp_path / "nowhere.img")
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and str(tmp_path / "nowhere.img") in err


def test_a_truncated_compressed_image_is_a_clear_error(capsys, tmp_path, images):
    cut = tmp_path / "cut.img.gz"
    cut.write_bytes(images[".gz"].read_bytes()[:50_000])
    code, out, err = run(capsys, build.main, cut)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: image: {cut}: corrupt gz stream: ")
    assert err.endswith(" [compression]\n")


@pytest.mark.parametrize("skipped", [["md5"], ["sha256"], ["sha512"], ["md5", "sha256", "sha512"]])
def test_no_options_leave_checksums_out(skipped, capsys, tmp_path, images, content):
    document = built(capsys, images[".bz2"], tmp_path / "meta.xml",
                     *[f"--no-{name}" for name in skipped])
    left_out = {name.upper().replace("SHA", "SHA-") for name in skipped}
    assert checksums(document) == {a: v for a, v in expected_checksums(content).items()
                                   if a not in left_out}


def test_dash_output_sends_the_document_to_standard_output(capsys, tmp_path, home, images,
                                                         content):
    code, out, err = run(capsys, build.main, images[".xz"], "--title", "to stdout", "-o", "-")
    assert (code, err) == (0, "")
    assert out.startswith("<?xml")
    data = out.encode()
    assert checksums(data) == expected_checksums(content)
    assert text(data, f"{DESCRIPTION}/dcterms:title") == "to stdout"
    assert list(tmp_path.iterdir()) == [home]
    assert list(home.iterdir()) == []


def test_without_output_the_original_file_name_is_used(capsys, tmp_path, images, content,
                                                       monkeypatch):
    """The original command wrote OS-OSVERSION-ARCH-TYPE-VERSION.xml in the current folder
    (the OpenStack@LAL talk shows SL-6.6-x86_64-base-1.0.xml)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, build.main, images[""], "--os", "SL", "--os-version", "6.6",
                         "--os-arch", "x86_64", "--image-version", "1.0")
    assert (code, out, err) == (0, "wrote SL-6.6-x86_64-base-1.0.xml\n", "")
    assert checksums(tmp_path / "SL-6.6-x86_64-base-1.0.xml") == expected_checksums(content)

    code, out, err = run(capsys, build.main, images[""], "--os", "../../etc/x", "-q")
    assert (code, out, err) == (0, "", "")
    assert (tmp_path / ".._.._etc_x-base.xml").is_file()  # no path in a default name


def test_every_element_the_original_client_requires_is_written(capsys, tmp_path, images):
    """The original uploader and nodes require these; unknown ones are written empty, as the
    original template did, and read back as unknown."""
    document = built(capsys, images[""], tmp_path / "meta.xml")
    for element in ("dcterms:description", "dcterms:compression", "slterms:os",
                    "slterms:os-version", "slterms:os-arch", "slterms:version",
                    "dcterms:type", "dcterms:created", "dcterms:valid"):
        assert len(texts(document, f"{DESCRIPTION}/{element}")) == 1, element
    assert text(document, f"{DESCRIPTION}/slterms:os-version") is None  # empty element
    assert run(capsys, validate.main, document)[0] == 0
    entry = model.from_document(validation.check(document.read_bytes()))
    assert (entry.os_version, entry.description, entry.compression) == (None, None, None)


def test_build_json_prints_the_entry(capsys, tmp_path, images, content):
    output = tmp_path / "meta.xml"
    code, out, err = run(capsys, build.main, images[".zst"], "--json", "--output", output,
                         "--tag", "json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert set(result) == {"output", "appliance"}
    assert result["output"] == str(output)
    entry = result["appliance"]
    want = expected_checksums(content)
    assert (entry["identifier"], entry["bytes"], entry["checksums"], entry["compression"],
            entry["tag"]) == (identifier_of(want["SHA-1"]), len(content), want, "zst", "json")
    assert checksums(output) == want


# --- 4. stratus-sign-metadata ---------------------------------------------------------------

def test_signing_in_place_keeps_the_original(capsys, unsigned, p12, rsa_signer):
    original = unsigned.read_bytes()
    code, out, err = run(capsys, sign.main, unsigned, *p12)
    assert (code, err) == (0, "")
    assert out == (f"signed {unsigned}: {text(original, f'{DESCRIPTION}/dcterms:identifier')} "
                   "by jane.tester@example.org\n")
    backup = unsigned.with_name(unsigned.name + ".orig")
    assert backup.read_bytes() == original
    signed = unsigned.read_bytes()
    assert signed != original
    assert text(signed, "/rdf:RDF/ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate") \
        is not None
    assert run(capsys, validate.main, unsigned)[:2] == (0, signer_line(unsigned, rsa_signer)
                                                        + "\n")


def test_signing_into_an_output_leaves_the_input_untouched(capsys, tmp_path, unsigned, p12,
                                                           rsa_signer):
    original = unsigned.read_bytes()
    output = tmp_path / "signed.xml"
    code, out, err = run(capsys, sign.main, unsigned, *p12, "--output", output)
    assert (code, err) == (0, "")
    assert out == (f"signed {output}: {text(original, f'{DESCRIPTION}/dcterms:identifier')} "
                   "by jane.tester@example.org\n")
    assert unsigned.read_bytes() == original
    assert not unsigned.with_name(unsigned.name + ".orig").exists()
    assert run(capsys, validate.main, output)[:2] == (0, signer_line(output, rsa_signer) + "\n")


def test_sign_json_reports_the_endorsement(capsys, unsigned, p12, rsa_signer):
    code, out, err = run(capsys, sign.main, unsigned, *p12, "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    endorsement = result["endorsement"]
    assert (result["output"], result["identifier"]) == (
        str(unsigned), text(unsigned, f"{DESCRIPTION}/dcterms:identifier"))
    assert (endorsement["email"], endorsement["subject"], endorsement["issuers"]) == (
        "jane.tester@example.org", rsa_signer.subject.rfc4514_string(),
        [rsa_signer.certificate.issuer.rfc4514_string()])
    assert endorsement["created"] == text(unsigned, f"{DESCRIPTION}/slreq:endorsement/"
                                                    "dcterms:created")


def test_email_is_needed_when_the_certificate_has_none(capsys, tmp_path, unsigned,
                                                       signer_without_email):
    key, certificate = pki.write_pem(signer_without_email, tmp_path, "noah")
    original = unsigned.read_bytes()
    code, out, err = run(capsys, sign.main, unsigned, "--pem-key", key, "--pem-cert",
                         certificate)
    assert (code, out) == (1, "")
    assert err == ("error: slreq:email: the certificate carries no email address: give the "
                   "endorser's email (--email) [endorser-email]\n")
    assert unsigned.read_bytes() == original
    assert not unsigned.with_name(unsigned.name + ".orig").exists()

    code, out, err = run(capsys, sign.main, unsigned, "--pem-key", key, "--pem-cert",
                         certificate, "--email", "noah.mail@example.org")
    assert (code, err) == (0, "")
    assert text(unsigned, f"{ENDORSER}/slreq:email") == "noah.mail@example.org"
    assert run(capsys, validate.main, unsigned)[:2] == (
        0, signer_line(unsigned, signer_without_email) + "; the certificate does not carry "
        "the email noah.mail@example.org: unproven\n")


def test_the_certificate_email_wins_over_the_email_option(capsys, unsigned, p12):
    code, _, err = run(capsys, sign.main, unsigned, *p12, "--email", "someone@example.org")
    assert (code, err) == (0, "")
    assert text(unsigned, f"{ENDORSER}/slreq:email") == "jane.tester@example.org"


@pytest.mark.parametrize("output", [False, True], ids=["in-place", "output"])
def test_a_wrong_p12_password_writes_nothing(output, capsys, tmp_path, unsigned, rsa_signer,
                                             monkeypatch):
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    monkeypatch.setenv("STRATUSLAB_P12_PASSWORD", "not the password")
    original = unsigned.read_bytes()
    before = sorted(tmp_path.rglob("*"))
    extra = ["--output", tmp_path / "signed.xml"] if output else []
    code, out, err = run(capsys, sign.main, unsigned, "--p12-cert", path, *extra)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: credentials: cannot open {path}: wrong password or not a "
                          "PKCS#12 file")
    assert err.endswith("[pkcs12]\n")
    assert "not the password" not in err
    assert unsigned.read_bytes() == original
    assert sorted(tmp_path.rglob("*")) == before


def test_without_a_password_and_no_terminal_the_error_says_how_to_give_it(
        capsys, tmp_path, unsigned, rsa_signer, monkeypatch):
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    code, out, err = run(capsys, sign.main, unsigned, "--p12-cert", path)
    assert (code, out) == (1, "")
    assert err == ("error: the p12 password is needed: set STRATUSLAB_P12_PASSWORD or "
                   "--p12-password-file (no terminal to prompt on)\n")


def test_the_password_file_option_beats_the_environment(capsys, tmp_path, unsigned,
                                                        rsa_signer, monkeypatch):
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    secret = tmp_path / "password"
    secret.write_text(pki.PASSWORD.decode() + "\n")
    monkeypatch.setenv("STRATUSLAB_P12_PASSWORD", "an old password")
    code, _, err = run(capsys, sign.main, unsigned, "--p12-cert", path, "--p12-password-file",
                       secret)
    assert (code, err) == (0, "")


def test_without_credentials_the_error_names_the_options(capsys, unsigned):
    code, out, err = run(capsys, sign.main, unsigned)
    assert (code, out) == (1, "")
    assert err == ("error: no signing credentials: give --p12-cert, or --pem-key and "
                   "--pem-cert (or set them in the config file)\n")


@pytest.mark.parametrize("argv", [
    ["--p12-pass", "s3cret"], ["--p12-pass=s3cret"], ["--pem-password", "s3cret"],
    ["--password", "s3cret"], ["--pass", "s3cret"]])
def test_unknown_password_options_are_refused_without_echoing_the_value(argv, capsys,
                                                                        unsigned, p12):
    with pytest.raises(SystemExit) as exited:
        sign.main([str(unsigned), *p12, *argv])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "unrecognized arguments: " + argv[0].split("=")[0] in err
    assert "s3cret" not in err
    assert not unsigned.with_name(unsigned.name + ".orig").exists()


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_the_original_password_option_works_with_a_warning(form, capsys, tmp_path, unsigned,
                                                           rsa_signer, monkeypatch):
    """Old scripts pass --p12-password VALUE: accepted, with a warning that others can
    read it; the value itself is never printed."""
    monkeypatch.delenv("STRATUSLAB_P12_PASSWORD", raising=False)
    path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    secret = pki.PASSWORD.decode()
    option = ["--p12-password", secret] if form == "separate" else [f"--p12-password={secret}"]
    code, out, err = run(capsys, sign.main, unsigned, "--p12-cert", path, *option)
    assert code == 0
    assert err.startswith("warning: --p12-password shows the password to every user")
    assert secret not in err + out
    assert text(unsigned, f"{ENDORSER}/slreq:email") == "jane.tester@example.org"


def test_a_missing_p12_file_is_reported_before_any_password_is_asked(capsys, tmp_path,
                                                                     unsigned):
    code, out, err = run(capsys, sign.main, unsigned, "--p12-cert", tmp_path / "absent.p12")
    assert (code, out) == (1, "")
    assert err == f"error: the PKCS#12 file {tmp_path / 'absent.p12'} does not exist\n"


def test_the_password_options(capsys):
    options = [o for a in sign.build_parser()._actions for o in a.option_strings]
    assert [o for o in options if "pass" in o] == ["--p12-password-file", "--p12-password",
                                                   "--pem-password-file"]


def test_an_unknown_profile_from_the_environment_is_a_clear_error(capsys, unsigned, p12,
                                                                  monkeypatch):
    monkeypatch.setenv("STRATUSLAB_PROFILE", "rsa-md5")
    code, out, err = run(capsys, sign.main, unsigned, *p12)
    assert (code, out) == (1, "")
    assert err == "error: unknown signature profile 'rsa-md5'; known: default, stratuslab\n"


def test_a_certificate_of_another_key_is_named_not_the_key(capsys, tmp_path, unsigned,
                                                           rsa_signer, ec_signer):
    """The error named the key file, which is right; the certificate is what is wrong."""
    key, _ = pki.write_pem(rsa_signer, tmp_path, "rsa")
    _, other = pki.write_pem(ec_signer, tmp_path, "ec")
    code, out, err = run(capsys, sign.main, unsigned, "--pem-key", key, "--pem-cert", other)
    assert (code, out) == (1, "")
    assert err == (f"error: credentials: the certificate in {other} does not belong to the "
                   f"private key in {key} [key-mismatch]\n")


def test_signing_a_malformed_document_fails_and_keeps_it(capsys, tmp_path, p12):
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>")
    code, out, err = run(capsys, sign.main, broken, *p12)
    assert (code, out) == (1, "")
    assert err.startswith("error: document: not well-formed XML")
    assert broken.read_bytes().endswith(b"ns#'>")
    assert not broken.with_name("broken.xml.orig").exists()


# --- 5. stratus-validate-metadata -----------------------------------------------------------

@pytest.fixture
def three_files(capsys, tmp_path, unsigned, p12) -> tuple[Path, Path, Path]:
    """A signed document, a tampered copy of it and a malformed file."""
    good = tmp_path / "good.xml"
    assert run(capsys, sign.main, unsigned, *p12, "--output", good)[0] == 0
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(good.read_bytes().replace(b"original title", b"0riginal title"))
    malformed = tmp_path / "malformed.xml"
    malformed.write_bytes(b"this is not XML <")
    return good, tampered, malformed


def test_validate_gives_one_verdict_per_file_and_counts_the_invalid(capsys, three_files,
                                                                    rsa_signer):
    good, tampered, malformed = three_files
    code, out, err = run(capsys, validate.main, good, tampered, malformed)
    assert (code, err) == (2, "")
    lines = out.splitlines()
    assert lines[0] == signer_line(good, rsa_signer)
    assert lines[1] == f"{tampered}: INVALID"
    assert lines[2].startswith("  - Signature: the signature does not match the document (it "
                               "was changed after signing, or signed with another key)")
    assert lines[2].endswith("[signature-value]")
    assert lines[3] == f"{malformed}: INVALID"
    assert lines[4].startswith("  - document: not well-formed XML")
    assert lines[4].endswith("[not-xml]")
    assert len(lines) == 5


def test_validate_json(capsys, three_files, rsa_signer):
    good, tampered, malformed = three_files
    code, out, err = run(capsys, validate.main, "--json", good, tampered, malformed)
    assert (code, err) == (2, "")
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(good), str(tampered), str(malformed)]
    assert results[0] == {
        "file": str(good), "valid": True,
        "identifier": text(good, f"{DESCRIPTION}/dcterms:identifier"), "status": "valid",
        "signed": True, "signer": rsa_signer.subject.rfc4514_string(),
        "email": "jane.tester@example.org", "email_proof": "certificate",
        "judged_at": results[0]["judged_at"], "problems": []}
    for result in results[1:]:
        assert set(result) == {"file", "valid", "problems"}
        assert result["valid"] is False
        for problem in result["problems"]:
            assert set(problem) == {"element", "rule", "message"}
            assert problem["message"]
    assert [(p["element"], p["rule"]) for p in results[1]["problems"]] == [
        ("Signature", "signature-value")]
    assert [(p["element"], p["rule"]) for p in results[2]["problems"]] == [
        ("document", "not-xml")]


def test_all_valid_is_exit_zero(capsys, tmp_path, three_files, unsigned, rsa_signer):
    good = three_files[0]
    code, out, err = run(capsys, validate.main, good, unsigned, good)
    assert (code, err) == (0, "")
    assert out.splitlines() == [signer_line(good, rsa_signer),
                                f"{unsigned}: valid, not signed, status valid",
                                signer_line(good, rsa_signer)]


def test_an_unsigned_document_is_invalid_when_a_signature_is_required(capsys, unsigned):
    code, out, _ = run(capsys, validate.main, "--require-signature", unsigned)
    assert code == 1
    assert out == (f"{unsigned}: INVALID\n  - Signature: the document is not signed "
                   "[signed]\n")


def test_a_missing_file_is_invalid_and_named(capsys, tmp_path, three_files):
    missing = tmp_path / "missing.xml"
    code, out, _ = run(capsys, validate.main, "--json", missing, *three_files)
    assert code == 3
    first = json.loads(out)[0]
    assert (first["file"], first["valid"], first["problems"][0]["rule"]) == (
        str(missing), False, "readable")


# --- 6. stratus-copy-config and the order of precedence -------------------------------------

def test_copy_config_writes_a_commented_user_config(capsys, home):
    code, out, err = run(capsys, copy_config.main)
    path = home / CONFIG
    assert (code, out, err) == (0, f"wrote {path}\n", "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    # The original layout: [default] selects a section, which holds the settings.
    assert [line for line in lines if line and not line.startswith("#")] == \
        ["[default]", "selected_section = marketplace", "[marketplace]"]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert dict(parser["marketplace"]) == {}

    # Every commented setting is a real option of the commands that read it (the original
    # key names stand for ours).
    keys = [m.group(1) for line in lines if (m := re.match(r"#(\w+) = ", line))]
    assert {"author", "validity", "p12_certificate", "p12_password_file", "pem_key",
            "pem_certificate", "email", "profile", "marketplace_endpoint"} <= set(keys)
    ours = {original: key for key, original in config.ORIGINAL_KEYS.items()}
    options = {o for p in (build.build_parser(), sign.build_parser(), upload.build_parser())
               for a in p._actions for o in a.option_strings}
    assert [k for k in keys if "--" + ours.get(k, k).replace("_", "-") not in options] == []


def test_copy_config_refuses_to_overwrite_without_force(capsys, home):
    path = write_config(home, author="Mine")
    mine = path.read_text()
    code, out, err = run(capsys, copy_config.main)
    assert (code, out, err) == (1, "", f"error: {path} exists; use --force to replace it\n")
    assert path.read_text() == mine

    code, out, err = run(capsys, copy_config.main, "--force")
    assert (code, out, err) == (0, f"wrote {path}\n", "")
    assert path.read_text() == copy_config.TEMPLATE


def test_copy_config_force_replaces_a_broken_config(capsys, home):
    path = home / CONFIG
    path.parent.mkdir()
    path.write_text("this is not an ini file\n")
    code, out, err = run(capsys, copy_config.main, "--force")
    assert (code, out, err) == (0, f"wrote {path}\n", "")
    assert path.read_text() == copy_config.TEMPLATE


def test_copy_config_output_and_json(capsys, tmp_path, home):
    target = tmp_path / "elsewhere" / "my.cfg"
    code, out, err = run(capsys, copy_config.main, "--output", target, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"output": str(target)}
    assert target.read_text() == copy_config.TEMPLATE
    assert not (home / CONFIG).exists()


def uncomment(home: Path, key: str, value: str) -> None:
    """Turn ``#key = ...`` of the copied config into ``key = value``."""
    path = home / CONFIG
    copied = path.read_text()
    assert f"\n#{key} = " in copied
    path.write_text(re.sub(rf"^#{key} = .*$", f"{key} = {value}", copied, flags=re.M))


@pytest.mark.parametrize("layers", [
    (), ("file",), ("file", "environment"), ("file", "environment", "option"),
    ("environment",), ("option",), ("file", "option")])
def test_author_and_validity_precedence(layers, capsys, tmp_path, home, images, monkeypatch):
    assert run(capsys, copy_config.main)[0] == 0
    options = []
    if "file" in layers:
        uncomment(home, "author", "File Author")
        uncomment(home, "validity", "10")
    if "environment" in layers:
        monkeypatch.setenv("STRATUSLAB_AUTHOR", "Environment Author")
        monkeypatch.setenv("STRATUSLAB_VALIDITY", "20")
    if "option" in layers:
        options = ["--author", "Option Author", "--validity", "30"]
    document = built(capsys, images[""], tmp_path / "meta.xml", *options)

    winner = layers[-1] if layers else None
    author = {None: None, "file": "File Author", "environment": "Environment Author",
              "option": "Option Author"}[winner]
    days = {None: 365, "file": 10, "environment": 20, "option": 30}[winner]
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == author
    created = date(text(document, f"{DESCRIPTION}/dcterms:created"))
    assert date(text(document, f"{DESCRIPTION}/dcterms:valid")) - created == timedelta(days=days)


@pytest.mark.parametrize("layers", [
    ("file",), ("file", "environment"), ("file", "environment", "option")])
def test_email_precedence_when_signing(layers, capsys, tmp_path, home, unsigned,
                                       signer_without_email, monkeypatch):
    key, certificate = pki.write_pem(signer_without_email, tmp_path, "noah")
    write_config(home, pem_key=str(key), pem_cert=str(certificate), email="file@example.org")
    options = []
    if "environment" in layers:
        monkeypatch.setenv("STRATUSLAB_EMAIL", "environment@example.org")
    if "option" in layers:
        options = ["--email", "option@example.org"]
    code, _, err = run(capsys, sign.main, unsigned, *options)
    assert (code, err) == (0, "")
    assert text(unsigned, f"{ENDORSER}/slreq:email") == f"{layers[-1]}@example.org"


def test_credentials_and_profile_from_the_config_file(capsys, tmp_path, home, unsigned,
                                                      ec_signer):
    path = pki.write_pkcs12(ec_signer, tmp_path / "eve.p12", password=b"eve's secret")
    secret = home / ".stratuslab" / "p12-password"
    secret.parent.mkdir()
    secret.write_text("eve's secret")
    write_config(home, p12_cert=str(path), p12_password_file="~/.stratuslab/p12-password",
                 profile="stratuslab")
    code, _, err = run(capsys, sign.main, unsigned)
    assert (code, err) == (0, "")
    assert text(unsigned, f"{ENDORSER}/slreq:email") == "eve.curve@example.org"
    assert text(unsigned, "/rdf:RDF/ds:Signature/ds:SignedInfo/ds:SignatureMethod/@Algorithm") \
        == SIGNATURE_METHODS["stratuslab", pki.EC]


def test_the_config_option_and_variable_choose_the_file(capsys, tmp_path, home, images,
                                                        monkeypatch):
    write_config(home, author="Home Author")
    chosen = tmp_path / "chosen.cfg"
    chosen.write_text("[default]\nauthor = Chosen Author\n")
    by_variable = tmp_path / "variable.cfg"
    by_variable.write_text("[default]\nauthor = Variable Author\n")

    document = built(capsys, images[""], tmp_path / "a.xml")
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "Home Author"
    monkeypatch.setenv("STRATUSLAB_CONFIG", str(by_variable))
    document = built(capsys, images[""], tmp_path / "b.xml")
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "Variable Author"
    document = built(capsys, images[""], tmp_path / "c.xml", "--config", chosen)
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "Chosen Author"


def test_a_broken_config_file_is_a_clear_error(capsys, home, images):
    path = home / CONFIG
    path.parent.mkdir()
    path.write_text("author = no section\n")
    code, out, err = run(capsys, build.main, images[""])
    assert (code, out) == (1, "")
    assert err.startswith(f"error: cannot read config file {path}: ")


# --- 7. progress ----------------------------------------------------------------------------

class Terminal(io.StringIO):
    """Standard error as a terminal: the one stand-in here; it only answers isatty()."""

    def isatty(self) -> bool:
        return True


def progress_updates(shown: str, label: str) -> list[re.Match]:
    """Each state of tqdm's line: (percentage or None, count with its unit prefix)."""
    pattern = re.compile(rf"{re.escape(label)}: (?: *(\d+)%\|[^|]*\| )?"
                         r"(\d+(?:\.\d+)?[kMGT]?)B(?:/\S+B)? \[[^]]*\]")
    updates = [update.strip() for update in shown.split("\r") if update.strip()]
    matches = [pattern.fullmatch(update) for update in updates]
    assert updates and all(matches), updates
    return matches


@pytest.mark.parametrize("suffix", SUFFIXES, ids=lambda s: s or "raw")
def test_progress_on_a_terminal_never_passes_100_percent(suffix, capsys, tmp_path, images,
                                                         content, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    output = tmp_path / "meta.xml"
    assert build.main([str(images[suffix]), "--output", str(output)]) == 0
    assert checksums(output) == expected_checksums(content)

    shown = terminal.getvalue()
    assert shown.endswith("\n")
    matches = progress_updates(shown, f"hashing {images[suffix]}")
    shares = [int(m.group(1)) for m in matches if m.group(1)]
    assert matches[-1].group(2) == f"{len(content) / 1e6:.2f}M"
    if suffix:
        # the compressed file's size is no total for the uncompressed bytes counted
        assert shares == []
    else:
        assert shares[-1] == 100
        assert all(0 <= share <= 100 for share in shares)


@pytest.mark.parametrize(("size", "shown"), [(300, "300"), (5_000, "5.00k")])
def test_a_small_files_progress_is_in_bytes_or_kilobytes(size, shown, tmp_path, monkeypatch):
    """Formerly "0.00 GB" for anything under 5 MB."""
    image = tmp_path / "small.img"
    image.write_bytes(os.urandom(size))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert build.main([str(image), "--output", str(tmp_path / "meta.xml")]) == 0
    assert progress_updates(terminal.getvalue(), f"hashing {image}")[-1].group(2) == shown
    assert "GB" not in terminal.getvalue()


@pytest.mark.parametrize("terminal", [False, True], ids=["not-a-terminal", "quiet"])
def test_no_progress_off_a_terminal_or_when_quiet(terminal, capsys, tmp_path, images,
                                                  monkeypatch):
    if terminal:
        monkeypatch.setattr(sys, "stderr", Terminal())
    options = ["-q"] if terminal else []
    assert build.main([str(images[".gz"]), "--output", str(tmp_path / "m.xml"), *options]) == 0
    assert (sys.stderr.getvalue() if terminal else capsys.readouterr().err) == ""


# --- end to end: the installed console scripts ----------------------------------------------

def test_the_installed_commands_end_to_end(tmp_path, home, content, rsa_signer):
    image = tmp_path / "appliance.img.xz"
    image.write_bytes(lzma.compress(content))
    p12_path = pki.write_pkcs12(rsa_signer, tmp_path / "jane.p12")
    env = clean_environ(HOME=str(home), STRATUSLAB_P12_PASSWORD=pki.PASSWORD.decode())

    def command(name: str, *args) -> subprocess.CompletedProcess:
        return subprocess.run([script(name), *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)

    result = command("stratus-copy-config")
    assert (result.returncode, result.stdout) == (0, f"wrote {home / CONFIG}\n")
    uncomment(home, "author", "Config Author")
    uncomment(home, "p12_certificate", str(p12_path))

    document = tmp_path / "appliance.xml"
    result = command("stratus-build-metadata", image, "--output", document, "--os", "ttylinux")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")  # no TTY: quiet
    want = expected_checksums(content)
    assert checksums(document) == want
    assert text(document, f"{DESCRIPTION}/dcterms:creator") == "Config Author"
    assert text(document, f"{DESCRIPTION}/dcterms:compression") == "xz"

    result = command("stratus-sign-metadata", document, "--p12-pass", "s3cret")
    assert result.returncode == 2
    assert "unrecognized arguments: --p12-pass" in result.stderr
    assert "s3cret" not in result.stderr

    result = command("stratus-sign-metadata", document)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (f"signed {document}: {identifier_of(want['SHA-1'])} by "
                             "jane.tester@example.org\n")
    assert Path(f"{document}.orig").exists()

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(document.read_bytes().replace(b"ttylinux", b"ttyLinux"))
    result = command("stratus-validate-metadata", document)
    assert (result.returncode, result.stdout) == (0, signer_line(document, rsa_signer) + "\n")
    result = command("stratus-validate-metadata", "--json", document, tampered)
    assert result.returncode == 1
    assert [r["valid"] for r in json.loads(result.stdout)] == [True, False]
    assert xmlsec1_verify(document, rsa_signer.certificate, tmp_path).returncode == 0


# --- contradictions and stray passwords ------------------------------------------------------


def test_a_given_checksum_that_is_also_left_out_is_an_error(capsys, tmp_path, images,
                                                            content):
    md5 = hashlib.md5(content).hexdigest()
    output = tmp_path / "meta.xml"
    code, out, err = run(capsys, build.main, images[".gz"], "--md5", md5, "--no-md5",
                         "--output", output)
    assert (code, out) == (1, "")
    assert err == ("error: slreq:checksum: --md5 gives the MD5 that --no-md5 leaves out "
                   "[given-checksum]\n")
    assert not output.exists()


def test_a_pem_password_in_the_environment_does_not_stop_a_plain_key(monkeypatch, capsys,
                                                                     tmp_path, unsigned,
                                                                     rsa_signer):
    monkeypatch.setenv("STRATUSLAB_PEM_PASSWORD", "meant for another key")
    key, certificate = pki.write_pem(rsa_signer, tmp_path)
    code, _, err = run(capsys, sign.main, unsigned, "--pem-key", key, "--pem-cert",
                       certificate)
    assert (code, err) == (0, "")
    assert text(unsigned, f"{ENDORSER}/slreq:email")
    assert run(capsys, validate.main, unsigned)[0] == 0
