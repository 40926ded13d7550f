"""The search page in a real browser: text, filters with counts, sort, paging, bookmarks,
the same with JavaScript off, empty and error pages, keyboard basics."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import expect

from tests.ui.conftest import EVE, JANE, OLGA, PHONE, open_page, screenshot


def result_titles(page):
    """The titles of the results, for Playwright's waiting assertions."""
    return page.locator("#results .result__title")


def titles(page) -> list[str]:
    """The titles shown, once the page is loaded: after a link is followed the address
    changes when the navigation starts, before the new page's results are there."""
    page.wait_for_load_state()
    return result_titles(page).all_inner_texts()


def facet_counts(page, name: str) -> dict[str, int]:
    """The values and counts a facet shows (``Any`` left out)."""
    counts = {}
    for label in page.locator(f'#facets [data-facet="{name}"] label').all():
        value = label.locator(".facet__value").text_content()  # some sit in "more"
        if value != "Any":
            counts[value] = int(label.locator(".facet__count").text_content().replace(",", ""))
    return counts


def status_counts(page) -> dict[str, int]:
    labels = page.locator("#facets .facet--status label").all()
    return {label.locator(".facet__value").inner_text():
            int(label.locator(".facet__count").inner_text()) for label in labels}


def query_of(page) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def choose(page, facet: str, value: str) -> None:
    """Click a facet value's label, as a person does (the radio itself is styled away)."""
    page.locator(f'#facets [data-facet="{facet}"] label',
                 has=page.locator(".facet__value", has_text=re.compile(f"^{re.escape(value)}$"))
                 ).click()


def sort_titles(items) -> list[str]:
    return sorted(i.title for i in items)


def test_search_page_lists_the_catalogue_from_its_own_server(catalogue, page, browser):
    page.goto(catalogue.server.url)
    valid = catalogue.matching()
    expect(page.locator("h1")).to_have_text(f"{len(valid)} appliances")
    newest = sorted(valid, key=lambda i: i.days_ago)[:20]  # 20 a page, newest first
    assert len(valid) > 20 and titles(page) == [i.title for i in newest]
    origin = catalogue.server.url.rstrip("/")
    assert all(url.startswith(origin) for url in page.watched.requests), \
        "every asset comes from the marketplace itself (no CDN)"
    assert page.locator('link[rel="stylesheet"]').count() == 1
    screenshot(page, "search-desktop")
    context, phone = open_page(browser, PHONE, is_mobile=True, has_touch=True)
    try:
        phone.goto(catalogue.server.url)
        expect(phone.locator(".filters__panel")).not_to_have_attribute("open", "")
        screenshot(phone, "search-phone")
        phone.locator(".filters__toggle").click()
        choose(phone, "os", "debian")
        expect(phone).to_have_url(re.compile(r"os=debian"))
        assert sorted(titles(phone)) == sort_titles(catalogue.matching(os="debian"))
        assert not phone.watched.errors
    finally:
        context.close()


def test_free_text_searches_as_you_type_and_the_url_follows(catalogue, page):
    page.goto(catalogue.server.url)
    page.get_by_label("Find a virtual machine image").fill("nebula")
    expect(page).to_have_url(re.compile(r"\?q=nebula$"))
    expect(page.locator("h1")).to_have_text("2 appliances")
    assert sorted(titles(page)) == ["Meadow scheduler", "Nebula compute node"]
    assert page.title().startswith("“nebula”")
    # a prefix of a word, an endorser's email and an identifier are searched too
    page.get_by_label("Find a virtual machine image").fill("kuber")
    expect(page.locator("h1")).to_have_text("1 appliance")
    assert titles(page) == ["Willow kubernetes"]
    page.get_by_label("Find a virtual machine image").fill(OLGA)
    expect(page).to_have_url(re.compile(r"q=olga"))
    assert sorted(titles(page)) == sort_titles(catalogue.matching(email=OLGA))
    identifier = catalogue.get("juniper").location.split("/")[2]
    page.get_by_label("Find a virtual machine image").fill(identifier)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("1 appliance")
    assert titles(page) == ["Juniper mail"]


