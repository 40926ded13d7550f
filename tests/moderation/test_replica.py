"""Replica mode with real servers: a primary (``stratus-marketplace serve``, gunicorn) and a
replica (``serve`` with PRIMARY_URL, which runs its follower beside gunicorn), both on
127.0.0.1; and ``stratus-marketplace replicate --once`` run as a command."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from marketplace.cli import SOME_REFUSED
from tests import factories, pki
from tests.live.conftest import COMMAND_TIMEOUT, LiveServer, clean_environ, script, wait_for
from tests.moderation.conftest import ADMIN_TOKEN, bearer, signed
from tests.server.conftest import moment

CONVERGE_TIMEOUT = 60.0


def configure(data_dir: Path, **settings: str) -> Path:
    """Write the server's marketplace.cfg (the live servers take no MARKETPLACE_* env)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "marketplace.cfg").write_text(
        "[marketplace]\n" + "".join(f"{k.upper()} = {v}\n" for k, v in settings.items()))
    return data_dir


@pytest.fixture
def primary(tmp_path, admin_files):
    server = LiveServer(configure(tmp_path / "primary",
                                  admin_token_file=admin_files["admin_token_file"]), tmp_path)
    server.start()
    yield server
    server.stop()


def publish(server: LiveServer, document: bytes) -> str:
    """Upload to ``server``; the entry's path (of any server), from the absolute Location."""
    response = requests.post(server.url + "metadata", data=document, timeout=30,
                             headers={"Content-Type": "application/xml",
                                      "Accept": "application/json"})
    assert response.status_code == 201, response.text
    return urlsplit(response.headers["Location"]).path


def documents(server: LiveServer) -> dict[str, bytes]:
    """Every entry (all versions listed by the change feed's keys) as stored bytes."""
    found = {}
    for item in server.search(status="all", limit=500)["items"]:
        found[item["url"]] = server.get(item["url"],
                                        headers={"Accept": "application/rdf+xml"}).content
    return found


def converged(primary: LiveServer, replica: LiveServer):
    return lambda: documents(primary) == documents(replica)


def test_a_replica_converges_on_its_primary_and_refuses_uploads(
        primary, tmp_path, rsa_signer, ec_signer, make_signer):
    image = b"versioned image"
    first = publish(primary, signed(rsa_signer, days_ago=0.5, image=image, title="v1"))
    publish(primary, signed(ec_signer, title="Eve's"))
    removed_later = publish(primary, signed(make_signer("Rita Removed",
                                                        email="rita@example.org")))

    replica = LiveServer(configure(tmp_path / "replica", primary_url=primary.url,
                                   replicate_interval="0.3"), tmp_path)
    try:
        replica.start()
        wait_for(converged(primary, replica), CONVERGE_TIMEOUT, "the replica to copy the "
                 "primary's entries")
        assert replica.search(status="all")["total"] == 3

        refused = requests.post(replica.url + "metadata", data=signed(rsa_signer),
                                headers={"Content-Type": "application/xml",
                                         "Accept": "application/json"}, timeout=30)
        assert refused.status_code == 403
        assert f"read-only replica of {primary.url}" in refused.json()["error"]
        page = requests.post(replica.url + "upload", timeout=30,
                             files={"file": ("x.xml", signed(rsa_signer))})
        assert page.status_code == 403 and "read-only replica" in page.text

        # Uploaded now, endorsed three days ago (before Eve's certificate was valid, which
        # the primary does not mind): found through the feed, and checked as the primary
        # checked it, at upload time.
        publish(primary, signed(ec_signer, days_ago=3, title="backdated"))
        second = publish(primary, signed(rsa_signer, image=image, title="v2"))
        removal = requests.post(primary.url + "admin/api/remove", headers=bearer(), json={
            **dict(zip(("identifier", "email", "created"), removed_later.split("/")[2:],
                       strict=True)), "reason": "test removal"}, timeout=30)
        assert removal.status_code == 200
        wait_for(converged(primary, replica), CONVERGE_TIMEOUT, "the replica to follow")
        assert replica.get(removed_later).status_code == 404
        assert replica.get(first).status_code == 200  # the older version came along
        assert replica.get(second).content == primary.get(second).content
        actions = [c["action"] for c in replica.get("api/v1/changes").json()["changes"]]
        assert actions.count("remove") == 1  # a replica can be followed in turn

        for server in (primary, replica):
            assert ADMIN_TOKEN not in server.log_text()
    finally:
        replica.stop()


