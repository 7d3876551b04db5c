"""Giving in a real browser: the donate page, the test-mode card form, the thanks page
waiting for Stripe's webhook, the receipt, and the gift in the public ledger."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from playwright.sync_api import BrowserContext, Page, expect

from portal.extensions import db
from portal.models import Organisation
from portal.services import payments, tenancy
from tests.browser.conftest import OPEN_WATER

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_rate_limits")]

AccessibilityCheck = Callable[[Page, str], None]
GOOD_CARD, DECLINED_CARD = "4242 4242 4242 4242", "4000 0000 0000 0002"
ENTRY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def connected(demo_app: Flask, base_url: str) -> str:
    """Open Water Rescue with an onboarded Stripe account; the simulator posts its
    webhooks to the live server, as Stripe would."""
    from tests.donations.conftest import connect

    with demo_app.app_context():
        tenancy.platform()
        simulator = payments.simulator()
        simulator.control.configure_webhooks(hold=False)
        simulator.control.deliver_to(None, url=f"{base_url}/webhooks/stripe")
        org = db.session.query(Organisation).filter_by(slug=OPEN_WATER[0]).one()
        connect(org.id, simulator)
        db.session.remove()
    return OPEN_WATER[0]


def give(page: Page, slug: str, name: str, card: str) -> None:
    page.goto(f"/orgs/{slug}")
    page.get_by_role("link", name=f"Donate to {OPEN_WATER[1]}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Give to {OPEN_WATER[1]}")
    page.get_by_role("radio", name="Another amount").check()
    page.get_by_role("textbox", name="Other amount").fill("12.50")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Your email address").fill("donor@example.org")
    page.get_by_label("Show my name in the public ledger").check()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Test card")).to_be_visible()
    page.get_by_label("Card number").fill(card)
    page.get_by_role("button", name=re.compile(r"^Give ")).click()


def test_a_gift_from_the_donate_page_to_the_public_ledger(
    connected: str, page: Page, assert_accessible: AccessibilityCheck
) -> None:
    give(page, connected, "Grace Hopper", GOOD_CARD)
    expect(page.get_by_role("heading", name="Thank you, Grace Hopper")).to_be_visible()
    # The page waits for Stripe's webhook, then shows the receipt by itself.
    recorded = page.get_by_text(re.compile(r"Your gift is recorded in Open Water Rescue"))
    expect(recorded).to_be_visible(timeout=20_000)
    assert_accessible(page, "donation-thanks")
    receipt = page.locator("#receipt")
    expect(receipt).to_contain_text(re.compile(r"12\.50"))
    entry_hash = ENTRY_HASH.search(receipt.inner_text())
    assert entry_hash is not None
    with page.expect_download() as pdf:
        page.get_by_role("link", name="Download the receipt (PDF)").click()
    assert pdf.value.path().read_bytes().startswith(b"%PDF")

    page.get_by_role("link", name="See the entry in the public ledger").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Donation")
    fields = page.locator("dl.entry-fields")
    expect(fields).to_contain_text("Grace Hopper")
    expect(fields).to_contain_text(re.compile(r"12\.50"))
    expect(fields).to_contain_text(entry_hash.group(0))
    expect(fields).to_contain_text("Stripe payment")


def test_a_declined_card_says_why_and_records_nothing(
    connected: str, new_context: Callable[..., BrowserContext]
) -> None:
    page = new_context(java_script_enabled=False).new_page()
    give(page, connected, "Alan Turing", DECLINED_CARD)
    card = page.get_by_role("textbox", name="Card number")
    expect(card).to_have_attribute("aria-invalid", "true")
    expect(card).to_have_accessible_description(re.compile(r"Your card was declined"))
    page.goto(f"/orgs/{connected}/ledger?q=Turing")
    expect(page.get_by_text("Alan Turing")).to_have_count(0)