def test_facets_show_correct_counts_and_filter(catalogue, page):
    page.goto(catalogue.server.url)
    for facet, field in (("os", "os"), ("os_version", "os_version"), ("arch", "os_arch"),
                         ("endorser", "email"), ("kind", "kind"), ("format", "format"),
                         ("hypervisor", "hypervisor")):
        assert facet_counts(page, facet) == dict(catalogue.counts(field)), facet
    everything = catalogue.matching("all")
    assert status_counts(page) == {
        "Valid": len(catalogue.matching("valid")), "Expired": 2, "Deprecated": 2,
        "Any status": len(everything)}

    choose(page, "os", "debian")
    expect(page).to_have_url(re.compile(r"\?os=debian$"))
    debian = catalogue.matching(os="debian")
    expect(page.locator("h1")).to_have_text(f"{len(debian)} appliances")
    assert sorted(titles(page)) == sort_titles(debian)
    # the other facets now count within Debian; the OS facet still offers every OS
    assert facet_counts(page, "arch") == dict(catalogue.counts("os_arch", os="debian"))
    assert facet_counts(page, "os") == dict(catalogue.counts("os"))
    assert page.locator('#facets input[name="os"][value="debian"]').is_checked()

    choose(page, "arch", "aarch64")
    expect(page).to_have_url(re.compile(r"os=debian&arch=aarch64"))
    assert titles(page) == ["Ember minimal"]
    assert facet_counts(page, "os") == dict(catalogue.counts("os", os_arch="aarch64"))

    page.locator('#facets .facet--status label', has_text="Any status").click()
    expect(page).to_have_url(re.compile(r"status=all"))
    assert sorted(titles(page)) == ["Ember minimal", "Umber retired"]
    expect(page.locator("#results .badge--deprecated")).to_have_count(1)

    page.get_by_role("link", name="Remove filter Architecture: aarch64").click()
    expect(page).to_have_url(re.compile(r"\?os=debian&status=all$"))
    assert sorted(titles(page)) == sort_titles(catalogue.matching("all", os="debian"))


def test_sort_by_column_and_by_the_sort_menu(catalogue, page):
    page.goto(catalogue.server.url + "?status=all&limit=50")
    everything = catalogue.matching("all")
    page.locator("#results th").get_by_role("link", name="Appliance").click()
    expect(page).to_have_url(re.compile(r"sort=title"))
    expect(result_titles(page)).to_have_text(sort_titles(everything))
    expect(page.locator('th[aria-sort="ascending"]')).to_contain_text("Appliance")
    page.locator("#results th").get_by_role("link", name="Appliance").click()
    expect(page).to_have_url(re.compile(r"sort=-title"))
    expect(result_titles(page)).to_have_text(sort_titles(everything)[::-1])

    page.get_by_label("Sort by").select_option("-bytes")
    expect(page).to_have_url(re.compile(r"sort=-bytes"))
    expect(page.locator('th[aria-sort="descending"]')).to_contain_text("Size")
    page.get_by_label("Sort by").select_option("created")
    expect(page).to_have_url(re.compile(r"sort=created"))
    expect(result_titles(page)).to_have_text(
        [i.title for i in sorted(everything, key=lambda i: -i.days_ago)])
    assert query_of(page) == {"status": "all", "sort": "created", "limit": "50"}


def test_paging_with_a_page_size_choice(catalogue, page):
    page.goto(catalogue.server.url)
    valid = catalogue.matching()
    page.get_by_label("Per page").select_option("10")
    expect(page).to_have_url(re.compile(r"\?limit=10$"))
    expect(page.locator("#results .result")).to_have_count(10)
    pager = page.get_by_role("navigation", name="Result pages")
    expect(pager.get_by_role("link", name="Page 3")).to_be_visible()
    seen = titles(page)
    pager.get_by_role("link", name="Next").click()
    expect(page).to_have_url(re.compile(r"limit=10&offset=10"))
    expect(page.locator("#results-summary")).to_contain_text(re.compile(r"Showing 11.20\b"))
    seen += titles(page)
    page.get_by_role("navigation", name="Result pages").get_by_role("link",
                                                                     name="Page 3").click()
    expect(page.locator("#results .result")).to_have_count(len(valid) - 20)
    seen += titles(page)
    assert sorted(seen) == sort_titles(valid) and len(set(seen)) == len(valid)
    expect(page.get_by_role("link", name="Page 3, current")).to_have_attribute(
        "aria-current", "page")
    # changing a filter starts again from the first page
    choose(page, "endorser", JANE)
    expect(page).to_have_url(re.compile(r"\?endorser=jane.tester@example.org&limit=10$"))


def test_a_bookmarked_search_reloads_to_the_same_results(catalogue, page, browser):
    page.goto(catalogue.server.url)
    page.get_by_label("Find a virtual machine image").fill("server")
    expect(page).to_have_url(re.compile(r"q=server"))
    choose(page, "endorser", JANE)
    expect(page).to_have_url(re.compile(r"endorser="))
    page.get_by_label("Sort by").select_option("title")
    expect(page).to_have_url(re.compile(r"sort=title"))
    page.get_by_label("Per page").select_option("10")
    expect(page).to_have_url(re.compile(r"limit=10"))
    bookmark, shown = page.url, titles(page)
    assert query_of(page) == {"q": "server", "endorser": JANE, "sort": "title", "limit": "10"}
    assert shown == ["Aurora web server"]

    page.reload()
    assert titles(page) == shown
    expect(page.get_by_label("Find a virtual machine image")).to_have_value("server")
    expect(page.get_by_label("Sort by")).to_have_value("title")
    context, other = open_page(browser)
    try:
        other.goto(bookmark)
        assert titles(other) == shown
        assert other.locator(f'#facets input[name="endorser"][value="{JANE}"]').is_checked()
    finally:
        context.close()