def replicate(primary: LiveServer, data_dir: Path, home: Path) -> tuple[int, dict]:
    done = subprocess.run([script("stratus-marketplace"), "replicate", "--once", "--json",
                           "--primary", primary.url, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          env=clean_environ(HOME=str(home)), stdin=subprocess.DEVNULL)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_replicate_once_checks_every_entry_itself_and_remembers_how_far_it_got(
        primary, tmp_path, ca, rsa_signer, other_ca):
    """The replica's trust store knows only the session CA: the primary (which has no trust
    store) holds an entry signed under another CA, which the replica leaves out."""
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(ca.certificate_pem())
    data_dir = configure(tmp_path / "cron-replica", trust_store=str(bundle))
    publish(primary, signed(rsa_signer))
    stranger = pki.make_certificate(other_ca, "Stan Ger", email="stan@example.org")
    publish(primary, signed(stranger))

    status, report = replicate(primary, data_dir, tmp_path)
    assert status == SOME_REFUSED and report["walked"] and report["added"] == 1, \
        "leaving out a refused entry is no failed pull (that is 1)"
    (left_out,) = report["refused"]
    assert left_out["email"] == "stan@example.org" and "no trusted CA" in left_out["reason"]

    status, report = replicate(primary, data_dir, tmp_path)
    assert status == 0 and not report["walked"] and report["added"] == 0

    # Checked as of when the primary published it: a certificate that has expired since
    # still counts, as it did for the primary.
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    short = pki.make_certificate(ca, "Short Lived", email="short@example.org",
                                 validity=(moment(1), soon))
    publish(primary, factories.signed(short, factories.appliance(), now=moment()))
    wait_for(lambda: datetime.now(UTC) > soon + timedelta(seconds=1), 30,
             "the short-lived certificate to expire")
    status, report = replicate(primary, data_dir, tmp_path)
    assert status == 0 and report["added"] == 1 and report["serial"] == 3


def test_replicate_says_why_when_the_primary_cannot_be_read(tmp_path):
    from tests.live.conftest import free_port
    done = subprocess.run([script("stratus-marketplace"), "replicate", "--once", "--primary",
                           f"http://127.0.0.1:{free_port()}", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, env=clean_environ(HOME=str(tmp_path)))
    assert done.returncode == 1 and "could not pull from" in done.stderr


# --- a hostile primary (finding 7) ---------------------------------------------------------


class HostilePrimary:
    """A real HTTP server on 127.0.0.1 that answers as a primary would, with a change feed
    and documents of the test's choosing (a primary that lies or was broken into)."""

    def __init__(self):
        import http.server
        import threading

        self.changes: list[dict] = []
        self.items: list = []  # what its listing (the first walk) shows
        self.documents: dict[str, bytes] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                from urllib.parse import parse_qs, unquote, urlsplit
                url = urlsplit(self.path)
                params = parse_qs(url.query)
                if url.path == "/api/v1/changes":
                    after = int(params["after"][0])
                    body = json.dumps({"last": len(outer.changes), "changes": [
                        c for c in outer.changes
                        if not isinstance(c, dict) or c.get("serial", 0) > after]}).encode()
                elif url.path == "/api/v1/appliances":
                    body = json.dumps({"items": outer.items,
                                       "total": len(outer.items)}).encode()
                elif unquote(url.path) in outer.documents:
                    body = outer.documents[unquote(url.path)]
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, document: bytes, at: datetime, **change) -> None:
        """Offer ``document`` and a publish change (``change`` overrides its fields)."""
        from marketplace.metadata.checks import check_document
        from marketplace.metadata.model import format_date
        entry = check_document(document, at=at).appliance if "identifier" not in change \
            else None
        values = {"identifier": entry.identifier, "email": entry.endorsement.email,
                  "created": format_date(entry.endorsement.created)} if entry else {}
        values.update(change)
        if entry:
            self.documents[f"/metadata/{values['identifier']}/{values['email']}/"
                           f"{values['created']}"] = document
        self.changes.append({"serial": len(self.changes) + 1, "action": "publish",
                             "at": format_date(at), **values})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    primary = HostilePrimary()
    yield primary
    primary.close()


@pytest.fixture
def follower(tmp_path, hostile):
    """A replica's Replicator (real SQLite in tmp_path) following the hostile primary."""
    from marketplace.replica import Replicator
    from marketplace.web.app import create_app
    from marketplace.web.current import marketplace_of
    app = create_app(data_dir=str(tmp_path / "replica"), primary_url=hostile.url)
    market = marketplace_of(app)
    replicator = Replicator(hostile.url, market)
    market.moderation.state.set_mark(replicator.mark_name, "0")  # follow the feed from its start
    yield replicator
    market.close()


def stored_titles(replicator) -> list[str]:
    from marketplace.store.base import Query
    found = replicator.marketplace.store.search(Query(status="all", limit=50)).entries
    return sorted(e.appliance.title for e in found)


def test_a_replica_judges_the_certificate_no_earlier_than_the_endorsement(
        hostile, follower, make_signer):
    """The feed claims a publication time (within the clock skew before the endorsement)
    when the certificate was valid; the endorsement is dated after the certificate expired.
    An upload would be refused: so is the copy."""
    endorsed = moment(2)
    expired = make_signer("Old Key", email="old@example.org", not_before=moment(20),
                          not_after=endorsed - timedelta(minutes=1))
    late = factories.signed(expired, factories.appliance(title="late"), now=endorsed)
    hostile.publish(late, at=endorsed - timedelta(minutes=2))
    good = signed(make_signer("Good", email="good@example.org"), title="good")
    hostile.publish(good, at=moment())

    report = follower.pull()
    assert stored_titles(follower) == ["good"]
    (refused,) = report.refused
    assert refused["email"] == "old@example.org" and "expired" in refused["reason"]


def test_a_replica_refuses_future_dated_and_blocked_endorsements(hostile, follower,
                                                                make_signer):
    future = factories.signed(make_signer("Soon", email="soon@example.org"),
                              factories.appliance(title="future"), now=moment(-2))
    hostile.publish(future, at=moment())
    blocked = make_signer("Blocked Bob", email="bob@example.org")
    follower.marketplace.moderation.block("bob@example.org", "ops", "spam", moment())
    hostile.publish(signed(blocked, title="blocked"), at=moment())
    hostile.publish(signed(make_signer("Good", email="good@example.org"), title="good"),
                    at=moment())

    report = follower.pull()
    assert stored_titles(follower) == ["good"]
    reasons = {r["email"]: r["reason"] for r in report.refused}
    assert "future" in reasons["soon@example.org"] and "blocked" in reasons["bob@example.org"]


def test_a_replica_refuses_an_email_the_certificate_does_not_carry(hostile, follower,
                                                                  make_signer):
    mallory = make_signer("Mallory", email=None)
    claim = factories.signed(mallory, factories.appliance(title="claimed"), now=moment(),
                             email="jane.tester@example.org")
    hostile.publish(claim, at=moment())

    report = follower.pull()
    assert stored_titles(follower) == []
    assert "endorser-email-unproven" in report.refused[0]["reason"]


def test_a_malformed_change_is_skipped_and_reported_and_the_feed_goes_on(
        hostile, follower, make_signer):
    hostile.publish(b"", at=moment(), identifier=None)
    hostile.changes[-1].pop("identifier")
    hostile.changes.append({"serial": 2, "action": "publish"})
    hostile.changes.append("not an object")
    hostile.publish(signed(make_signer("Good", email="good@example.org"), title="good"),
                    at=moment())
    hostile.changes[-1]["serial"] = 4

    report = follower.pull()
    assert stored_titles(follower) == ["good"] and report.serial == 4
    assert len(report.refused) == 3
    assert all("malformed change" in r["reason"] for r in report.refused)
    hostile.publish(signed(make_signer("Later", email="later@example.org"), title="later"),
                    at=moment())
    hostile.changes[-1]["serial"] = 5
    assert follower.pull().added == 1 and stored_titles(follower) == ["good", "later"]


def test_a_malformed_listed_entry_is_skipped_by_the_first_walk(hostile, follower, make_signer):
    hostile.publish(signed(make_signer("Good", email="good@example.org"), title="good"),
                    at=moment())
    change = hostile.changes[-1]
    hostile.items = [{"identifier": "only-an-identifier"}, "junk",
                     {"identifier": change["identifier"], "email": change["email"],
                      "endorsement": {"created": change["created"]}}]

    report = follower.pull(full=True)
    assert report.walked and report.added == 1 and stored_titles(follower) == ["good"]
    assert [r["reason"].split(" without ")[0] for r in report.refused] == \
        ["a listed entry"] * 2
