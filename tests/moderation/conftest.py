"""Fixtures of the moderation tests: a real SMTP server on 127.0.0.1 (aiosmtpd) that keeps
what it receives, trust-store files of the session CAs, admin credential files, and apps
with the publication policy configured; every HTTP call goes through the app's test client.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from marketplace.web.app import create_app
from marketplace.web.current import marketplace_of
from tests import factories, pki
from tests.server.conftest import moment

ADMIN_TOKEN = "admin-token-" + "Q7x9Lm2Pz4Rt8Vw1Ks6Hd3Fj5Ng0Bc"
ADMIN_PASSWORD = "correct horse battery staple 42"
SMTP_PASSWORD = "smtp-secret-Zk81Lq"
LINK = re.compile(r"https?://\S+/moderation/(confirm|abort|abuse)\?token=([A-Za-z0-9_-]+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mailbox:
    """What the SMTP server received, parsed."""

    messages: list = field(default_factory=list)
    logins: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope.rcpt_tos, message))
        return "250 OK"

    def wait(self, count: int = 1, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"expected {count} mail(s), got {len(self.messages)}")
            time.sleep(0.02)
        return self.messages

    def links(self, index: int = -1) -> dict[str, str]:
        """The confirm, abort and abuse links of a received mail, by action."""
        body = self.messages[index][1].get_content()
        return {m.group(1): m.group(0) for m in LINK.finditer(body)}


class Authenticator:
    """Accepts one user and password; records logins."""

    def __init__(self, mailbox: Mailbox, user: str, password: str):
        self.mailbox, self.user, self.password = mailbox, user, password

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user \
            and auth_data.password.decode() == self.password
        if ok:
            self.mailbox.logins.append(self.user)
        return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free 127.0.0.1 port: (its mailbox, its port)."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def smtp_with_login() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server that requires the login ``mailer`` / SMTP_PASSWORD."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            authenticator=Authenticator(mailbox, "mailer", SMTP_PASSWORD),
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture(scope="session")
def ca_bundle(tmp_path_factory, ca, intermediate_ca) -> Path:
    """A PEM bundle of the session's root and intermediate CAs."""
    path = tmp_path_factory.mktemp("trust") / "bundle.pem"
    path.write_bytes(ca.certificate_pem() + intermediate_ca.certificate_pem())
    return path


@pytest.fixture
def admin_files(tmp_path) -> dict[str, str]:
    """Settings naming a token file (operator ``ops``) and an accounts file (``alice``)."""
    from werkzeug.security import generate_password_hash
    tokens = tmp_path / "admin-tokens"
    tokens.write_text(f"# operators\nops:{ADMIN_TOKEN}\n")
    accounts = tmp_path / "admin-accounts"
    accounts.write_text(f"alice:{generate_password_hash(ADMIN_PASSWORD)}\n")
    return {"admin_token_file": str(tokens), "admin_accounts_file": str(accounts)}


@pytest.fixture
def make_app(tmp_path) -> Iterator[Callable]:
    """``make_app(**settings)``: a marketplace on SQLite in tmp_path with these settings."""
    apps = []

    def make(**settings):
        app = create_app(**{"data_dir": str(tmp_path / f"data{len(apps)}"), **settings})
        apps.append(app)
        return app

    yield make
    for app in apps:
        marketplace_of(app).close()


@pytest.fixture
def confirming(make_app, smtp, ca_bundle, admin_files, tmp_path) -> Callable:
    """``confirming(whitelist=[...], **settings)``: an app that mails unlisted endorsers
    (the SMTP fixture's server), with the CA bundle as trust store and admin files."""
    _, port = smtp

    def make(whitelist: list[str] = (), **settings):
        listed = tmp_path / "whitelist"
        listed.write_text("# endorsers published at once\n" + "\n".join(whitelist) + "\n")
        values = {"trust_store": str(ca_bundle), "endorser_whitelist": str(listed),
                  "unlisted_endorsers": "confirm", "smtp_host": "127.0.0.1",
                  "smtp_port": str(port), "smtp_from": "marketplace@example.org",
                  "public_url": "http://marketplace.test",
                  "trusted_hosts": "marketplace.test, localhost",  # the test client's host
                  **admin_files, **settings}
        return make_app(**values)

    return make


def upload(client, document: bytes, **kwargs):
    return client.post("/metadata", data=document, content_type="application/xml",
                       headers={"Accept": "application/json"}, **kwargs)


def signed(signer: pki.Issued, days_ago: float = 0, **fields) -> bytes:
    return factories.signed(signer, factories.appliance(**fields), now=moment(days_ago))


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def path_of(link: str) -> str:
    """The path and query of a mailed link (the test client has no host)."""
    return "/" + link.split("://", 1)[1].split("/", 1)[1]
