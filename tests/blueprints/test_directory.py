"""The directory: search, country filter, sorting, cards, empty states."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import Organisation
from portal.services import ledger


@pytest.fixture
def three(app: object, create_org: Callable[..., Organisation]) -> list[Organisation]:
    small = create_org(name="Aardvark Aid", country="GB", default_currency="GBP")
    large = create_org(name="Zebra Zone", country="KE", default_currency="EUR",
                       description="Protecting zebras on the plains")
    middle = create_org(name="Mongoose Mission", country="GB", default_currency="GBP")
    ledger.append_entry(small.id, "donation_received", 1_000, "GBP")
    ledger.append_entry(large.id, "donation_received", 900_000, "EUR")
    ledger.append_entry(large.id, "expense", -1_000, "EUR", {"category": "rent"})
    ledger.append_entry(middle.id, "donation_received", 50_000, "GBP")
    db.session.commit()
    return [small, large, middle]


def names(html: str, among: list[Organisation]) -> list[str]:
    order = sorted((html.find(f">{org.name}</a>"), org.name) for org in among
                   if f">{org.name}</a>" in html)
    return [name for _, name in order]


def test_search_matches_names_and_descriptions(
    client: FlaskClient, three: list[Organisation]
) -> None:
    assert names(client.get("/?q=zebras").get_data(as_text=True), three) == ["Zebra Zone"]
    assert names(client.get("/?q=MONGOOSE").get_data(as_text=True), three) == [
        "Mongoose Mission"]


def test_country_filter(client: FlaskClient, three: list[Organisation]) -> None:
    html = client.get("/?country=GB&sort=name").get_data(as_text=True)
    assert names(html, three) == ["Aardvark Aid", "Mongoose Mission"]


def test_sorting(client: FlaskClient, three: list[Organisation]) -> None:
    by_name = names(client.get("/?sort=name").get_data(as_text=True), three)
    assert by_name == ["Aardvark Aid", "Mongoose Mission", "Zebra Zone"]
    by_raised = names(client.get("/?sort=raised").get_data(as_text=True), three)
    assert by_raised == ["Zebra Zone", "Mongoose Mission", "Aardvark Aid"]

def test_organisations_without_activity_sort_last_by_recency(
    client: FlaskClient, three: list[Organisation], create_org: Callable[..., Organisation]
) -> None:
    quiet = create_org(name="Aaa Quiet Quokka")
    by_recent = names(client.get("/?sort=recent").get_data(as_text=True), [*three, quiet])
    assert by_recent[-1] == "Aaa Quiet Quokka"
    assert len(by_recent) == 4


def test_cards_show_money_entries_and_verification(
    client: FlaskClient, three: list[Organisation]
) -> None:
    html = client.get("/?q=Zebra").get_data(as_text=True)
    assert "€9,000.00" in html and "€10.00" in html
    assert "2 entries" in html
    assert "Chain not checked yet" in html
    client.get(f"/orgs/{three[1].slug}/verify")
    html = client.get("/?q=Zebra").get_data(as_text=True)
    assert "Chain valid" in html


def test_empty_state(client: FlaskClient, three: list[Organisation]) -> None:
    html = client.get("/?q=nothing-like-this").get_data(as_text=True)
    assert "No organisations match" in html


@pytest.mark.parametrize("query", ["sort=bogus", "country=Germany", "page=0", "page=x"])
def test_bad_directory_queries(client: FlaskClient, three: list[Organisation],
                               query: str) -> None:
    assert client.get(f"/?{query}").status_code == 400


def test_money_follows_the_visitors_language(
    client: FlaskClient, three: list[Organisation]
) -> None:
    html = client.get("/?q=Zebra", headers={"Accept-Language": "de-DE,de;q=0.9"}).get_data(
        as_text=True)
    assert re.search(r"9\.000,00\s€", html)
