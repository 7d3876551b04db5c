"""Signed-in people in a real browser: an account from sign-up to two-factor sign-in, an
organisation from its application to its first public expense, sessions, what each
role is refused, and the expense forms without JavaScript."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, FilePayload, Locator, Page, expect

from tests.browser.conftest import Authenticator, Outbox, Person, new_address
from tests.browser.test_journeys import assert_no_page_load, htmx_ready, mark_document
from tests.dashboard.conftest import png

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_rate_limits")]

RECEIPT = png()
TOTP_KEY = re.compile(r"^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$")
RECOVERY_CODE = re.compile(r"^[a-z2-9]{5}-[a-z2-9]{5}$")
APPROVED = re.compile(r"Approved: the expense is entry #(\d+) of the ledger\.")
AccessibilityCheck = Callable[[Page, str], None]


def unique(name: str) -> str:
    """An organisation name of its own: tests never share an organisation."""
    return f"{name} {uuid.uuid4().hex[:4].upper()}"


def spent_on() -> str:
    return (date.today() - timedelta(days=2)).isoformat()


def section_nav(page: Page, organisation: str) -> Locator:
    return page.get_by_role("navigation", name=f"Sections of {organisation}")


def field_value(page: Page, term: str) -> Locator:
    """The value beside ``term`` in a list of an entry's or expense's fields."""
    return page.get_by_role("term").filter(has_text=re.compile(rf"^{re.escape(term)}$")) \
        .locator("xpath=following-sibling::dd[1]")


# --------------------------------------------------------------------------- steps


def register(page: Page, person: Person, outbox: Outbox,
             check: AccessibilityCheck | None = None) -> None:
    """Sign up, then follow the confirmation link from the mail."""
    page.goto("/account/register")
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")
    if check is not None:
        check(page, "account-register")
    page.get_by_label("Email address").fill(person.email)
    page.get_by_label("Your name").fill(person.name)
    page.get_by_label("Password", exact=True).fill(person.password)
    page.get_by_label("Repeat the password").fill(person.password)
    page.get_by_role("button", name="Create the account").click()
    sent = page.get_by_role("status").filter(
        has=page.get_by_role("heading", name="Check your inbox"))
    expect(sent).to_contain_text(person.email)

    page.goto(outbox.link(person.email, "/account/confirm/"))
    expect(page).to_have_url(re.compile(r"/account/login$"))
    expect(page.get_by_text("Your email address is confirmed. You can sign in now.")) \
        .to_be_visible()


def sign_in(page: Page, person: Person, check: AccessibilityCheck | None = None) -> None:
    """Through the sign-in form, with a code from the authenticator app if two-factor
    sign-in is on; it ends on a dashboard page."""
    if not page.url.endswith("/account/login"):
        page.goto("/account/login")
    page.get_by_label("Email address").fill(person.email)
    page.get_by_label("Password", exact=True).fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    if person.authenticator is not None:
        expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor sign-in")
        if check is not None:
            check(page, "account-login-two-factor")
        page.get_by_label("Code", exact=True).fill(person.authenticator.code())
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {person.name}")).to_be_visible()


def turn_on_two_factor(page: Page, person: Person, reason: str,
                       assert_accessible: AccessibilityCheck) -> None:
    """On the two-factor page the portal sent them to: add the key shown to an
    authenticator app, confirm with its code, see the recovery codes, continue."""
    expect(page).to_have_url(re.compile(r"/account/two-factor\?"))
    expect(page.get_by_role("note")).to_contain_text(reason)
    key = page.get_by_text(TOTP_KEY)
    expect(key).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    htmx_ready(page)
    assert_accessible(page, "account-two-factor-setup")
    person.authenticator = Authenticator(key.inner_text().replace(" ", ""))
    page.get_by_label("Code from the app").fill(person.authenticator.code())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()

    codes = page.get_by_role("status").filter(
        has=page.get_by_role("heading", name="Your recovery codes"))
    expect(codes.get_by_role("listitem")).to_have_text([RECOVERY_CODE] * 10)
    assert_accessible(page, "account-recovery-codes")
    page.get_by_role("link", name="I have saved them: continue").click()


def fill_expense(page: Page, *, amount: str, payee: str, fund: str) -> None:
    page.get_by_label("Amount", exact=True).fill(amount)
    page.get_by_label("Paid to").fill(payee)
    page.get_by_label("What it was for").fill("Music stands for the spring concert")
    page.get_by_label("Fund", exact=True).select_option(label=fund)
    page.get_by_label("Category", exact=True).select_option(label="Equipment")
    page.get_by_label("Date spent").fill(spent_on())
    expect(page.get_by_role("radio", name="Public: everything is shown")).to_be_checked()
    attach_receipt(page)


def attach_receipt(page: Page) -> None:
    page.get_by_label("Receipt (PDF, PNG or JPEG)").set_input_files(
        FilePayload(name="receipt.png", mimeType="image/png", buffer=RECEIPT))


def open_waiting_expense(page: Page, organisation: str, payee: str) -> None:
    section_nav(page, organisation).get_by_role("link", name="Expenses").click()
    waiting = page.get_by_role("region", name="Expenses")
    expect(waiting.get_by_role("table")).to_contain_text("Waiting for approval")
    waiting.get_by_role("link", name=payee).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"to {payee}")


def approve(page: Page) -> int:
    """Approve the expense on the page; the number of its ledger entry."""
    page.get_by_role("button", name="Approve and record in the ledger").click()
    flash = page.get_by_text(APPROVED)
    expect(flash).to_be_visible()
    expect(field_value(page, "Approved")).to_be_visible()
    found = APPROVED.search(flash.inner_text())
    assert found is not None
    return int(found.group(1))


# --------------------------------------------------------------------------- the journey


def test_organisation_from_application_to_public_expense(
    new_context: Callable[..., BrowserContext], make_person: Callable[..., Person],
    outbox: Outbox, assert_accessible: AccessibilityCheck,
) -> None:
    organisation = unique("Harbour Lights Choir")
    admin = make_person("Ada Admin", two_factor=True, platform_admin=True)
    owner = Person("Olive Owner", new_address("Olive Owner"))
    finance = Person("Finn Finance", new_address("Finn Finance"))
    payee = "Harbour Hardware"

    # The owner signs up, confirms the address and signs in.
    page = new_context().new_page()
    register(page, owner, outbox, assert_accessible)
    assert_accessible(page, "account-login")
    sign_in(page, owner)
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_text("You are not a member of any organisation yet.")).to_be_visible()
    assert_accessible(page, "dashboard-home")

    # They apply for an organisation: registered at once, waiting for approval.
    page.get_by_role("link", name="Publish an organisation").click()
    htmx_ready(page)
    assert_accessible(page, "dashboard-apply")
    page.get_by_label("Name", exact=True).fill(organisation)
    page.get_by_label("Country of registration").select_option(label="United Kingdom")
    page.get_by_label("Main currency").select_option(label="GBP — British Pound")
    page.get_by_label("Website").fill("https://harbour-lights.example")
    page.get_by_label("What the organisation does").fill("A community choir by the sea.")
    page.get_by_role("button", name="Send the application").click()
    expect(page.get_by_text(f"{organisation} is registered and waits for approval")) \
        .to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    waiting = page.get_by_text(f"{organisation} is waiting for approval by the portal's "
                               "administrators.")
    expect(waiting).to_be_visible()
    assert_accessible(page, "dashboard-overview")
    slug = page.url.rstrip("/").rsplit("/", 1)[-1]
    expect(section_nav(page, organisation).get_by_role("link", name="Public page")) \
        .to_have_count(0)

    # A platform administrator (two-factor sign-in on) approves it.
    admin_page = new_context().new_page()
    sign_in(admin_page, admin, assert_accessible)
    admin_page.get_by_role("link", name="Administration: organisations waiting for approval") \
        .click()
    expect(admin_page.get_by_role("heading", level=1)).to_have_text("Organisations")
    assert_accessible(admin_page, "admin-organisations")
    admin_page.get_by_role("link", name=organisation).click()
    expect(admin_page.get_by_role("heading", level=1)).to_have_text(organisation)
    assert_accessible(admin_page, "admin-organisation")
    admin_page.get_by_label("Reason").fill("Checked against the charity register.")
    admin_page.get_by_role("button", name="Approve: make it public").click()
    expect(admin_page.get_by_text(f"{organisation} is approved and now public.")) \
        .to_be_visible()
    expect(field_value(admin_page, "Status")).to_have_text("Active")

    # Back with the owner: the organisation is public now. Members need two-factor
    # sign-in, so the portal sends them to turn it on first, then back.
    page.reload()
    expect(waiting).to_have_count(0)
    nav = section_nav(page, organisation)
    expect(nav.get_by_role("link", name="Public page")).to_be_visible()
    nav.get_by_role("link", name="Members").click()
    turn_on_two_factor(page, owner, "Turn on two-factor sign-in before you invite members",
                       assert_accessible)
    expect(page).to_have_url(re.compile(rf"/dashboard/{slug}/members$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")

    # A fund for the expense.
    section_nav(page, organisation).get_by_role("link", name="Funds").click()
    page.get_by_role("link", name="Create a fund").click()
    htmx_ready(page)
    assert_accessible(page, "dashboard-fund-form")
    page.get_by_label("Name", exact=True).fill("Concert Fund")
    page.get_by_label("Kind of fund").select_option(label="Project: money for one project")
    page.get_by_role("button", name="Create the fund").click()
    expect(page.get_by_text("The fund “Concert Fund” is created.")).to_be_visible()
    expect(page.get_by_role("heading", name="Concert Fund")).to_be_visible()
    assert_accessible(page, "dashboard-funds")

    # The owner invites a second person as finance.
    section_nav(page, organisation).get_by_role("link", name="Members").click()
    htmx_ready(page)
    assert_accessible(page, "dashboard-members")
    page.get_by_label("Email address").fill(finance.email)
    page.get_by_label("Role", exact=True).select_option(
        label="Finance: submit and approve expenses, corrections, transfers, funds")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_text(f"An invitation is on its way to {finance.email}.")) \
        .to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text=f"{finance.email} as finance")) \
        .to_be_visible()

    # The finance member signs up, accepts the invitation from the mail ...
    finance_page = new_context().new_page()
    register(finance_page, finance, outbox)
    sign_in(finance_page, finance)
    finance_page.goto(outbox.link(finance.email, "/dashboard/invitations/"))
    expect(finance_page.get_by_role("heading", level=1)).to_have_text(f"Join {organisation}")
    expect(finance_page.get_by_text(f"Olive Owner invites you to join {organisation} as "
                                    "finance.")).to_be_visible()
    assert_accessible(finance_page, "dashboard-invitation")
    finance_page.get_by_role("button", name="Accept and join").click()
    expect(finance_page.get_by_text(f"Welcome to {organisation}: you joined as finance.")) \
        .to_be_visible()

    # ... and, sent to turn on two-factor sign-in first, submits an expense with a receipt.
    section_nav(finance_page, organisation).get_by_role("link", name="Expenses").click()
    expect(finance_page.get_by_text("Nothing is waiting for approval.")).to_be_visible()
    assert_accessible(finance_page, "dashboard-expenses")
    finance_page.get_by_role("link", name="Submit an expense").click()
    turn_on_two_factor(finance_page, finance,
                       "Turn on two-factor sign-in before you submit an expense",
                       assert_accessible)
    expect(finance_page.get_by_role("heading", level=1)).to_have_text("Submit an expense")
    htmx_ready(finance_page)
    assert_accessible(finance_page, "dashboard-expense-form")
    fill_expense(finance_page, amount="45.60", payee=payee, fund="Concert Fund")
    finance_page.get_by_role("button", name="Submit for approval").click()
    expect(finance_page.get_by_text("The expense is submitted.")).to_be_visible()
    expect(finance_page.get_by_role("heading", level=1)).to_have_text(f"£45.60 to {payee}")
    expect(field_value(finance_page, "Receipt").get_by_role("link")).to_have_text(
        "receipt.png")

    # Four eyes: the submitter is not offered the decision on their own expense.
    expect(finance_page.get_by_text("You submitted this expense, so another member has "
                                    "to approve or reject it.")).to_be_visible()
    expect(finance_page.get_by_role("button", name="Approve and record in the ledger")) \
        .to_have_count(0)
    expect(finance_page.get_by_role("button", name="Reject")).to_have_count(0)
    assert_accessible(finance_page, "dashboard-expense")

    # The owner approves it.
    open_waiting_expense(page, organisation, payee)
    assert_accessible(page, "dashboard-expense-decision")
    sequence = approve(page)

    # The public ledger shows it, with the receipt whose hash the entry records.
    section_nav(page, organisation).get_by_role("link", name="Public page").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(organisation)
    page.get_by_role("link", name="Browse the ledger").click()
    row = page.get_by_role("region", name="Ledger entries").get_by_role("row").filter(
        has=page.get_by_role("link", name=f"#{sequence}", exact=True))
    expect(row).to_contain_text(payee)
    expect(row).to_contain_text("£45.60")
    row.get_by_role("link", name=f"#{sequence}", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Entry #{sequence}: Expense")
    expect(field_value(page, "Payee")).to_have_text(payee)
    expect(field_value(page, "Amount")).to_contain_text("£45.60")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the receipt").click()
    receipt = Path(download_info.value.path()).read_bytes()
    assert receipt == RECEIPT
    recorded = field_value(page, "Receipt").get_by_text(re.compile(r"^[0-9a-f]{64}$"))
    assert recorded.inner_text() == hashlib.sha256(receipt).hexdigest()
    assert_accessible(page, "public-entry-with-receipt")

    # Sessions: the owner signs in on a second device too ...
    other_device = new_context().new_page()
    sign_in(other_device, owner)

    # ... sees both on the security page of the first, and signs the other one out.
    page.goto("/account/security")
    htmx_ready(page)
    sessions = page.get_by_role("region", name="Where you are signed in")
    revoke = re.compile(r"^Sign out .+, last active ")
    expect(sessions.get_by_role("row").filter(has_text="This device")).to_have_count(1)
    expect(sessions.get_by_role("button", name=revoke)).to_have_count(1)
    assert_accessible(page, "account-security")
    mark_document(page)
    sessions.get_by_role("button", name=revoke).click()
    expect(sessions).to_contain_text("That session has been signed out.")
    expect(sessions.get_by_role("button", name=revoke)).to_have_count(0)
    expect(sessions.get_by_role("row").filter(has_text="This device")).to_have_count(1)
    assert_no_page_load(page)

    other_device.goto("/dashboard/")
    expect(other_device).to_have_url(
        re.compile(r"/account/login\?next=(/|%2F)dashboard(/|%2F)$"))
    expect(other_device.get_by_role("heading", level=1)).to_have_text("Sign in")


# --------------------------------------------------------------------------- refusals


def test_a_viewer_is_not_offered_what_the_role_does_not_allow(
    new_context: Callable[..., BrowserContext], make_person: Callable[..., Person],
    make_organisation: Callable[..., str], assert_accessible: AccessibilityCheck,
) -> None:
    organisation = unique("Lantern Library")
    slug = make_organisation(organisation, make_person("Nora Owner"))
    viewer = make_person("Vic Viewer", member_of=slug, role="viewer")

    page = new_context().new_page()
    sign_in(page, viewer)
    page.get_by_role("link", name=organisation).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    nav = section_nav(page, organisation)
    for offered in ("Overview", "Ledger", "Funds"):
        expect(nav.get_by_role("link", name=offered, exact=True)).to_be_visible()
    for refused in ("Transfers", "Members", "Expenses", "Settings", "Reports and exports"):
        expect(nav.get_by_role("link", name=refused, exact=True)).to_have_count(0)

    # Typing the address of a page the role does not allow gets the reason.
    response = page.goto(f"/dashboard/{slug}/members")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You may not do that")
    expect(page.get_by_text("As viewer, you may not invite members, change roles, remove "
                            "members.")).to_be_visible()
    assert_accessible(page, "dashboard-refused")


# --------------------------------------------------------------------------- without JavaScript


def test_expense_without_javascript(
    new_context: Callable[..., BrowserContext], make_person: Callable[..., Person],
    make_organisation: Callable[..., str],
) -> None:
    organisation = unique("Quayside Youth Band")
    owner = make_person("Oscar Owner", two_factor=True)
    slug = make_organisation(organisation, owner)
    finance = make_person("Fatima Finance", two_factor=True, member_of=slug, role="finance")
    payee = "Tide Music Supplies"

    page = new_context(java_script_enabled=False).new_page()
    sign_in(page, finance)
    page.get_by_role("link", name=organisation).click()
    section_nav(page, organisation).get_by_role("link", name="Expenses").click()
    page.get_by_role("link", name="Submit an expense").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Submit an expense")

    # An amount with too many decimals: the form comes back with the message beside it.
    fill_expense(page, amount="12.345", payee=payee, fund="General Fund")
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Submit for approval").click()
    assert sent.value.status == 422
    amount = page.get_by_label("Amount", exact=True)
    expect(amount).to_have_attribute("aria-invalid", "true")
    expect(amount).to_have_accessible_description(
        re.compile(r"Enter an amount in GBP like 120\.55 \(at most 2 decimals\)\."))
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved.")
    expect(page.get_by_label("Paid to")).to_have_value(payee)

    # Corrected (a file input cannot keep its file across pages: choose it again).
    amount.fill("12.34")
    attach_receipt(page)
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.get_by_text("The expense is submitted.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"£12.34 to {payee}")
    expect(page.get_by_role("button", name="Approve and record in the ledger")) \
        .to_have_count(0)

    # The owner, also without JavaScript, approves it.
    owner_page = new_context(java_script_enabled=False).new_page()
    sign_in(owner_page, owner)
    owner_page.get_by_role("link", name=organisation).click()
    open_waiting_expense(owner_page, organisation, payee)
    approve(owner_page)
