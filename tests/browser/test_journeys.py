"""A visitor's journeys through the public pages in a real browser, with and without
JavaScript, and on a phone-sized screen."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import (
    ENTRY_LINK,
    KIDS_CODE,
    OPEN_WATER,
    PHONE_VIEWPORT,
    PUBLIC_PAGES,
    RIVERSIDE,
)

pytestmark = pytest.mark.browser

CSV_HEADER = ["date", "sequence", "type", "category", "fund", "payee_or_donor", "description",
              "amount", "currency", "running_balance", "entry_hash"]
CHAIN_VALID = re.compile(r"Chain valid: [\d,]+ entries")
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def card_link(page: Page, name: str) -> Locator:
    return page.get_by_role("region", name="Organisations found").get_by_role(
        "link", name=name, exact=True)


def entries_table(page: Page) -> Locator:
    return page.get_by_role("region", name="Ledger entries").get_by_role("table")


def entry_rows(page: Page) -> Locator:
    """The table's rows that stand for an entry (each links to it as "#<sequence>")."""
    return entries_table(page).get_by_role("row").filter(
        has=page.get_by_role("link", name=ENTRY_LINK))


def first_sequence(page: Page) -> str:
    return entry_rows(page).first.get_by_role("link", name=ENTRY_LINK).inner_text()


def open_disclosed_entry(page: Page) -> None:
    """Open the first entry on the ledger page whose details are public."""
    row = entry_rows(page).filter(has_not_text="undisclosed").filter(
        has_not_text="Internal entry").first
    sequence = row.get_by_role("link", name=ENTRY_LINK).inner_text()
    row.get_by_role("link", name=ENTRY_LINK).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(rf"^Entry {sequence}: "))


def check_entry_hash(page: Page) -> None:
    """The hash is shown, and it is the SHA-256 of the preimage the page shows."""
    term = page.get_by_role("term").filter(has_text=re.compile(r"^This entry's hash$"))
    expect(term).to_be_visible()
    value = term.locator("xpath=following-sibling::dd[1]/code").first
    expect(value).to_have_text(HASH)
    section = page.get_by_role("region", name="Check this entry yourself")
    expect(section).to_be_visible()
    preimage = section.locator("pre").first.text_content() or ""
    digest = hashlib.sha256(preimage.encode("utf-8")).hexdigest()
    assert value.inner_text() == f"sha256:{digest}"


def mark_document(page: Page) -> None:
    """Tag the document; a full page load would lose the tag."""
    page.evaluate("() => { window.__browserTestNoReload = true; }")


def assert_no_page_load(page: Page) -> None:
    assert page.evaluate("() => window.__browserTestNoReload === true"), \
        "the page was reloaded instead of updated in place"


def htmx_ready(page: Page) -> None:
    """htmx is loaded with ``defer``; wait until it has processed the page."""
    page.wait_for_function("() => window.htmx !== undefined")
    page.wait_for_load_state("load")


# --------------------------------------------------------------------------- with JavaScript


