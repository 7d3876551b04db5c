"""The ledger page: filters, keyset pagination at its edges, fragments, downloads, caching."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger

HTMX = {"HX-Request": "true"}


@pytest.fixture
def busy(app: object, create_org: Callable[..., Organisation]) -> Organisation:
    """120 entries: donations (1..120 EUR) with a rent expense every tenth entry."""
    org = create_org(name="Busy Bees")
    for n in range(1, 121):
        if n % 10 == 0:
            ledger.append_entry(org.id, "expense", -n * 100, "EUR",
                                {"category": "rent", "payee": f"Landlord {n}"})
        else:
            ledger.append_entry(org.id, "donation_received", n * 100, "EUR",
                                {"donor_name": f"Donor {n}"})
    db.session.commit()
    return org


def sequences(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'>#(\d+)</a>', html)]


def get(client: FlaskClient, url: str, **headers: str) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def test_first_page_is_the_newest_fifty(client: FlaskClient, busy: Organisation) -> None:
    page = get(client, f"/orgs/{busy.slug}/ledger")
    assert sequences(page) == list(range(120, 70, -1))
    assert "before=71" in page  # the cursor is the last sequence shown
    assert "after=" not in page  # nothing newer than the newest


def test_paging_older_and_back_at_the_edges(client: FlaskClient, busy: Organisation) -> None:
    second = get(client, f"/orgs/{busy.slug}/ledger?before=71")
    assert sequences(second) == list(range(70, 20, -1))
    last = get(client, f"/orgs/{busy.slug}/ledger?before=21")
    assert sequences(last) == list(range(20, 0, -1))
    assert "before=" not in last  # no older page after the first entry
    assert "after=20" in last
    back = get(client, f"/orgs/{busy.slug}/ledger?after=20")
    assert sequences(back) == list(range(70, 20, -1))
    top = get(client, f"/orgs/{busy.slug}/ledger?after=70")
    assert sequences(top) == list(range(120, 70, -1))
    assert "after=" not in top.split("Pages of entries")[1].split("</nav>")[0]
    beyond = get(client, f"/orgs/{busy.slug}/ledger?before=1")
    assert "No entries match" in beyond or "No entries yet" in beyond


def test_filtered_pages_carry_their_filters(client: FlaskClient, busy: Organisation) -> None:
    page = get(client, f"/orgs/{busy.slug}/ledger?type=expense")
    assert sequences(page) == list(range(120, 0, -10))
    assert "Older" not in page
    rows = get(client, f"/orgs/{busy.slug}/ledger?type=donation_received")
    assert "before=" in rows and "type=donation_received" in rows.split("Older")[0][-400:]


@pytest.mark.parametrize(("query", "expected"), [
    ("min=100&max=100", [100]),
    ("min=118.5", [120, 119]),
    ("max=2", [2, 1]),
    ("q=landlord", list(range(120, 0, -10))),
    ("q=donor%2011", [*range(119, 110, -1), 11]),  # words match as prefixes
    ("category=rent&min=100", [120, 110, 100]),
])
def test_filters_at_their_boundaries(
    client: FlaskClient, busy: Organisation, query: str, expected: list[int]
) -> None:
    assert sequences(get(client, f"/orgs/{busy.slug}/ledger?{query}")) == expected


def test_date_range_is_inclusive(client: FlaskClient, busy: Organisation) -> None:
    today = ledger.utc_timestamp()[:10]
    assert len(sequences(get(client, f"/orgs/{busy.slug}/ledger?from={today}&to={today}"))) == 50
    assert "No entries match" in get(client, f"/orgs/{busy.slug}/ledger?to=2000-01-01")


@pytest.mark.parametrize(("query", "message"), [
    ("type=gift", "unknown entry type"),
    ("from=2026-13-01", "is not a date"),
    ("from=2026-02-01&to=2026-01-01", "start date is after"),
    ("min=abc", "is not an amount"),
    ("min=-5", "from 0 upwards"),
    ("min=10&max=5", "smallest amount is larger"),
    ("q=" + "x" * 101, "at most 100"),
    ("q=%21%21%21", "at least one word"),
    ("fund=fund_nope", "unknown fund"),
    ("category=Not%20A%20Slug", "short lowercase name"),
])
def test_bad_filters_get_a_clear_400(
    client: FlaskClient, busy: Organisation, query: str, message: str
) -> None:
    for headers in ({}, HTMX):
        response = client.get(f"/orgs/{busy.slug}/ledger?{query}", headers=headers)
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    assert client.get(f"/orgs/{busy.slug}/ledger.csv?{query}").status_code == 400
    assert client.get(f"/api/v1/public/organisations/{busy.slug}/ledger?{query}").status_code == 400


@pytest.mark.parametrize("query", ["before=abc", "after=-1", "before=99999999999999999999"])
def test_bad_cursors_are_refused(client: FlaskClient, busy: Organisation, query: str) -> None:
    assert client.get(f"/orgs/{busy.slug}/ledger?{query}").status_code == 400


def test_htmx_gets_the_table_only_and_everyone_else_the_page(
    client: FlaskClient, busy: Organisation
) -> None:
    url = f"/orgs/{busy.slug}/ledger?type=expense"
    full = client.get(url)
    fragment = client.get(url, headers=HTMX)
    assert full.get_data(as_text=True).startswith("<!doctype html>")
    body = fragment.get_data(as_text=True).strip()
    assert body.startswith('<section id="ledger_table"')
    assert "<html" not in body and "ledger-filters" not in body
    for response in (full, fragment):
        assert "HX-Request" in response.headers["Vary"]
    boosted = client.get(url, headers={**HTMX, "HX-Boosted": "true"})
    restore = client.get(url, headers={**HTMX, "HX-History-Restore-Request": "true"})
    for response in (boosted, restore):
        assert response.get_data(as_text=True).startswith("<!doctype html>")


def test_directory_and_verify_fragments(client: FlaskClient, busy: Organisation) -> None:
    results = get(client, "/?q=Busy", **HTMX).strip()
    assert results.startswith('<section id="results"') and "Busy Bees" in results
    panel = get(client, f"/orgs/{busy.slug}/verify", **HTMX).strip()
    assert panel.startswith('<div id="verification"')
    assert "Chain valid: 120 entries" in panel


def test_csv_download_has_accounting_columns_and_filters(
    client: FlaskClient, busy: Organisation
) -> None:
    response = client.get(f"/orgs/{busy.slug}/ledger.csv?type=expense")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["date", "sequence", "type", "category", "fund", "payee_or_donor",
                       "description", "amount", "currency", "running_balance", "entry_hash"]
    assert [row[1] for row in rows[1:]] == [str(n) for n in range(10, 121, 10)]
    first = rows[1]
    assert (first[2], first[3], first[4], first[5], first[7], first[8]) == (
        "expense", "rent", "General Fund", "Landlord 10", "-10.00", "EUR")
    assert first[9] == str(sum(range(1, 10)) - 10) + ".00"
    assert first[10].startswith("sha256:")


def test_csv_cells_cannot_become_formulas(
    client: FlaskClient, create_org: Callable[..., Organisation]
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "expense", -100, "EUR",
                        {"payee": "=HYPERLINK(\"http://evil\")", "description": "@SUM(A1)"})
    db.session.commit()
    rows = list(csv.reader(io.StringIO(get(client, f"/orgs/{org.slug}/ledger.csv"))))
    assert rows[1][5] == "'=HYPERLINK(\"http://evil\")"
    assert rows[1][6] == "'@SUM(A1)"


def test_api_cursor_pagination_follows_next(client: FlaskClient, busy: Organisation) -> None:
    seen: list[int] = []
    url: str | None = f"/api/v1/public/organisations/{busy.slug}/ledger?limit=45"
    while url:
        body = json.loads(get(client, url))
        seen += [row["sequence"] for row in body["data"]]
        url = body["next"]
    assert seen == list(range(120, 0, -1))


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=x", "page=0"])
def test_api_bounds(client: FlaskClient, busy: Organisation, query: str) -> None:
    base = (f"/api/v1/public/organisations/{busy.slug}/ledger"
            if "limit" in query else "/api/v1/public/organisations")
    response = client.get(f"{base}?{query}")
    assert response.status_code == 400
    assert response.json and "error" in response.json


def test_pages_below_the_head_are_cacheable(client: FlaskClient, busy: Organisation) -> None:
    url = f"/api/v1/public/organisations/{busy.slug}/ledger?before=50&limit=10"
    first = client.get(url)
    assert "max-age=31536000" in first.headers["Cache-Control"]
    etag = first.headers["ETag"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    top = client.get(f"/api/v1/public/organisations/{busy.slug}/ledger")
    assert "max-age=0" in top.headers["Cache-Control"]


def test_scheduled_disclosure_limits_caching(
    client: FlaskClient, busy: Organisation
) -> None:
    ledger.append_entry(busy.id, "expense", -5, "EUR",
                        {"visibility": "delayed_public", "reveal_at": "2099-01-01T00:00:00Z"})
    db.session.commit()
    response = client.get(f"/api/v1/public/organisations/{busy.slug}/ledger?before=50")
    age = int(response.headers["Cache-Control"].split("max-age=")[1])
    assert 0 < age <= 365 * 24 * 3600


def test_json_download_has_an_etag(client: FlaskClient, busy: Organisation) -> None:
    first = client.get(f"/orgs/{busy.slug}/ledger.json")
    first.get_data()  # a streamed body: read it, which also ends the request
    etag = first.headers["ETag"]
    assert client.get(f"/orgs/{busy.slug}/ledger.json",
                      headers={"If-None-Match": etag}).status_code == 304
    ledger.append_entry(busy.id, "donation_received", 1, "EUR")
    db.session.commit()
    changed = client.get(f"/orgs/{busy.slug}/ledger.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert json.loads(changed.get_data())["head"]["sequence"] == 121


@pytest.fixture
def statements(app: object) -> Iterator[list[str]]:
    """The SQL statements sent through the portal's engine while the test runs (the
    scope goes straight to the driver, with each transaction's BEGIN)."""
    sent: list[str] = []

    def record(connection: object, cursor: object, statement: str, *args: object) -> None:
        sent.append(statement)

    engine = db.session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize(("path", "expected"), [
    ("/ledger", 2),  # the organisation with its head and fund names; the page of entries
    ("/ledger?before=71", 2),  # whether there are newer entries comes with the page
    ("/ledger?after=20", 2),
    ("", 2),  # the organisation with its funds; its Stripe account (figures are kept)
])
def test_public_pages_read_what_they_show_once(
    client: FlaskClient, busy: Organisation, statements: list[str], path: str, expected: int
) -> None:
    get(client, f"/orgs/{busy.slug}{path}")  # figures kept per head are computed here
    ledger.append_entry(busy.id, "donation_received", 4_200, "EUR", {"donor_name": "Late"})
    get(client, f"/orgs/{busy.slug}{path}")  # ... and again for the new head
    statements.clear()
    page = get(client, f"/orgs/{busy.slug}{path}")
    assert len(statements) == expected, statements
    if "?" not in path:
        assert ">#121</a>" in page and "Late" in page  # the head read is this request's
