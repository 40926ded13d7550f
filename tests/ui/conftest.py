"""UI tests: the real server (gunicorn on a free 127.0.0.1 port, started as the live tests
start it) filled over HTTP with real signed documents, driven by headless Chromium.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/install.d/20-browser.sh`` installs
it and Playwright); Playwright's own browser builds are not used, and without either the root
conftest deselects these tests (marker ``browser``) saying why. The catalogue server is
shared by the whole session and only read by the tests; tests that upload use a server of
their module. Each page records the dialogs it opened and the script errors it raised, and
a test fails when a page raised one. Screenshots are taken on every run but written to
docs/screenshots only with ``UPDATE_SCREENSHOTS=1``, so a test run leaves the tree as it was.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller

from tests import factories, pki
from tests.live.conftest import LiveServer
from tests.moderation.conftest import Mailbox
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000

JANE = "jane.tester@example.org"
EVE = "eve.curve@example.org"
OLGA = "olga.orbit@example.org"


# --- the browser ----------------------------------------------------------------------------


def missing() -> str | None:
    """Why these tests cannot run here (no Chromium, no Playwright), or None."""
    hint = "run scripts/install.d/20-browser.sh (as root)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: {hint}"
    if importlib.util.find_spec("playwright") is None:
        return f"Playwright is not installed: {hint}"
    return None


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright, for the whole session."""
    if reason := missing():
        pytest.fail(reason)
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=TIMEOUT_MS)  # a busy CI machine is slow, not wrong
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """What a page did that a person would notice: dialogs, script errors, console errors."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def open_page(browser, viewport=None, **options):
    """A new context and page that records what :class:`Watched` holds."""
    context = browser.new_context(viewport=viewport or DESKTOP, **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    watched = Watched()

    def on_dialog(dialog):
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on("console", lambda m: watched.console.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: watched.requests.append(r.url))
    page.watched = watched
    return context, page


@pytest.fixture
def page(browser):
    """A desktop-sized page with JavaScript on; fails the test if a script raised."""
    context, page = open_page(browser)
    yield page
    errors = page.watched.errors
    context.close()
    assert not errors, f"the page raised script errors: {errors}"


@pytest.fixture
def no_js_page(browser):
    """A desktop-sized page with JavaScript disabled."""
    context, page = open_page(browser, java_script_enabled=False)
    yield page
    context.close()


@pytest.fixture
def phone_page(browser):
    """A phone-sized page (390 x 844, touch) with JavaScript on."""
    context, page = open_page(browser, PHONE, is_mobile=True, has_touch=True)
    yield page
    errors = page.watched.errors
    context.close()
    assert not errors, f"the page raised script errors: {errors}"


def screenshot(page, name: str, height: int = 1400) -> Path | None:
    """Take the top ``height`` pixels of the page as a PNG (kept short so the committed files
    stay small); write it to docs/screenshots (the README points there) only when
    ``UPDATE_SCREENSHOTS=1`` asks, so that running the tests changes no tracked file."""
    width = page.viewport_size["width"]
    full = page.evaluate("document.documentElement.scrollHeight")
    png = page.screenshot(full_page=True, animations="disabled", caret="hide",
                          clip={"x": 0, "y": 0, "width": width, "height": min(full, height)})
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(png)
    return path


# --- servers and documents --------------------------------------------------------------------


def upload(server: LiveServer, document: bytes) -> str:
    """POST a signed document as the upload command does; the path of its entry URL (the
    Location is absolute)."""
    response = requests.post(server.url + "metadata", data=document, timeout=30,
                             headers={"Content-Type": "application/xml",
                                      "Accept": "application/json"})
    assert response.status_code == 201, response.text
    return urlsplit(response.headers["Location"]).path


@pytest.fixture
def confirming_server(tmp_path, ca) -> Iterator[tuple[LiveServer, Mailbox]]:
    """A live server that mails unlisted endorsers through a real SMTP server."""
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem())
    (tmp_path / "whitelist").write_text("# nobody\n")
    server = LiveServer(data, tmp_path)
    (data / "marketplace.cfg").write_text(
        f"[marketplace]\nUNLISTED_ENDORSERS = confirm\nTRUST_STORE = {tmp_path / 'ca.pem'}\n"
        f"ENDORSER_WHITELIST = {tmp_path / 'whitelist'}\nSMTP_HOST = 127.0.0.1\n"
        f"SMTP_PORT = {smtp.port}\nSMTP_FROM = marketplace@example.org\n"
        f"PUBLIC_URL = {server.url}\n")
    server.start()
    yield server, mailbox
    server.stop()
    smtp.stop()


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory) -> Iterator[LiveServer]:
    """A server of this module alone, starting empty (for uploads)."""
    root = tmp_path_factory.mktemp("ui-empty")
    server = LiveServer(root / "data", root).start()
    yield server
    server.stop()


@dataclass
class Item:
    """One entry of the catalogue: who signs it, how long ago, and its fields."""

    key: str
    signer: str
    days_ago: float
    fields: dict
    image: bytes = b""
    document: bytes = b""
    location: str = ""

    @property
    def title(self) -> str:
        return self.fields["title"]

    @property
    def email(self) -> str:
        return self.signer

    def status(self, now: datetime) -> str:
        if self.fields.get("deprecated"):
            return "deprecated"
        valid = self.fields.get("valid")
        return "expired" if valid is not None and valid < now else "valid"


def _item(key, signer, days_ago, title, os=None, version=None, arch=None, fmt="qcow2",
          hypervisor="kvm", **extra) -> Item:
    fields = {"title": title, "os": os, "os_version": version, "os_arch": arch, "format": fmt,
              "hypervisor": hypervisor, "description": f"{title}: a test appliance.",
              "kind": "machine", **extra}
    return Item(key, signer, days_ago, fields)


def catalogue_items() -> list[Item]:
    """25 latest entries of three endorsers (2 expired, 2 deprecated) and one older version.

    ``aurora`` has an older version by Jane and a copy endorsed by Eve (same image).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    past = now - timedelta(days=30)
    items = [
        _item("aurora-old", JANE, 40, "Aurora web server (previous build)", "ubuntu", "24.04",
              "x86_64", tag="web"),
        _item("aurora", JANE, 5, "Aurora web server", "ubuntu", "24.04", "x86_64", tag="web",
              description="Nginx on Ubuntu with cloud-init; the reference web appliance."),
        _item("aurora-eve", EVE, 3, "Aurora web server, mirrored by Eve", "ubuntu", "24.04",
              "x86_64", tag="web"),
        _item("breeze", EVE, 6, "Breeze desktop", "ubuntu", "24.04", "x86_64"),
        _item("cobalt", JANE, 7, "Cobalt build machine", "ubuntu", "22.04", "aarch64", "raw"),
        _item("dune", OLGA, 8, "Dune database", "debian", "12", "x86_64", hypervisor="xen",
              tag="db"),
        _item("ember", OLGA, 9, "Ember minimal", "debian", "12", "aarch64", "raw"),
        _item("fjord", JANE, 10, "Fjord grid worker", "centos", "stream9", "x86_64"),
        _item("glacier", EVE, 11, "Glacier backup", "debian", "11", "x86_64", "vmdk", "xen"),
        _item("harbor", OLGA, 12, "Harbor docker host", "ubuntu", "24.04", "x86_64",
              tag="web"),
        _item("iris", EVE, 13, "Iris notebook", "ubuntu", "22.04", "x86_64"),
        _item("juniper", JANE, 14, "Juniper mail", "debian", "12", "x86_64"),
        _item("kestrel", OLGA, 15, "Kestrel monitor", "alpine", "3.20", "x86_64", "raw"),
        _item("lumen", EVE, 16, "Lumen gateway", "alpine", "3.20", "aarch64", "raw"),
        _item("meadow", JANE, 17, "Meadow scheduler", "centos", "stream9", "x86_64",
              hypervisor="xen", description="Batch scheduler for a Nebula cluster."),
        _item("nebula", OLGA, 18, "Nebula compute node", "ubuntu", "24.04", "x86_64"),
        _item("orchid", EVE, 19, "Orchid hpc node", "centos", "stream9", "x86_64"),
        _item("pebble", JANE, 20, "Pebble tiny machine", "ttylinux", "16.1", "x86_64", "raw"),
        _item("quartz", JANE, 21, "Quartz data disk", fmt="raw", kind="disk"),
        _item("raven", JANE, 22, "Raven old web server", "ubuntu", "20.04", "x86_64", "raw",
              tag="web", deprecated="use Aurora web server"),
        _item("sable", EVE, 23, "Sable legacy", "centos", "7", "x86_64", valid=past),
        _item("tundra", OLGA, 24, "Tundra archive", "debian", "10", "x86_64", "raw", "xen",
              valid=past),
        _item("umber", OLGA, 25, "Umber retired", "debian", "11", "aarch64",
              deprecated="superseded by Ember"),
        _item("vale", JANE, 26, "Vale python lab", "ubuntu", "24.04", "aarch64"),
        _item("willow", EVE, 27, "Willow kubernetes", "ubuntu", "24.04", "x86_64"),
        _item("xenon", JANE, 28, "Xenon firewall", "alpine", "3.19", "x86_64", "raw"),
    ]
    for item in items:
        name = "aurora" if item.key.startswith("aurora") else item.key
        item.image = hashlib.sha256(name.encode()).digest() * 2
    return items