def test_journey_with_javascript(page: Page, artifacts: Path) -> None:
    slug, name = RIVERSIDE

    # The directory: a live search updates the results in place and the URL.
    page.goto("/")
    htmx_ready(page)
    for other in (OPEN_WATER[1], KIDS_CODE[1], name):
        expect(card_link(page, other)).to_be_visible()
    page.screenshot(path=artifacts / "directory.png", full_page=True)
    mark_document(page)
    page.get_by_label("Search organisations").press_sequentially("river")
    expect(card_link(page, OPEN_WATER[1])).to_have_count(0)
    expect(card_link(page, KIDS_CODE[1])).to_have_count(0)
    expect(card_link(page, name)).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]q=river(&|$)"))
    assert_no_page_load(page)

    # The organisation: the chart and the figures beside it.
    card_link(page, name).click()
    expect(page).to_have_url(re.compile(rf"/orgs/{slug}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.get_by_role("heading", name="Money in and out")).to_be_visible()
    expect(page.get_by_role("table", name="Income, spending and balance per currency")) \
        .to_be_visible()
    expect(page.get_by_role("heading", name="Where the money goes")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Where the money goes \(GBP\)"))) \
        .to_be_visible()
    expect(page.get_by_role("table", name="Spending by category in GBP")).to_be_visible()
    expect(page.get_by_role("heading", name="Funds")).to_be_visible()
    page.screenshot(path=artifacts / "organisation.png", full_page=True)

    # The ledger: filtering swaps the table only, and the URL keeps the filter.
    page.get_by_role("link", name="Browse the ledger").click()
    expect(page).to_have_url(re.compile(rf"/orgs/{slug}/ledger$"))
    htmx_ready(page)
    expect(entry_rows(page)).to_have_count(50)
    page.screenshot(path=artifacts / "ledger.png", full_page=True)
    type_select = page.get_by_label("Type", exact=True)
    type_select.evaluate("select => { select.form.__browserTestTag = 'same form'; }")
    mark_document(page)
    type_select.select_option(label="Expense")
    expect(page).to_have_url(re.compile(r"[?&]type=expense(&|$)"))
    expect(entries_table(page).locator("caption")).to_contain_text("filtered")
    assert type_select.evaluate("select => select.form.__browserTestTag") == "same form", \
        "the filter form was replaced: only the table should be swapped"
    assert_no_page_load(page)
    assert_every_row_is_an_expense(page)

    # Keyset pagination, there and back again.
    newest = first_sequence(page)
    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"[?&]before=\d+"))
    expect(entry_rows(page).first.get_by_role("link", name=ENTRY_LINK)).not_to_have_text(newest)
    assert_every_row_is_an_expense(page)
    page.get_by_role("link", name="← Newer").click()
    expect(page).to_have_url(re.compile(r"[?&]after=\d+"))
    expect(entry_rows(page).first.get_by_role("link", name=ENTRY_LINK)).to_have_text(newest)
    expect(page).to_have_url(re.compile(r"[?&]type=expense(&|$)"))
    assert_no_page_load(page)

    # A reload (a full page this time) keeps the filter.
    page.reload()
    expect(page.get_by_label("Type", exact=True)).to_have_value("expense")
    expect(page.get_by_label("Type", exact=True).locator("option:checked")).to_have_text(
        "Expense")
    expect(entry_rows(page).first.get_by_role("link", name=ENTRY_LINK)).to_have_text(newest)
    assert_every_row_is_an_expense(page)

    # An entry, with its hash.
    open_disclosed_entry(page)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Expense")
    check_entry_hash(page)
    page.screenshot(path=artifacts / "entry.png", full_page=True)

    # Back to the organisation, to check the whole chain from the page.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(rf"/orgs/{slug}$"))
    htmx_ready(page)
    mark_document(page)
    page.get_by_role("button", name="Verify the chain now").click()
    expect(page.locator("#verification")).to_contain_text(CHAIN_VALID)
    expect(page).to_have_url(re.compile(rf"/orgs/{slug}$"))
    assert_no_page_load(page)

    # The CSV download.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"{slug}-ledger.csv"
    rows = list(csv.reader(Path(download.path()).read_text(encoding="utf-8").splitlines()))
    assert rows[0] == CSV_HEADER
    assert len(rows) > 1
    assert all(HASH.match(row[-1]) for row in rows[1:])


def assert_every_row_is_an_expense(page: Page) -> None:
    rows = entry_rows(page)
    expect(rows.first).to_be_visible()
    types = rows.evaluate_all(
        "rows => rows.map(row => row.querySelector('td[data-label=Type]')?.textContent.trim())")
    assert types, "no entries shown"
    assert set(types) == {"Expense"}, types


# --------------------------------------------------------------------------- without JavaScript


def test_journey_without_javascript(new_context: Callable[..., BrowserContext],
                                    artifacts: Path) -> None:
    slug, name = RIVERSIDE
    page = new_context(java_script_enabled=False).new_page()

    page.goto("/")
    search = page.get_by_label("Search organisations")
    search.fill("river")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"/\?q=river&"))
    expect(card_link(page, OPEN_WATER[1])).to_have_count(0)
    expect(card_link(page, KIDS_CODE[1])).to_have_count(0)
    expect(page.get_by_label("Search organisations")).to_have_value("river")

    card_link(page, name).click()
    expect(page).to_have_url(re.compile(rf"/orgs/{slug}$"))
    expect(page.get_by_role("img", name=re.compile(r"^Where the money goes"))).to_be_visible()

    page.get_by_role("link", name="Browse the ledger").click()
    page.get_by_label("Type", exact=True).select_option(label="Expense")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]type=expense(&|$)"))
    expect(page.get_by_label("Type", exact=True)).to_have_value("expense")
    assert_every_row_is_an_expense(page)
    newest = first_sequence(page)

    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"[?&]before=\d+"))
    expect(entry_rows(page).first.get_by_role("link", name=ENTRY_LINK)).not_to_have_text(newest)
    expect(page.get_by_label("Type", exact=True)).to_have_value("expense")
    assert_every_row_is_an_expense(page)

    open_disclosed_entry(page)
    check_entry_hash(page)

    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name=name).click()
    page.get_by_role("button", name="Verify the chain now").click()
    expect(page).to_have_url(re.compile(rf"/orgs/{slug}/verify\??$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Verification of {name}'s ledger")
    expect(page.get_by_text(CHAIN_VALID)).to_be_visible()
    page.screenshot(path=artifacts / "verification.png", full_page=True)


def test_empty_filter_result(page: Page) -> None:
    slug, _ = RIVERSIDE
    page.goto(f"/orgs/{slug}/ledger")
    htmx_ready(page)
    page.get_by_label("Payee, donor or description").fill("no such payee zzzz")
    expect(page.get_by_text("No entries match these filters.")).to_be_visible()
    expect(entries_table(page)).to_have_count(0)
    expect(page).to_have_url(re.compile(r"[?&]q=no(\+|%20)such(\+|%20)payee"))


# --------------------------------------------------------------------------- on a phone




@pytest.mark.parametrize("name", [
    "organisation", "ledger", "directory", "entry", "verification", "how-to-verify",
    "api-docs",
])
def test_phone_layout_does_not_overflow(new_context: Callable[..., BrowserContext],
                                        artifacts: Path, name: str) -> None:
    page = new_context(viewport=PHONE_VIEWPORT).new_page()
    path = PUBLIC_PAGES[name](page)
    page.goto(path)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.screenshot(path=artifacts / f"{name}-phone.png", full_page=True)
    widths = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})")
    assert widths["scroll"] <= widths["inner"] + 1, (
        f"{path} is {widths['scroll']}px wide on a {widths['inner']}px screen; "
        f"sticking out: {page.evaluate(WIDEST_ELEMENTS)}")


# The elements that stick out on the right (outside any scrolling box), for the message.
WIDEST_ELEMENTS = """() => {
  const limit = window.innerWidth + 1;
  const scrolled = el => {
    for (let box = el.parentElement; box && box !== document.body; box = box.parentElement) {
      if (getComputedStyle(box).overflowX !== 'visible') return true;
    }
    return false;
  };
  return [...document.querySelectorAll('body *')]
    .filter(el => el.getBoundingClientRect().right > limit && !scrolled(el))
    .slice(0, 10)
    .map(el => `<${el.tagName.toLowerCase()}> in <${el.parentElement.tagName.toLowerCase()}> ` +
               `"${el.textContent.trim().slice(0, 60)}" ` +
               `right edge at ${Math.round(el.getBoundingClientRect().right)}px`);
}"""