def test_everything_works_with_javascript_off(catalogue, no_js_page):
    page = no_js_page
    page.goto(catalogue.server.url)
    expect(page.locator("html")).to_have_class("no-js")
    expect(page.get_by_role("button", name="Apply filters")).to_be_visible()
    assert facet_counts(page, "os") == dict(catalogue.counts("os"))

    page.get_by_label("Find a virtual machine image").fill("web")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(r"/\?q=web$"))  # redirected to the clean URL
    assert sorted(titles(page)) == ["Aurora web server", "Aurora web server, mirrored by Eve",
                                    "Harbor docker host"]

    choose(page, "endorser", EVE)
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"\?q=web&endorser=eve.curve@example.org$"))
    assert titles(page) == ["Aurora web server, mirrored by Eve"]

    page.goto(catalogue.server.url + "?limit=10")
    page.locator("#results th").get_by_role("link", name="Endorser").click()
    expect(page).to_have_url(re.compile(r"sort=email"))
    emails = page.locator("#results .col-endorser").all_inner_texts()
    assert emails == sorted(emails)
    page.get_by_role("link", name="Next").click()
    expect(page.locator("#results-summary")).to_contain_text(re.compile(r"Showing 11.20\b"))
    page.get_by_label("Per page").select_option("50")
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.locator("#results .result")).to_have_count(len(catalogue.matching()))


def test_empty_results_say_what_to_do(catalogue, page):
    page.goto(catalogue.server.url + "?q=nothing-like-this")
    expect(page.locator("h1")).to_have_text("No appliances found")
    expect(page.locator(".empty h2")).to_have_text("Nothing matches “nothing-like-this”")
    expect(page.locator(".empty")).to_contain_text("Check the spelling")

    page.goto(catalogue.server.url + "?q=sable")  # only an expired entry matches
    expect(page.locator(".empty")).to_contain_text("1 entry with another status match")
    page.get_by_role("link", name="include every status").click()
    assert titles(page) == ["Sable legacy"]

    page.goto(catalogue.server.url + "?offset=400")
    expect(page.locator(".empty h2")).to_have_text("There is no page 21")


def test_error_pages_are_helpful(catalogue, page):
    response = page.goto(catalogue.server.url + "?limit=0")
    assert response.status == 400
    expect(page.locator("h1")).to_have_text("That search cannot be run")
    expect(page.locator("#error-message")).to_contain_text("limit")
    expect(page.locator("#error-message")).to_contain_text("from 1 to 500")

    response = page.goto(catalogue.server.url + "no/such/page")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    page.get_by_role("link", name="Search the marketplace").click()
    expect(page.locator("#results .result").first).to_be_visible()

    unknown = "A" * 27
    response = page.goto(catalogue.server.url + f"appliances/{unknown}")
    assert response.status == 404
    expect(page.locator("#error-message")).to_have_text(
        f"No appliance with identifier {unknown}.")
    response = page.goto(catalogue.server.url + "publishers/nobody@example.org")
    assert response.status == 404
    # the API keeps its own answers
    api = page.request.get(catalogue.server.url + f"metadata/{unknown}/{JANE}/"
                           "2020-01-01T00:00:00Z")
    assert api.status == 404 and api.headers["content-type"].startswith("application/xml")


def test_keyboard_skip_link_labels_and_focus(catalogue, page):
    page.goto(catalogue.server.url)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert skip.bounding_box()["y"] >= 0  # it shows itself when focused
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) &&
                     !e.getAttribute('aria-label')).map(e => e.name)""")
    assert unlabelled == []
    assert page.locator("h1").count() == 1 and page.locator("html").get_attribute("lang")
    # a facet value is reachable and chosen with the keyboard alone
    page.locator('#facets input[name="os"][value="alpine"]').focus()
    outline = page.evaluate("""() => getComputedStyle(
        document.querySelector('#facets input[name="os"][value="alpine"] + label')).outlineStyle""")
    assert outline == "solid", "a focused facet value shows a focus ring"
    page.keyboard.press("Space")
    expect(page).to_have_url(re.compile(r"os=alpine"))
    expect(page.locator('#facets input[name="os"][value="alpine"]')).to_be_focused()
