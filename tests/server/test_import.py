"""Moving an original StratusLab marketplace over: ``stratus-marketplace import DIR``.

A generated original data directory of a few hundred documents, in the original's layout
(``metadata/<identifier>/<email>/<created>.xml``) and its habits: documents re-serialized
(no XML declaration, empty elements written open and closed, CRLF line ends), certificates
that expired years ago, older versions beside newer ones, deprecated and expired entries,
tags. Among them: a tampered file, a file in the wrong place, a document signed after its
certificate expired, and one already uploaded here. Every expectation is worked out here
from what the test wrote, then checked entry by entry through the HTTP API.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marketplace import cli
from marketplace.store.base import Entry
from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories, pki
from tests.live.conftest import clean_environ, script

EPOCH = datetime(2013, 3, 1, tzinfo=UTC)
FOREVER = datetime(2099, 1, 1, tzinfo=UTC)


@dataclass
class Written:
    """One file of the original directory and what should become of it."""

    path: Path
    identifier: str
    email: str
    created: datetime
    outcome: str  # accepted | refused
    rule: str = ""
    tag: str | None = None
    deprecated: bool = False
    valid: datetime = FOREVER

    @property
    def created_text(self) -> str:
        return f"{self.created:%Y-%m-%dT%H:%M:%SZ}"


def reserialized(data: bytes) -> bytes:
    """The bytes as the original Java server wrote them back: no declaration, open/close
    empty elements, CRLF; the signature is over the canonical form, so it still holds."""
    text = data.decode()
    text = re.sub(r"^<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<([\w:.-]+)((?:\s+[\w:.-]+=\"[^\"]*\")*)\s*/>", r"<\1\2></\1>", text)
    return text.replace("\n", "\r\n").encode()


@pytest.fixture(scope="module")
def old_pki():
    """A CA of that era (still in the trust store) and three signers whose certificates
    expired in 2015."""
    ca = pki.make_ca("Grid CA", validity=(datetime(2010, 1, 1, tzinfo=UTC),
                                          datetime(2040, 1, 1, tzinfo=UTC)))
    window = (datetime(2012, 1, 1, tzinfo=UTC), datetime(2015, 1, 1, tzinfo=UTC))
    signers = [(pki.make_certificate(ca, f"Signer {n}", email=f"signer{n}@example.org",
                                     validity=window), f"signer{n}@example.org")
               for n in range(3)]
    return ca, signers


def write(root: Path, signer, email: str, created: datetime, image: bytes, **fields) -> Path:
    entry = factories.appliance(image, created=created, **fields)
    data = factories.signed(signer, entry, now=created)
    path = root / "metadata" / entry.identifier / email / f"{created:%Y-%m-%dT%H:%M:%SZ}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(reserialized(data))
    return path


@pytest.fixture(scope="module")
def original(tmp_path_factory, old_pki) -> tuple[Path, list[Written]]:
    """The original data directory and what each file should become."""
    _, signers = old_pki
    root = tmp_path_factory.mktemp("original")
    rng = random.Random(2013)
    written: list[Written] = []
    for number in range(120):
        image = rng.randbytes(64)
        for signer, email in rng.sample(signers, rng.choice((1, 2))):
            created = EPOCH + timedelta(days=rng.randrange(300), seconds=number)
            versions = rng.choice((1, 1, 2))
            for version in range(versions):
                moment = created + timedelta(days=30 * version)
                last = version == versions - 1
                deprecated = last and versions == 2 and number % 3 == 0
                valid = FOREVER if number % 4 else moment + timedelta(days=365)
                tag = f"tag{number % 5}" if number % 2 else None
                fields = {"valid": valid, "tag": tag,
                          "deprecated": "superseded" if deprecated else None}
                path = write(root, signer, email, moment, image, **fields)
                item = Written(path, path.parent.parent.name, email, moment, "accepted",
                               tag=tag, deprecated=deprecated, valid=valid)
                written.append(item)
    # A tampered file: its title changed after signing.
    victim = written[7]
    victim.path.write_bytes(victim.path.read_bytes().replace(b"Test image", b"Evil image"))
    victim.outcome, victim.rule = "refused", "signature-value"
    # A copy in another endorser's folder.
    source = written[11]
    moved = root / "metadata" / source.identifier / "intruder@example.org" / source.path.name
    moved.parent.mkdir(parents=True)
    moved.write_bytes(source.path.read_bytes())
    written.append(Written(moved, source.identifier, "intruder@example.org", source.created,
                           "refused", "original-layout"))
    # Signed in 2016, after the certificate expired.
    late = datetime(2016, 6, 1, tzinfo=UTC)
    path = write(root, signers[0][0], "signer0@example.org", late, b"too late")
    written.append(Written(path, path.parent.parent.name, "signer0@example.org", late,
                           "refused", "certificate-validity"))
    return root, written


@pytest.fixture
def data_dir(tmp_path, old_pki) -> Path:
    ca, _ = old_pki
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem())
    return tmp_path


def run_import(capsys, data_dir: Path, directory: Path) -> tuple[int, list[dict], str]:
    code = cli.main(["import", str(directory), "--data-dir", str(data_dir), "--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_an_original_marketplace_comes_over_entry_by_entry(capsys, monkeypatch, data_dir,
                                                           original, old_pki):
    root, written = original
    monkeypatch.setenv("MARKETPLACE_TRUST_STORE", str(data_dir / "ca.pem"))
    # One document was uploaded here before the move: it is "already there".
    app = create_app(data_dir=str(data_dir))
    known = next(w for w in written if w.outcome == "accepted")
    assert marketplace_of(app).store.add(Entry.from_document(known.path.read_bytes()))
    marketplace_of(app).close()

    code, verdicts, _err = run_import(capsys, data_dir, root)
    assert len(written) > 200
    by_file = {v["file"]: v for v in verdicts}
    assert set(by_file) == {str(w.path) for w in written}
    for item in written:
        verdict = by_file[str(item.path)]
        want = "already there" if item is known else item.outcome
        assert (verdict["outcome"], verdict["rule"]) == (want, item.rule), verdict
    assert code == cli.SOME_REFUSED  # done, with three files refused

    check_catalogue(data_dir, written)

    # A second run adds nothing.
    code, again, _ = run_import(capsys, data_dir, root)
    assert code == cli.SOME_REFUSED
    assert {v["outcome"] for v in again if v["rule"] == ""} == {"already there"}
    check_catalogue(data_dir, written)


def check_catalogue(data_dir: Path, written: list[Written]) -> None:
    """Every accepted file is served byte for byte; the listings show the newest version
    per identifier and endorser with its status; tags resolve to the newest tagged one."""
    app = create_app(data_dir=str(data_dir))
    client = app.test_client()
    try:
        accepted = [w for w in written if w.outcome == "accepted"]
        for item in accepted:
            answer = client.get(f"/metadata/{item.identifier}/{item.email}/{item.created_text}",
                                headers={"Accept": "application/rdf+xml"})
            assert answer.status_code == 200
            assert answer.data == item.path.read_bytes()
        newest: dict[tuple[str, str], Written] = {}
        for item in accepted:
            key = (item.identifier, item.email)
            if key not in newest or item.created > newest[key].created:
                newest[key] = item
        now = datetime.now(UTC)
        for (identifier, email), item in newest.items():
            items = client.get(f"/api/v1/appliances/{identifier}").get_json()["items"]
            mine = [i for i in items if i["email"] == email]
            assert len(mine) == 1
            assert mine[0]["endorsement"]["created"] == item.created_text
            status = "deprecated" if item.deprecated else \
                "expired" if item.valid < now else "valid"
            assert mine[0]["status"] == status, (item.path, mine[0])
        tagged: dict[tuple[str, str], Written] = {}
        for item in accepted:
            if item.tag and not item.deprecated:
                key = (item.email, item.tag)
                if key not in tagged or item.created > tagged[key].created:
                    tagged[key] = item
        assert tagged
        for (email, tag), item in tagged.items():
            answer = client.get(f"/tag/{email}/{tag}", headers={"Accept": "application/json"})
            assert answer.status_code == 200
            assert answer.headers["Content-Location"].endswith(
                f"/{item.identifier}/{email}/{item.created_text}")
    finally:
        marketplace_of(app).close()


def test_uploads_still_judge_certificates_at_upload_time(data_dir, original, monkeypatch):
    """What import accepts as of its endorsement date, an upload refuses: the certificate
    has expired now."""
    _root, written = original
    monkeypatch.setenv("MARKETPLACE_TRUST_STORE", str(data_dir / "ca.pem"))
    app = create_app(data_dir=str(data_dir))
    try:
        item = next(w for w in written if w.outcome == "accepted")
        answer = app.test_client().post("/metadata", data=item.path.read_bytes(),
                                        content_type="application/xml")
        assert answer.status_code == 400
        assert "certificate-validity" in answer.get_data(as_text=True)
    finally:
        marketplace_of(app).close()


def test_a_folder_that_is_not_an_original_data_directory_is_a_clear_error(capsys, tmp_path):
    code = cli.main(["import", str(tmp_path / "nothing"), "--data-dir", str(tmp_path / "d")])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (f"error: {tmp_path / 'nothing'} is not an original marketplace's data "
                   "directory (no metadata/ folder)\n")


def test_a_reader_that_goes_away_ends_the_command_quietly(data_dir, original):
    """``stratus-marketplace import --json DIR | head -1``: exit 141 (SIGPIPE's status), no
    traceback, as the client commands do."""
    root, _ = original
    environ = clean_environ(MARKETPLACE_TRUST_STORE=str(data_dir / "ca.pem"))
    command = subprocess.Popen(
        [script("stratus-marketplace"), "import", str(root), "--data-dir", str(data_dir),
         "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
    first = command.stdout.readline()
    command.stdout.close()  # the reader goes away after one line
    error = command.stderr.read()
    assert command.wait(timeout=120) == 141
    assert json.loads(first)["outcome"] in ("accepted", "refused")
    assert error == b""
