"""The appliance detail and publisher pages in a real browser."""

from __future__ import annotations

import hashlib
import json
import re

from playwright.sync_api import expect

from marketplace.metadata import document, model
from tests.ui.conftest import EVE, JANE, OLGA, PHONE, open_page, screenshot


def open_from_search(catalogue, page, title: str) -> None:
    page.goto(catalogue.server.url + "?status=all&limit=50")
    page.locator("#results .result__title", has_text=re.compile(f"^{re.escape(title)}$")).click()
    expect(page.locator("h1")).to_have_text(title)


def stored_model(item) -> model.Appliance:
    return model.from_document(document.parse(item.document))


def test_detail_shows_every_field_and_the_trust_facts(catalogue, page, browser, signers):
    aurora = catalogue.get("aurora")
    open_from_search(catalogue, page, "Aurora web server")
    entry = stored_model(aurora)
    expect(page.locator("#status .badge")).to_have_text("Valid")
    expect(page.locator("#identifier")).to_have_text(entry.identifier)
    checksums = page.locator("table.checksums tbody tr")
    expect(checksums).to_have_count(len(entry.checksums))
    image = aurora.image
    assert entry.checksums == {"SHA-1": hashlib.sha1(image).hexdigest(),
                               "SHA-256": hashlib.sha256(image).hexdigest()}
    for algorithm, value in entry.checksums.items():
        expect(checksums.filter(has_text=algorithm).locator("code")).to_have_text(value)
    for location in entry.locations:
        expect(page.locator(".locations")).to_contain_text(location)
    fields = page.locator("dl.fields")
    for qname, value in (("dcterms:title", "Aurora web server"), ("slterms:os", "ubuntu"),
                         ("slterms:os-version", "24.04"), ("slterms:os-arch", "x86_64"),
                         ("dcterms:format", "qcow2"), ("slterms:hypervisor", "kvm"),
                         ("dcterms:alternative", "web"), ("slterms:kind", "machine"),
                         ("dcterms:type", "base"),
                         ("dcterms:valid", model.format_date(entry.valid))):
        expect(fields.locator("div", has=page.locator(f'code.qname:text-is("{qname}")'))
               ).to_contain_text(value)
    expect(page.locator(".description")).to_have_text(aurora.fields["description"])

    trust = page.locator("section.trust")
    expect(trust).to_contain_text("Signature verified when uploaded")
    expect(page.locator("#certificate-verdict")).to_contain_text("valid today")
    jane = signers[JANE].certificate
    expect(trust).to_contain_text(JANE)
    expect(trust).to_contain_text(jane.subject.rfc4514_string())
    expect(trust).to_contain_text(jane.issuer.rfc4514_string())
    expect(trust).to_contain_text(model.format_date(entry.endorsement.created))
    expect(trust).to_contain_text("RSA 2048 bits")

    versions = page.locator("table.versions tbody tr")
    expect(versions).to_have_count(3)  # Jane's two and Eve's copy, newest first
    expect(versions.nth(0)).to_contain_text(EVE)
    expect(versions.nth(1)).to_contain_text("(this one)")
    expect(versions.nth(2)).to_contain_text("Aurora web server (previous build)")
    related = page.locator(".related li")
    expect(related).to_have_count(1)  # Jane's other "web": Raven (Harbor is Olga's)
    expect(related.filter(has_text="Raven old web server").locator(".badge")).to_have_text(
        "Deprecated")

    endpoint = catalogue.server.url.rstrip("/")
    expect(page.locator("#fetch-command")).to_have_text(
        f"stratus-image-cache pull {entry.identifier} --marketplace-endpoint {endpoint}")
    screenshot(page, "detail-desktop")

    context, phone = open_page(browser, PHONE, is_mobile=True, has_touch=True)
    try:
        phone.goto(page.url)
        expect(phone.locator("h1")).to_have_text("Aurora web server")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "nothing is wider than a phone's screen"
        screenshot(phone, "detail-phone")
    finally:
        context.close()


def test_an_older_version_and_another_endorser_are_one_click_away(catalogue, page):
    open_from_search(catalogue, page, "Aurora web server")
    page.locator("table.versions").get_by_role("link").filter(
        has_text=re.compile(r"^\d{4}-")).nth(2).click()
    expect(page.locator("h1")).to_have_text("Aurora web server (previous build)")
    expect(page).to_have_url(re.compile(r"endorser=jane.tester@example.org&created="))
    expect(page.locator("table.versions tr.is-current")).to_contain_text("(this one)")
    page.locator("table.versions").get_by_role("link", name=EVE).click()
    expect(page.locator("h1")).to_have_text(EVE)  # the publisher page
    expect(page.locator(".chips")).to_contain_text("web")


def test_copy_buttons_put_the_value_on_the_clipboard(catalogue, browser):
    origin = catalogue.server.url.rstrip("/")
    context, page = open_page(browser, permissions=["clipboard-read", "clipboard-write"])
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        open_from_search(catalogue, page, "Juniper mail")
        sha256 = stored_model(catalogue.get("juniper")).checksums["SHA-256"]
        button = page.get_by_role("button", name="Copy the SHA-256 checksum")
        button.click()
        expect(button).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == sha256
        page.get_by_role("button", name="Copy the fetch command").click()
        assert page.evaluate("navigator.clipboard.readText()").startswith(
            "stratus-image-cache pull ")
        assert not page.watched.errors
    finally:
        context.close()


def test_the_xml_link_gives_the_stored_document_byte_for_byte(catalogue, page):
    dune = catalogue.get("dune")
    open_from_search(catalogue, page, "Dune database")
    with page.expect_download() as download:
        page.get_by_role("link", name="Signed XML document").click()
    assert download.value.path().read_bytes() == dune.document
    assert download.value.suggested_filename.endswith(".xml")

    page.get_by_role("link", name="JSON", exact=True).click()
    data = json.loads(page.locator("body").inner_text())
    assert data["title"] == "Dune database" and data["email"] == OLGA
    assert data["url"] == dune.location


def test_expired_and_deprecated_entries_say_so(catalogue, page):
    open_from_search(catalogue, page, "Sable legacy")
    expect(page.locator("#status .badge")).to_have_text("Expired")
    expect(page.locator("#status")).to_contain_text("that date has passed")
    open_from_search(catalogue, page, "Umber retired")
    expect(page.locator("#status .badge")).to_have_text("Deprecated")
    expect(page.locator("#status")).to_contain_text("superseded by Ember")


def test_publisher_page_lists_newest_first_with_tags(catalogue, page):
    page.goto(catalogue.server.url + "publishers")
    expect(page.locator("table.plain tbody tr")).to_have_count(3)
    page.get_by_role("link", name=OLGA).click()
    expect(page.locator("h1")).to_have_text(OLGA)
    mine = sorted((i for i in catalogue.latest if i.email == OLGA), key=lambda i: i.days_ago)
    assert page.locator("#main .result__title").all_inner_texts() == [i.title for i in mine]
    expect(page.locator(".page-head")).to_contain_text(f"{len(mine)} appliances published")
    expect(page.locator(".page-head")).to_contain_text("CN=Olga Orbit")
    tags = page.locator(".tags-section .chip")
    expect(tags).to_have_count(2)
    expect(tags.filter(has_text="db")).to_contain_text("1")
    tags.filter(has_text="web").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/\?endorser=olga.orbit@example.org&tag=web&status=all$"))
    assert page.locator("#results .result__title").all_inner_texts() == ["Harbor docker host"]
    expect(page.locator(".chips")).to_contain_text("Tag: web")
