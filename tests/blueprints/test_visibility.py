"""The visibility rules hold in every output: pages, fragments, CSV, JSON, API, search."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from flask.testing import FlaskClient

from tests.blueprints.conftest import MixedLedger, assert_no_secrets

HTMX = {"HX-Request": "true"}


def text_of(client: FlaskClient, url: str, **headers: str) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def public_urls(m: MixedLedger) -> list[str]:
    slug = m.org.slug
    return [
        "/", f"/orgs/{slug}", f"/orgs/{slug}/ledger", f"/orgs/{slug}/ledger.csv",
        f"/orgs/{slug}/ledger.json", f"/orgs/{slug}/verify",
        f"/orgs/{slug}/entries/{m.gift.entry_id}", f"/orgs/{slug}/entries/{m.rent.entry_id}",
        f"/orgs/{slug}/sequence/{m.salary.sequence}",
        f"/orgs/{slug}/sequence/{m.legal.sequence}",
        f"/orgs/{slug}/sequence/{m.scheduled.sequence}",
        f"/orgs/{slug}/entries/{m.salary.entry_id}",
        "/api/v1/public/organisations", f"/api/v1/public/organisations/{slug}",
        f"/api/v1/public/organisations/{slug}/ledger",
        f"/api/v1/public/organisations/{slug}/ledger/export",
    ]


def test_no_output_shows_a_hidden_detail(client: FlaskClient, mixed: MixedLedger) -> None:
    for url in public_urls(mixed):
        assert_no_secrets(text_of(client, url))
        assert_no_secrets(text_of(client, url, **HTMX))


@pytest.mark.parametrize("query", [
    "q=Zanzibarpayee", "q=zanzibar", "q=Quixoticmatter", "q=Vermilionlawyer",
    "min=76543&max=76544", "min=54321&max=54322", "min=32109&max=32110",
    "category=legal", "category=security", "type=expense&category=legal",
    "from=2000-01-01&q=Vermilionlawyer",
])
def test_filters_never_match_on_hidden_details(
    client: FlaskClient, mixed: MixedLedger, query: str
) -> None:
    slug = mixed.org.slug
    page = text_of(client, f"/orgs/{slug}/ledger?{query}")
    assert "No entries match these filters." in page
    rows = list(csv.reader(io.StringIO(text_of(client, f"/orgs/{slug}/ledger.csv?{query}"))))
    assert rows[1:] == []
    api = json.loads(text_of(client, f"/api/v1/public/organisations/{slug}/ledger?{query}"))
    assert api["data"] == []


def test_fund_filter_only_matches_disclosed_entries(
    client: FlaskClient, mixed: MixedLedger
) -> None:
    page = text_of(client, f"/orgs/{mixed.org.slug}/ledger?fund={mixed.secret_fund}")
    assert "No entries match these filters." in page


def test_category_and_type_filters_include_aggregated_rows(
    client: FlaskClient, mixed: MixedLedger
) -> None:
    api = json.loads(text_of(
        client, f"/api/v1/public/organisations/{mixed.org.slug}/ledger?category=salaries"))
    assert [row["sequence"] for row in api["data"]] == [
        mixed.salary_two.sequence, mixed.salary.sequence]
    assert {row["disclosure"] for row in api["data"]} == {"aggregated"}
    assert all("amount" not in row and "metadata" not in row for row in api["data"])


def test_ledger_rows_show_each_level_as_specified(client: FlaskClient, mixed: MixedLedger) -> None:
    api = json.loads(text_of(client, f"/api/v1/public/organisations/{mixed.org.slug}/ledger"))
    rows = {row["sequence"]: row for row in api["data"]}
    full = rows[mixed.rent.sequence]
    assert (full["disclosure"], full["amount"], full["metadata"]["payee"]) == (
        "full", -120_000, "Dockside Lettings")
    aggregated = rows[mixed.salary.sequence]
    assert set(aggregated) == {"sequence", "disclosure", "visibility", "prev_entry_hash",
                               "entry_hash", "timestamp", "type", "category"}
    scheduled = rows[mixed.scheduled.sequence]
    assert set(scheduled) == {"sequence", "disclosure", "visibility", "prev_entry_hash",
                              "entry_hash", "reveal_at"}
    internal = rows[mixed.legal.sequence]
    assert set(internal) == {"sequence", "disclosure", "visibility", "prev_entry_hash",
                             "entry_hash"}


def test_pages_say_what_is_hidden(client: FlaskClient, mixed: MixedLedger) -> None:
    page = text_of(client, f"/orgs/{mixed.org.slug}/ledger")
    assert "Amount undisclosed" in page
    assert "Scheduled for disclosure" in page
    assert "Internal entry" in page
    org_page = text_of(client, f"/orgs/{mixed.org.slug}")
    # Two salaries, the legal matter and the scheduled entry; net in the usual format.
    assert "Undisclosed entries (EUR): 4, net amount -€176,430.96" in org_page


def test_running_balances_leave_out_hidden_amounts(
    client: FlaskClient, mixed: MixedLedger
) -> None:
    api = json.loads(text_of(client, f"/api/v1/public/organisations/{mixed.org.slug}/ledger"))
    balances = {row["sequence"]: row.get("running_balance") for row in api["data"]}
    assert balances[mixed.gift.sequence] == 50_000_000
    assert balances[mixed.rent.sequence] == 50_000_000 - 120_000


def test_totals_include_everything_so_the_books_add_up(
    client: FlaskClient, mixed: MixedLedger
) -> None:
    body = json.loads(text_of(client, f"/api/v1/public/organisations/{mixed.org.slug}"))
    eur = next(f for f in body["figures"] if f["currency"] == "EUR")
    hidden = sum((7_654_321, 1_345_679, 5_432_109, 3_210_987))
    assert eur["spending"] == 120_000 + hidden
    assert eur["balance"] == 50_000_000 - 120_000 - hidden
    assert eur["income"] - eur["spending"] == eur["balance"]
    categories = {c["category"]: c["amount"] for c in eur["spending_by_category"]}
    assert categories == {"salaries": 9_000_000, "undisclosed": 5_432_109 + 3_210_987,
                          "rent": 120_000}
    assert sum(categories.values()) == eur["spending"]
    assert eur["undisclosed"] == {"count": 4, "net_amount": -hidden}
    fund = next(f for f in body["funds"] if f["id"] == mixed.secret_fund)
    assert (fund["raised"], fund["spent"]) == (0, 0)


def test_a_revealed_entry_is_public_without_anyone_acting(
    client: FlaskClient, mixed: MixedLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal.services import ledger

    monkeypatch.setattr(ledger, "utc_timestamp", lambda moment=None: "2099-01-01T00:00:01Z")
    page = text_of(client, f"/orgs/{mixed.org.slug}/ledger?q=Locks")
    assert "Zanzibarpayee Locks" in page
    assert "-€32,109.87" in page


def test_json_export_keeps_the_chain_checkable(client: FlaskClient, mixed: MixedLedger) -> None:
    document = json.loads(text_of(client, f"/orgs/{mixed.org.slug}/ledger.json"))
    rows = document["entries"]
    assert [row.get("redacted", False) for row in rows] == [
        False, False, True, True, True, True]
    for previous, row in itertools.pairwise(rows):
        assert row["prev_entry_hash"] == previous["entry_hash"]
