"""An operator's removal holds against the public bytes: on the real server, re-uploading
a removed entry is refused (410, rule named) until an operator lifts the removal, and the
lift is audited."""

from __future__ import annotations

import subprocess

import requests

from tests import factories
from tests.live.conftest import clean_environ, script

TOKEN = "live-admin-token-" + "Vb3Nq8Lx2Mz6Pw0Rt4Ks"
XML = {"Content-Type": "application/rdf+xml", "Accept": "application/json"}


def configure_admin(server) -> dict[str, str]:
    """An admin token file named in the data dir's marketplace.cfg; the bearer header."""
    server.data_dir.mkdir(parents=True, exist_ok=True)
    tokens = server.data_dir.parent / "admin-tokens"
    tokens.write_text(f"ops:{TOKEN}\n")
    (server.data_dir / "marketplace.cfg").write_text(
        f"[marketplace]\nADMIN_TOKEN_FILE = {tokens}\n")
    return {"Authorization": f"Bearer {TOKEN}"}


def test_a_removed_entry_cannot_be_uploaded_again_until_lifted(own_server, rsa_signer):
    admin = configure_admin(own_server)
    own_server.start()
    url = own_server.url
    document = factories.signed(rsa_signer, factories.appliance(title="Removed for cause"))
    first = requests.post(url + "metadata", data=document, headers=XML, timeout=30)
    assert first.status_code == 201, first.text
    key = {k: first.json()[k] for k in ("identifier", "email", "created")}
    removed = requests.post(url + "admin/api/remove", headers=admin, timeout=30,
                            json={**key, "reason": "malware reported"})
    assert removed.status_code == 200, removed.text

    again = requests.post(url + "metadata", data=document, headers=XML, timeout=30)
    assert again.status_code == 410, f"the removed entry came back: {again.status_code}"
    assert again.json()["problems"][0]["rule"] == "removed-by-operator"
    assert key["identifier"] in again.json()["error"]
    assert own_server.get(first.headers["Location"]).status_code == 404
    feed = own_server.get("api/v1/changes").json()["changes"]
    assert [c["action"] for c in feed] == ["publish", "remove"]

    listed = requests.get(url + "admin/api/tombstones", headers=admin, timeout=30).json()
    assert [t["rule"] for t in listed["tombstones"]] == ["removed-by-operator"]
    lifted = requests.post(url + "admin/api/lift", headers=admin, timeout=30,
                           json={**key, "reason": "the report was wrong"})
    assert lifted.status_code == 200, lifted.text
    back = requests.post(url + "metadata", data=document, headers=XML, timeout=30)
    assert back.status_code == 201, back.text
    audit = requests.get(url + "admin/api/audit", headers=admin, timeout=30).json()["records"]
    assert [(r["action"], r["actor"], r["reason"]) for r in audit[:2]] == [
        ("lifted", "ops", "the report was wrong"), ("removed", "ops", "malware reported")]


def test_the_command_line_lists_and_lifts_removals(own_server, rsa_signer, tmp_path):
    admin = configure_admin(own_server)
    own_server.start()
    document = factories.signed(rsa_signer, factories.appliance(title="Lifted by shell"))
    first = requests.post(own_server.url + "metadata", data=document, headers=XML, timeout=30)
    key = [first.json()[k] for k in ("identifier", "email", "created")]
    requests.post(own_server.url + "admin/api/remove", headers=admin, timeout=30,
                  json=dict(zip(("identifier", "email", "created"), key, strict=True),
                            reason="checking"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script("stratus-marketplace"), *args, "--data-dir",
                               str(own_server.data_dir)], capture_output=True, text=True,
                              env=clean_environ(HOME=str(tmp_path)), timeout=120)

    listed = run("tombstones", "--json")
    assert listed.returncode == 0, listed.stderr
    assert key[0] in listed.stdout and "removed-by-operator" in listed.stdout
    no_reason = run("lift", *key)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    lifted = run("lift", *key, "--reason", "restored after review")
    assert lifted.returncode == 0, lifted.stderr
    assert run("lift", *key, "--reason", "twice").returncode == 1
    back = requests.post(own_server.url + "metadata", data=document, headers=XML, timeout=30)
    assert back.status_code == 201, back.text
    audit = requests.get(own_server.url + "admin/api/audit", headers=admin,
                         timeout=30).json()["records"]
    lift = next(r for r in audit if r["action"] == "lifted")
    assert lift["reason"] == "restored after review" and "command line" in lift["actor"]
