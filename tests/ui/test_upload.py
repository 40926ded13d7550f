"""Uploading through the form, and hostile text that must show as text and never run."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import expect

from tests import factories
from tests.ui.conftest import JANE, upload

HOSTILE_TITLE = "<script>window.__pwned = 1; alert('title')</script>Evil title"
HOSTILE_DESCRIPTION = ('<img src=x onerror="window.__pwned = 2; alert(\'description\')">'
                       "<b>bold?</b> & more")


def file_payload(name: str, data: bytes) -> dict:
    return {"name": name, "mimeType": "application/xml", "buffer": data}


def search_total(server, **params) -> int:
    return requests.get(server.url + "api/v1/appliances", params=params, timeout=30).json()[
        "total"]


def test_upload_a_valid_document_and_see_it_accepted(empty_server, page, rsa_signer):
    document = factories.signed(rsa_signer, factories.appliance(title="Uploaded by form",
                                                                os="opensuse"))
    page.goto(empty_server.url)
    page.get_by_role("link", name="Upload", exact=True).click()
    expect(page.locator("h1")).to_have_text("Upload signed metadata")
    page.get_by_label("Metadata file").set_input_files(file_payload("good.xml", document))
    page.get_by_role("button", name="Upload and check").click()
    verdict = page.locator("#verdict")
    expect(verdict.locator("h2")).to_have_text("Accepted")
    expect(verdict).to_contain_text("Uploaded by form")
    expect(verdict).to_contain_text(JANE)
    expect(verdict).to_be_focused()
    assert search_total(empty_server, os="opensuse") == 1

    verdict.get_by_role("link", name="Open the appliance").click()
    expect(page.locator("h1")).to_have_text("Uploaded by form")

    page.goto(empty_server.url + "upload")
    page.get_by_label("Metadata file").set_input_files(file_payload("good.xml", document))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator("#verdict h2")).to_have_text("Already in the marketplace")
    assert search_total(empty_server, os="opensuse") == 1


def test_an_invalid_document_is_refused_with_its_reasons(empty_server, page, rsa_signer):
    signed = factories.signed(rsa_signer, factories.appliance(title="Honest title",
                                                              os="tampered"))
    tampered = signed.replace(b"Honest title", b"Forged title")
    page.goto(empty_server.url + "upload")
    page.get_by_label("Metadata file").set_input_files(file_payload("tampered.xml", tampered))
    page.get_by_role("button", name="Upload and check").click()
    verdict = page.locator("#verdict")
    expect(verdict.locator("h2")).to_have_text("Refused: tampered.xml")
    expect(verdict).to_contain_text("Nothing was stored")
    problems = verdict.locator(".problems li")
    expect(problems).to_have_count(1)
    expect(problems.first.locator(".problems__element")).to_have_text("Signature")
    expect(problems.first).to_contain_text("rule: signature-value")

    unsigned = factories.appliance(title="Never signed", os="tampered")
    from marketplace.metadata import document, model
    data = document.serialize(model.to_document(unsigned))
    page.get_by_label("Metadata file").set_input_files(file_payload("unsigned.xml", data))
    page.get_by_role("button", name="Upload and check").click()
    expect(problems.first.locator(".problems__element")).to_have_text("Signature")
    expect(problems.first).to_contain_text("the document is not signed")

    page.get_by_label("Metadata file").set_input_files(
        file_payload("junk.xml", b"<not-metadata/>"))
    page.get_by_role("button", name="Upload and check").click()
    expect(verdict.locator("h2")).to_have_text("Refused: junk.xml")
    expect(problems.first).to_be_visible()
    assert search_total(empty_server, os="tampered", status="all") == 0


def test_a_form_without_a_file_is_explained(empty_server, no_js_page):
    response = no_js_page.request.post(empty_server.url + "upload",
                                       multipart={"note": "no file here"})
    assert response.status == 400 and "No file chosen" in response.text()
    no_js_page.goto(empty_server.url + "upload")
    expect(no_js_page.get_by_label("Metadata file")).to_have_attribute("required", "")


def test_html_and_script_in_data_show_as_text_and_never_run(empty_server, page, rsa_signer,
                                                             ec_signer):
    hostile = factories.appliance(title=HOSTILE_TITLE, description=HOSTILE_DESCRIPTION,
                                  os="hostile", tag="<i>tag</i>")
    location = upload(empty_server, factories.signed(rsa_signer, hostile))
    identifier = location.split("/")[2]

    def assert_inert():
        assert page.watched.dialogs == [], "a script from the data ran"
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main script, main img[src='x'], main b").count() == 0

    page.goto(empty_server.url + "?os=hostile")
    expect(page.locator("#results .result__title")).to_have_text(HOSTILE_TITLE)
    expect(page.locator("#results .result__description")).to_have_text(HOSTILE_DESCRIPTION)
    assert_inert()
    # a live update swaps server-rendered nodes in: still text
    page.get_by_label("Find a virtual machine image").fill("evil")
    expect(page).to_have_url(re.compile(r"q=evil"))
    expect(page.locator("#results .result__title")).to_have_text(HOSTILE_TITLE)
    assert_inert()

    page.locator("#results .result__title").click()
    expect(page.locator("h1")).to_have_text(HOSTILE_TITLE)
    expect(page.locator(".description")).to_have_text(HOSTILE_DESCRIPTION)
    assert HOSTILE_TITLE in page.title()
    expect(page.locator("#h-related")).to_have_text("Also tagged <i>tag</i> by this endorser")
    assert identifier in page.url
    assert_inert()

    # the upload verdict repeats the title: as text too
    again = factories.appliance(title=HOSTILE_TITLE, os="hostile")
    page.goto(empty_server.url + "upload")
    page.get_by_label("Metadata file").set_input_files(
        {"name": "<img src=x onerror=alert(3)>.xml", "mimeType": "application/xml",
         "buffer": factories.signed(ec_signer, again)})
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator("#verdict strong")).to_have_text(HOSTILE_TITLE)
    assert_inert()
    assert not any("Content Security Policy" in m for m in page.watched.console)
