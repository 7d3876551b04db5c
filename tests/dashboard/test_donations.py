"""The donations list: search, filters, keyset pages and the streamed CSV export."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable

import pytest
from flask import Flask

from portal.extensions import db
from portal.models import Organisation, User
from portal.services import donations_list, ledger
from tests.conftest import sign_in_as
from tests.dashboard.conftest import Browser, World

Browsers = Callable[[User | None], Browser]


@pytest.fixture
def gifts(world: World) -> World:
    """Donations in two currencies and funds, one internal, one with a formula as name."""
    for donor, amount, currency, meta in [
        ("Grace Hopper", 2_500, "EUR", {"message": "Keep the lights on"}),
        ("Alan Turing", 10_000, "EUR", {"fund_id": world.fund_id, "message": "Winter coats"}),
        ("Quiet Donor", 99_900, "EUR", {"visibility": "internal_only"}),
        ("=HYPERLINK(\"http://evil\")", 1_000, "EUR", {}),
        ("Tokyo Friends", 5_000, "JPY", {"message": "Warm wishes"}),
    ]:
        ledger.append_entry(world.org.id, "donation_received", amount, currency,
                            {"donor_name": donor, **meta})
    db.session.commit()
    return world


def page_text(browser: Browser, world: World, query: str = "") -> str:
    response = browser.get(f"/dashboard/{world.org.slug}/donations{query}")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_members_see_every_donation_in_full(gifts: World, browser: Browsers) -> None:
    text = page_text(browser(gifts.members["auditor"]), gifts)
    for donor in ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Quiet Donor", "Tokyo Friends"):
        assert donor in text
    assert "€999.00" in text and "Internal" in text
    assert "Download these donations as CSV" in text


@pytest.mark.parametrize(("query", "shown", "hidden"), [
    ("?q=winter", {"Alan Turing", "Ada Lovelace"}, {"Grace Hopper"}),
    ("?q=HOPPER", {"Grace Hopper"}, {"Alan Turing"}),
    ("?q=100%25", set(), {"Grace Hopper", "Alan Turing"}),
    ("?fund={fund}", {"Alan Turing"}, {"Grace Hopper", "Ada Lovelace"}),
    ("?min=50&max=150", {"Alan Turing"}, {"Grace Hopper", "Ada Lovelace", "Tokyo Friends"}),
    ("?min=5000", {"Tokyo Friends"}, {"Alan Turing"}),
    ("?currency=JPY", {"Tokyo Friends"}, {"Alan Turing", "Grace Hopper"}),
    ("?from=2000-01-01&to=2000-12-31", set(), {"Alan Turing", "Tokyo Friends"}),
])
def test_donations_are_searched_and_filtered(
    gifts: World, browser: Browsers, query: str, shown: set[str], hidden: set[str]
) -> None:
    text = page_text(browser(gifts.members["finance"]), gifts,
                     query.format(fund=gifts.fund_id))
    for donor in shown:
        assert donor in text, donor
    for donor in hidden:
        assert donor not in text.split("</form>", 1)[1], donor
    if not shown:
        assert "No donation matches these filters." in text


@pytest.mark.parametrize(("query", "message"), [
    ("?from=yesterday", "is not a date"),
    ("?from=2026-02-01&to=2026-01-01", "The start date is after the end date."),
    ("?min=ten", "is not an amount"),
    ("?min=10&max=5", "The smallest amount is larger than the largest."),
    ("?currency=XYZ", "Choose a currency."),
    ("?fund=../../etc", "Choose one of the organisation"),
])
def test_bad_filters_are_explained(gifts: World, browser: Browsers, query: str,
                                   message: str) -> None:
    response = browser(gifts.members["finance"]).get(
        f"/dashboard/{gifts.org.slug}/donations{query}", headers={"HX-Request": "true"})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body and body.lstrip().startswith('<div id="donations_table"')


def test_pages_are_cut_by_sequence(gifts: World) -> None:
    actor = gifts.members["finance"].id
    filters = donations_list.DonationFilters()
    first = donations_list.donations_page(actor, gifts.org.id, filters, page_size=2)
    assert [r.donor_name for r in first.rows] == ["Tokyo Friends", '=HYPERLINK("http://evil")']
    assert first.newer is None and first.older is not None
    second = donations_list.donations_page(actor, gifts.org.id, filters, page_size=2,
                                           before=first.older)
    assert [r.donor_name for r in second.rows] == ["Quiet Donor", "Alan Turing"]
    assert second.newer is not None
    back = donations_list.donations_page(actor, gifts.org.id, filters, page_size=2,
                                         after=second.newer)
    assert back.rows == first.rows
    seen = []
    page = donations_list.donations_page(actor, gifts.org.id, filters, page_size=2)
    while True:
        seen += [r.donor_name for r in page.rows]
        if page.older is None:
            break
        page = donations_list.donations_page(actor, gifts.org.id, filters, page_size=2,
                                             before=page.older)
    assert len(seen) == 6 and len(set(seen)) == 6


def test_the_csv_export_streams_every_matching_donation(
    gifts: World, browser: Browsers
) -> None:
    response = browser(gifts.members["auditor"]).get(
        f"/dashboard/{gifts.org.slug}/donations.csv?currency=EUR")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["donor"] for r in rows] == [
        "Ada Lovelace", "Grace Hopper", "Alan Turing", "Quiet Donor",
        "'=HYPERLINK(\"http://evil\")"]
    assert rows[2]["amount"] == "100.00" and rows[2]["fund"] == "Winter appeal"
    assert rows[3]["visibility"] == "internal_only"
    assert browser(gifts.members["viewer"]).get(
        f"/dashboard/{gifts.org.slug}/donations.csv").status_code == 403


def test_the_csv_keeps_its_scope_after_the_view_returns(
    committed_app: Flask, create_org: Callable[..., Organisation],
    create_user: Callable[..., User],
) -> None:
    from portal.models import Membership

    org = create_org()
    auditor = create_user(mfa=True)
    db.session.add(Membership(organisation_id=org.id, user_id=auditor.id, role="auditor"))
    for donor in ("Ann", "Bob", "Cyd"):
        ledger.append_entry(org.id, "donation_received", 100, "EUR", {"donor_name": donor})
    db.session.commit()
    result: dict[str, object] = {}

    def fetch() -> None:
        # A thread of its own: the request's session is gone before the body is produced.
        client = committed_app.test_client()
        with committed_app.app_context():
            sign_in_as(client, auditor)
        response = client.get(f"/dashboard/{org.slug}/donations.csv")
        result["status"], result["body"] = response.status_code, response.get_data(as_text=True)

    thread = threading.Thread(target=fetch)
    thread.start()
    thread.join()
    assert result["status"] == 200
    assert [r["donor"] for r in csv.DictReader(io.StringIO(str(result["body"])))] == [
        "Ann", "Bob", "Cyd"]
