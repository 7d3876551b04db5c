"""Transfers between organisations (both ledgers or neither) and corrections of entries."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.models import OrganisationEvent, User
from portal.services import activity, expenses, ledger
from tests.dashboard.conftest import Browser, World, submit

Browsers = Callable[[User | None], Browser]


def events(organisation_id: str, action: str) -> list[OrganisationEvent]:
    return list(db.session.scalars(sa.select(OrganisationEvent).where(
        OrganisationEvent.organisation_id == organisation_id,
        OrganisationEvent.action == action)))


def transfer(world: World, **overrides: str) -> dict[str, str]:
    data = {"recipient": world.other.slug, "amount": "150.00", "currency": "EUR",
            "fund": world.fund_id, "description": "Share of the winter appeal"}
    data.update(overrides)
    return data


def test_a_transfer_is_written_to_both_ledgers(world: World, browser: Browsers) -> None:
    finance = browser(world.members["finance"])
    page = finance.get(f"/dashboard/{world.org.slug}/transfers").get_data(as_text=True)
    assert f'<option value="{world.other.slug}">Hilltop Shelter</option>' in page
    sent = finance.post(f"/dashboard/{world.org.slug}/transfers", transfer(world))
    assert sent.status_code == 303
    out_entry = ledger.get_entry(world.org.id, sent.headers["Location"].rsplit("/", 1)[1])
    assert (out_entry.type, out_entry.amount) == ("transfer_out", -15_000)
    assert out_entry.metadata["fund_id"] == world.fund_id
    in_entry = ledger.get_entry(world.other.id, out_entry.metadata["counterpart_entry_id"])
    assert (in_entry.type, in_entry.amount) == ("transfer_in", 15_000)
    assert in_entry.metadata["counterpart_entry_id"] == out_entry.entry_id
    assert in_entry.metadata["transfer_ref"] == out_entry.metadata["transfer_ref"]
    assert len(events(world.org.id, "transfer_sent")) == 1
    assert len(events(world.other.id, "transfer_received")) == 1
    public = json.loads(browser(None).get(f"/orgs/{world.other.slug}/ledger.json").get_data())
    assert public["entries"][-1]["entry_id"] == in_entry.entry_id
    after = finance.get(f"/dashboard/{world.org.slug}/transfers").get_data(as_text=True)
    assert "to Hilltop Shelter" in after and "Share of the winter appeal" in after


@pytest.mark.parametrize(("overrides", "message"), [
    ({"recipient": "no-such-organisation"}, "Choose an active organisation on the portal."),
    ({"recipient": "riverside-food-bank"}, "An organisation cannot transfer to itself."),
    ({"amount": "10000.00"}, "The organisation holds less than that in EUR"),
    ({"amount": "5", "currency": "USD"}, "The organisation holds less than that in USD"),
    ({"amount": "-5"}, "Enter an amount above zero."),
    ({"description": ""}, "This is needed."),
    ({"fund": "fund_000000000000000000000000"}, "Not a valid choice"),
])
def test_a_refused_transfer_writes_nothing(
    world: World, browser: Browsers, overrides: dict[str, str], message: str
) -> None:
    heads = (ledger.get_head(world.org.id).sequence, ledger.get_head(world.other.id).sequence)
    response = browser(world.members["finance"]).post(
        f"/dashboard/{world.org.slug}/transfers", transfer(world, **overrides), htmx=True)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body and body.lstrip().startswith('<form id="transfer_form"')
    assert (ledger.get_head(world.org.id).sequence,
            ledger.get_head(world.other.id).sequence) == heads


def test_a_pending_or_suspended_organisation_receives_nothing(
    world: World, browser: Browsers, create_org: Callable[..., object]
) -> None:
    for status in ("pending", "suspended"):
        target = create_org(name=f"Not active {status}", status=status)
        response = browser(world.members["finance"]).post(
            f"/dashboard/{world.org.slug}/transfers",
            transfer(world, recipient=target.slug))  # type: ignore[attr-defined]
        assert response.status_code == 422
        assert "Choose an active organisation" in response.get_data(as_text=True)


def test_a_transfer_that_fails_halfway_leaves_both_ledgers_untouched(
    world: World, browser: Browsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = (ledger.get_head(world.org.id).sequence, ledger.get_head(world.other.id).sequence)
    record = activity.record

    def fail_on_the_receiving_side(organisation_id: str, *args: object, **kw: object) -> None:
        if args[1] == "transfer_received":
            raise RuntimeError("the log is unavailable")
        record(organisation_id, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(activity, "record", fail_on_the_receiving_side)
    response = browser(world.members["finance"]).post(
        f"/dashboard/{world.org.slug}/transfers", transfer(world))
    assert response.status_code == 500
    assert (ledger.get_head(world.org.id).sequence,
            ledger.get_head(world.other.id).sequence) == heads
    assert events(world.org.id, "transfer_sent") == []
    assert ledger.verify_chain(world.org.id).valid and ledger.verify_chain(world.other.id).valid


# --------------------------------------------------------------------------- corrections


def test_an_entry_is_reversed_with_a_reason(world: World, browser: Browsers) -> None:
    finance = browser(world.members["finance"])
    url = f"/dashboard/{world.org.slug}/entries/{world.entry_id}"
    assert "Reverse entry #" in finance.get(url).get_data(as_text=True)
    blank = finance.post(f"{url}/reverse", {"reason": " "}, htmx=True)
    assert blank.status_code == 422
    assert blank.get_data(as_text=True).lstrip().startswith('<section id="corrections"')
    done = finance.post(f"{url}/reverse", {"reason": "Paid twice by mistake"})
    assert done.status_code == 303
    reversal = ledger.get_entry(world.org.id, done.headers["Location"].rsplit("/", 1)[1])
    assert (reversal.type, reversal.amount) == ("adjustment", 12_000)
    assert reversal.metadata["reverses"] == world.entry_id
    assert reversal.metadata["reason"] == "Paid twice by mistake"
    original = finance.get(url).get_data(as_text=True)
    assert "it has been reversed already" in original and "Reversed by" in original
    again = finance.post(f"{url}/reverse", {"reason": "Again"})
    assert again.status_code == 409
    assert "already been reversed" in again.get_data(as_text=True)
    logged = events(world.org.id, "entry_reversed")
    assert [e.subject for e in logged] == [world.entry_id]


def test_transfers_and_reversals_cannot_be_reversed(world: World, browser: Browsers) -> None:
    donation = f"/dashboard/{world.org.slug}/entries/{world.donation_id}"
    finance = browser(world.members["finance"])
    done = finance.post(f"{donation}/reverse", {"reason": "Chargeback"})
    reversal = done.headers["Location"].rsplit("/", 1)[1]
    refused = finance.post(f"/dashboard/{world.org.slug}/entries/{reversal}/reverse",
                           {"reason": "Undo the undo"})
    assert refused.status_code == 409
    assert "cannot be reversed" in refused.get_data(as_text=True)


def test_an_expense_is_moved_to_another_category(world: World, browser: Browsers) -> None:
    finance = browser(world.members["finance"])
    url = f"/dashboard/{world.org.slug}/entries/{world.entry_id}"
    same = finance.post(f"{url}/recategorize", {"category": "rent"})
    assert same.status_code == 422
    assert "in this category already" in same.get_data(as_text=True)
    unknown = finance.post(f"{url}/recategorize", {"category": "yachts"})
    assert unknown.status_code == 422
    moved = finance.post(f"{url}/recategorize", {"category": "operations",
                                                 "note": "Rent is booked under operations"})
    assert moved.status_code == 303
    page = finance.get(url).get_data(as_text=True)
    assert "now in Operations" in page and "Recategorized by" in page
    assert events(world.org.id, "expense_recategorized")[0].details["new_category"] == \
        "operations"
    donation = finance.post(f"/dashboard/{world.org.slug}/entries/{world.donation_id}"
                            "/recategorize", {"category": "operations"})
    assert donation.status_code == 422
    assert "only expenses can be recategorized" in donation.get_data(as_text=True)


def test_viewers_see_hidden_entries_as_the_public_does(world: World, browser: Browsers) -> None:
    hidden = expenses.approve_expense(world.members["finance"].id, world.org.id, submit(
        world.submitter, world.org, world.fund_id, payee="Vermilionlawyer",
        category="legal", visibility="internal_only"))
    viewer = browser(world.members["viewer"])
    ledger_page = viewer.get(f"/dashboard/{world.org.slug}/entries").get_data(as_text=True)
    assert "Vermilionlawyer" not in ledger_page and "Internal entry" in ledger_page
    entry_page = viewer.get(f"/dashboard/{world.org.slug}/entries/{hidden.entry_id}")
    assert entry_page.status_code == 200
    assert "Vermilionlawyer" not in entry_page.get_data(as_text=True)
    auditor = browser(world.members["auditor"])
    full = auditor.get(f"/dashboard/{world.org.slug}/entries").get_data(as_text=True)
    assert "Vermilionlawyer" in full and "Internal" in full
    assert "Vermilionlawyer" in auditor.get(
        f"/dashboard/{world.org.slug}/entries/{hidden.entry_id}").get_data(as_text=True)


def test_the_recipient_may_be_named_instead_of_its_address(
    world: World, browser: Browsers
) -> None:
    sent = browser(world.members["finance"]).post(
        f"/dashboard/{world.org.slug}/transfers",
        transfer(world, recipient="  hilltop SHELTER ", amount="1"))
    assert sent.status_code == 303
    assert ledger.get_head(world.other.id).sequence == 1