@dataclass
class Catalogue:
    """The catalogue server and what was uploaded to it, with the expected answers."""

    server: LiveServer
    items: list[Item]
    now: datetime

    def get(self, key: str) -> Item:
        return next(i for i in self.items if i.key == key)

    @property
    def latest(self) -> list[Item]:
        """The newest entry of each identifier and endorser (what listings show)."""
        newest: dict[tuple[bytes, str], Item] = {}
        for item in self.items:
            pair = (item.image, item.email)
            if pair not in newest or newest[pair].days_ago > item.days_ago:
                newest[pair] = item
        return list(newest.values())

    def matching(self, status: str = "valid", **filters) -> list[Item]:
        return [i for i in self.latest
                if (status == "all" or i.status(self.now) == status)
                and all((i.email if k == "email" else i.fields.get(k)) == v
                        for k, v in filters.items())]

    def counts(self, facet: str, status: str = "valid", **filters) -> Counter:
        """Expected facet counts: matching entries, the facet's own filter left out."""
        filters.pop(facet, None)
        return Counter(i.email if facet == "email" else i.fields.get(facet)
                       for i in self.matching(status, **filters)
                       if (i.email if facet == "email" else i.fields.get(facet)) is not None)


@pytest.fixture(scope="session")
def signers(ca, rsa_signer, ec_signer) -> dict[str, pki.Issued]:
    olga = pki.make_certificate(ca, "Olga Orbit", pki.EC, email=OLGA)
    return {JANE: rsa_signer, EVE: ec_signer, OLGA: olga}


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory, signers) -> Iterator[Catalogue]:
    """A server holding the catalogue, every document signed and uploaded over HTTP."""
    root = tmp_path_factory.mktemp("ui-catalogue")
    server = LiveServer(root / "data", root).start()
    now = datetime.now(UTC).replace(microsecond=0)
    items = catalogue_items()
    for item in sorted(items, key=lambda i: -i.days_ago):
        when = now - timedelta(days=item.days_ago)
        entry = factories.appliance(item.image, created=when, **item.fields)
        item.document = factories.signed(signers[item.signer], entry, now=when)
        item.location = upload(server, item.document)
    yield Catalogue(server, items, now)
    server.stop()
