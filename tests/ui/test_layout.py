"""Layout faults people met, measured in Chromium: where text lands, not how it is styled."""

from __future__ import annotations

import requests

from tests import factories, pki
from tests.ui.conftest import JANE, PHONE, open_page, upload

# Hyphens are where a browser breaks a line it may not break elsewhere.
HYPHENATED = "jean-baptiste.de-la-fontaine@grid-operations.example-institute.org"

# The text of an element split where the browser broke its lines: each character's line is
# the top of its own rectangle.
LINES_OF = """element => {
  const lines = [];
  let lastTop = null;
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      if (!rect) continue;
      if (lastTop === null || Math.abs(rect.top - lastTop) > 2) lines.push("");
      lastTop = rect.top;
      lines[lines.length - 1] += node.data[i];
    }
  }
  return lines;
}"""

# Each dt and the dd after it: their boxes, to check that they share a row.
PAIRS_OF = """list => [...list.querySelectorAll("dt")].map(dt => {
  const dd = dt.nextElementSibling, a = dt.getBoundingClientRect(),
        b = dd.getBoundingClientRect();
  return {label: dt.textContent, middle: (a.top + a.bottom) / 2, value: [b.top, b.bottom],
          left: [a.left, b.left], right: a.right};
})"""


def allowed_lines(email: str) -> list[list[str]]:
    local, _, domain = email.partition("@")
    return [[email], [local, "@" + domain]]


def test_an_endorser_email_breaks_only_before_its_at_sign(empty_server, browser, ca):
    """In the results table, on a desktop and on a phone, an address is whole on one line
    or split before its @: never inside the name or the domain, not even at its hyphens."""
    signer = pki.make_certificate(ca, "Jean-Baptiste de La Fontaine", email=HYPHENATED)
    upload(empty_server, factories.signed(signer, factories.appliance(
        title="An image with a long title that takes the room of the table's widest column",
        description="and a description that fills the rest " * 4)))
    for viewport in (None, PHONE, {"width": 1024, "height": 768}):
        context, page = open_page(browser, viewport)
        try:
            page.goto(empty_server.url + "?status=all")
            links = page.locator(".col-endorser a")
            assert links.count() > 0
            for index in range(links.count()):
                link = links.nth(index)
                email = link.text_content()
                assert link.evaluate(LINES_OF) in allowed_lines(email), (viewport, email)
        finally:
            context.close()


def test_the_confirmation_page_lines_up_each_label_with_its_value(browser, confirming_server,
                                                                  signers):
    """The mailed link's page lists the upload as label and value side by side, on one row
    each, labels in one column and values in another."""
    server, mailbox = confirming_server
    document = factories.signed(signers[JANE], factories.appliance(title="Plain image"))
    answer = requests.post(server.url + "metadata", data=document, timeout=30,
                           headers={"Content-Type": "application/xml"})
    assert answer.status_code == 202, answer.text
    mailbox.wait()
    context, page = open_page(browser)
    try:
        page.goto(mailbox.links()["confirm"])
        pairs = page.locator("dl").first.evaluate(PAIRS_OF)
    finally:
        context.close()
    assert [p["label"] for p in pairs] == ["Title", "Identifier", "Endorser", "Certificate",
                                           "Endorsed on"]
    for pair in pairs:
        assert pair["value"][0] <= pair["middle"] <= pair["value"][1], pair
        assert pair["left"][1] > pair["right"], pair
    assert len({round(p["left"][0]) for p in pairs}) == 1
    assert len({round(p["left"][1]) for p in pairs}) == 1
