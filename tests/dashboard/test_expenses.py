"""Expenses with four eyes, from the submit form to the public ledger and its receipt."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Expense, OrganisationEvent, User
from portal.services import expenses, receipts
from tests.dashboard.conftest import PDF, Browser, World, png, submit

Browsers = Callable[[User | None], Browser]


def form(world: World, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "amount": "89.90", "currency": "EUR", "fund": world.fund_id, "category": "equipment",
        "payee": "Harbour Tools Ltd", "description": "Two ladders", "spent_on": "2026-01-10",
        "visibility": "public_full",
    }
    data.update(overrides)
    return data


def expense_count(world: World) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(Expense).where(
        Expense.organisation_id == world.org.id)) or 0)


def stored_receipts(app: Flask) -> set[str]:
    folder = Path(app.instance_path) / "receipts"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_an_expense_goes_from_the_form_to_the_public_ledger_with_its_receipt(
    app: Flask, world: World, browser: Browsers
) -> None:
    submitter, approver = browser(world.submitter), browser(world.members["finance"])
    image = png(extra=100)
    sent = submitter.post(f"/dashboard/{world.org.slug}/expenses/new", form(
        world, receipt=(io.BytesIO(image), "ladder-invoice.png", "image/png")),
        content_type="multipart/form-data")
    assert sent.status_code == 303
    expense = db.session.scalar(sa.select(Expense).where(Expense.payee == "Harbour Tools Ltd"))
    assert expense is not None and expense.status == "submitted"
    assert (expense.amount, expense.receipt_mime, expense.receipt_name) == (
        8990, "image/png", "ladder-invoice.png")
    page = submitter.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Waiting for approval" in page
    assert "You submitted this expense, so another member has to approve" in page

    approved = approver.post(f"/dashboard/{world.org.slug}/expenses/{expense.id}/approve")
    assert approved.status_code == 303
    db.session.refresh(expense)
    assert expense.status == "approved" and expense.decided_by == world.members["finance"].id
    assert expense.ledger_entry_id is not None

    export = json.loads(browser(None).get(f"/orgs/{world.org.slug}/ledger.json").get_data())
    entry = next(e for e in export["entries"] if e.get("entry_id") == expense.ledger_entry_id)
    assert entry["type"] == "expense" and entry["amount"] == -8990
    assert entry["metadata"]["receipt_sha256"] == expense.receipt_sha256
    assert entry["metadata"]["expense_id"] == expense.id
    assert entry["metadata"]["spent_on"] == "2026-01-10"
    assert entry["metadata"]["category"] == "equipment"
    assert entry["metadata"]["fund_id"] == world.fund_id

    public_page = browser(None).get(f"/orgs/{world.org.slug}/entries/{entry['entry_id']}")
    assert "Download the receipt" in public_page.get_data(as_text=True)
    download = browser(None).get(f"/orgs/{world.org.slug}/entries/{entry['entry_id']}/receipt")
    assert download.status_code == 200
    assert download.get_data() == image
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "sandbox"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    download.close()
    events = set(db.session.scalars(sa.select(OrganisationEvent.action).where(
        OrganisationEvent.subject == expense.id)))
    assert events == {"expense_submitted", "expense_approved"}


@pytest.mark.parametrize(("visibility", "extra", "public"), [
    ("public_full", {}, True),
    ("public_aggregated", {}, False),
    ("internal_only", {}, False),
    ("delayed_public", {"reveal_on": __import__("datetime").date(2099, 1, 1)}, False),
])
def test_a_receipt_is_public_only_when_its_entry_is(
    world: World, browser: Browsers, visibility: str, extra: dict[str, Any], public: bool
) -> None:
    expense_id = submit(world.submitter, world.org, world.fund_id, visibility=visibility,
                        receipt=png(), **extra)
    entry = expenses.approve_expense(world.members["finance"].id, world.org.id, expense_id)
    response = browser(None).get(f"/orgs/{world.org.slug}/entries/{entry.entry_id}/receipt")
    assert response.status_code == (200 if public else 404)
    if not public:
        assert png() not in response.get_data()
    response.close()
    # Members who see internal entries can always download it from the dashboard.
    member = browser(world.members["auditor"]).get(
        f"/dashboard/{world.org.slug}/expenses/{expense_id}/receipt")
    assert member.status_code == 200 and member.get_data() == png()
    assert member.headers["Content-Security-Policy"] == "sandbox"
    member.close()


def test_nobody_approves_their_own_expense(world: World, browser: Browsers) -> None:
    own = browser(world.submitter).post(
        f"/dashboard/{world.org.slug}/expenses/{world.expense_id}/approve")
    assert own.status_code == 403
    assert "another member has to approve or reject it" in own.get_data(as_text=True)
    rejected = browser(world.submitter).post(
        f"/dashboard/{world.org.slug}/expenses/{world.expense_id}/reject",
        {"reason": "Changed my mind"})
    assert rejected.status_code == 403
    assert db.session.get(Expense, world.expense_id).status == "submitted"  # type: ignore[union-attr]


def test_the_database_refuses_a_decision_by_the_submitter(world: World) -> None:
    expense = db.session.get(Expense, world.expense_id)
    assert expense is not None
    expense.decided_by = expense.submitted_by
    with pytest.raises(IntegrityError, match="ck_expenses_four_eyes"), db.session.begin_nested():
        db.session.flush()


def test_a_rejection_needs_a_reason(world: World, browser: Browsers) -> None:
    approver = browser(world.members["finance"])
    url = f"/dashboard/{world.org.slug}/expenses/{world.expense_id}/reject"
    blank = approver.post(url, {"reason": "   "}, htmx=True)
    assert blank.status_code == 422
    body = blank.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="decision"')  # the fragment only
    assert "This is needed." in body
    assert db.session.get(Expense, world.expense_id).status == "submitted"  # type: ignore[union-attr]
    done = approver.post(url, {"reason": "No receipt attached for the second ladder"})
    assert done.status_code == 303
    expense = db.session.get(Expense, world.expense_id)
    assert expense is not None and expense.status == "rejected"
    assert expense.rejection_reason == "No receipt attached for the second ladder"
    page = browser(world.submitter).get(done.headers["Location"]).get_data(as_text=True)
    assert "No receipt attached for the second ladder" in page
    again = approver.post(f"/dashboard/{world.org.slug}/expenses/{world.expense_id}/approve")
    assert again.status_code == 409
    assert "rejected already" in again.get_data(as_text=True)


def test_only_the_submitter_withdraws_and_only_while_it_waits(
    world: World, browser: Browsers
) -> None:
    url = f"/dashboard/{world.org.slug}/expenses/{world.expense_id}/withdraw"
    other = browser(world.members["finance"]).post(url)
    assert other.status_code == 403
    assert "Only the member who submitted" in other.get_data(as_text=True)
    assert browser(world.submitter).post(url).status_code == 303
    assert db.session.get(Expense, world.expense_id).status == "withdrawn"  # type: ignore[union-attr]
    assert browser(world.submitter).post(url).status_code == 409


@pytest.mark.parametrize(("content", "name", "declared", "message"), [
    (PDF, "invoice.png", "image/png", "The file is named .png but contains a PDF"),
    (b"<html><script>alert(1)</script></html>", "invoice.html", "text/html",
     "Receipts must be PDF, PNG or JPEG files"),
    (png(), "invoice.png", "text/html", "The file was sent as text/html"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "invoice.png", "image/png",
     "Receipts must be PDF, PNG or JPEG files"),
    (png(), "invoice.exe", "application/octet-stream", "must end in .pdf, .png"),
    (b"", "empty.pdf", "application/pdf", "The receipt file is empty"),
])
def test_receipts_are_checked_by_their_content(
    app: Flask, world: World, browser: Browsers, content: bytes, name: str, declared: str,
    message: str,
) -> None:
    before, files = expense_count(world), stored_receipts(app)
    response = browser(world.submitter).post(
        f"/dashboard/{world.org.slug}/expenses/new",
        form(world, receipt=(io.BytesIO(content), name, declared)),
        content_type="multipart/form-data")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert expense_count(world) == before
    assert stored_receipts(app) == files


def test_an_oversize_receipt_is_refused(
    app: Flask, world: World, browser: Browsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "RECEIPT_MAX_BYTES", 2_000)
    before, files = expense_count(world), stored_receipts(app)
    response = browser(world.submitter).post(
        f"/dashboard/{world.org.slug}/expenses/new",
        form(world, receipt=(io.BytesIO(png(extra=5_000)), "big.png", "image/png")),
        content_type="multipart/form-data")
    assert response.status_code == 422
    assert "The receipt is larger than 2,000 bytes" in response.get_data(as_text=True)
    assert expense_count(world) == before
    assert stored_receipts(app) == files


@pytest.mark.parametrize(("overrides", "message"), [
    ({"amount": "twelve"}, "Enter an amount in EUR like 120.55"),
    ({"amount": "12.345"}, "at most 2 decimals"),
    ({"amount": "0"}, "Enter an amount above zero."),
    ({"amount": "1000", "currency": "JPY"}, ""),  # valid: yen have no decimals
    ({"payee": ""}, "This is needed."),
    ({"category": "not-a-category"}, "Not a valid choice"),
    ({"spent_on": "yesterday"}, "Not a valid date value"),
    ({"spent_on": "2999-01-01"}, "The date spent cannot be in the future."),
    ({"visibility": "delayed_public"}, "Choose the date on which the expense becomes public."),
    ({"visibility": "delayed_public", "reveal_on": "2020-01-01"},
     "The disclosure date must be in the future."),
])
def test_the_expense_form_says_what_is_wrong_and_writes_nothing(
    world: World, browser: Browsers, overrides: dict[str, str], message: str
) -> None:
    before = expense_count(world)
    response = browser(world.submitter).post(f"/dashboard/{world.org.slug}/expenses/new",
                                             form(world, **overrides), htmx=True)
    if not message:
        assert response.status_code == 200 and "HX-Redirect" in response.headers
        assert expense_count(world) == before + 1
        return
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body
    assert body.lstrip().startswith('<form id="expense_form"')
    assert "Nothing was saved" in body
    assert expense_count(world) == before


def test_an_archived_fund_or_category_is_not_offered_nor_accepted(
    world: World, browser: Browsers
) -> None:
    from portal.services import categories, funds

    funds.archive_fund(world.members["owner"].id, world.org.id,
                       funds.create_fund(world.members["owner"].id, world.org.id,
                                         name="Old roof", fund_type="project"))
    categories.archive_category(world.members["owner"].id, world.org.id, "travel")
    submitter = browser(world.submitter)
    page = submitter.get(f"/dashboard/{world.org.slug}/expenses/new").get_data(as_text=True)
    assert "Old roof" not in page and 'value="travel"' not in page
    refused = submitter.post(f"/dashboard/{world.org.slug}/expenses/new",
                             form(world, category="travel"))
    assert refused.status_code == 422


def test_receipt_sniffing_knows_the_three_types() -> None:
    assert receipts.sniff(PDF) == "application/pdf"
    assert receipts.sniff(png()) == "image/png"
    assert receipts.sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image/jpeg"
    assert receipts.sniff(b"GIF89a") is None


def test_a_viewer_sees_no_expenses(world: World, browser: Browsers) -> None:
    viewer = browser(world.members["viewer"])
    assert viewer.get(f"/dashboard/{world.org.slug}/expenses").status_code == 403
    overview = viewer.get(f"/dashboard/{world.org.slug}").get_data(as_text=True)
    assert "Waiting for approval" not in overview and "Corner Hardware" not in overview
    finance = browser(world.members["finance"]).get(f"/dashboard/{world.org.slug}")
    assert "Corner Hardware" in finance.get_data(as_text=True)


def test_an_upload_beyond_the_request_limit_is_explained(
    app: Flask, world: World, browser: Browsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 5_000)
    before = expense_count(world)
    response = browser(world.submitter).post(
        f"/dashboard/{world.org.slug}/expenses/new",
        form(world, receipt=(io.BytesIO(png(extra=20_000)), "big.png", "image/png")),
        content_type="multipart/form-data")
    assert response.status_code == 413
    assert "The upload is too large: receipts may be at most" in response.get_data(as_text=True)
    assert expense_count(world) == before
