"""Funds (one General Fund; archived, never deleted) and the organisation's categories."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from portal.extensions import db
from portal.models import Category, Fund, OrganisationEvent, User
from portal.services import categories, ledger
from tests.dashboard.conftest import Browser, World

Browsers = Callable[[User | None], Browser]


def fund(name: str) -> Fund:
    found = db.session.scalar(sa.select(Fund).where(Fund.name == name))
    assert found is not None
    return found


def test_a_fund_is_created_with_a_goal_and_edited(world: World, browser: Browsers) -> None:
    owner = browser(world.members["owner"])
    url = f"/dashboard/{world.org.slug}/funds/new"
    created = owner.post(url, {"name": "School meals", "type": "restricted",
                               "description": "Lunches for 40 pupils",
                               "goal_amount": "2,500.50", "goal_currency": "EUR"})
    assert created.status_code == 303
    meals = fund("School meals")
    assert (meals.type, meals.goal_amount, meals.goal_currency) == ("restricted", 250_050, "EUR")
    page = owner.get(created.headers["Location"]).get_data(as_text=True)
    assert "School meals" in page and "goal of €2,500.50" in page
    edit = f"/dashboard/{world.org.slug}/funds/{meals.id}/edit"
    assert 'value="2500.50"' in owner.get(edit).get_data(as_text=True)
    assert owner.post(edit, {"name": "School lunches", "type": "project",
                             "goal_amount": ""}).status_code == 303
    db.session.refresh(meals)
    assert (meals.name, meals.type, meals.goal_amount) == ("School lunches", "project", None)
    logged = list(db.session.scalars(sa.select(OrganisationEvent.action).where(
        OrganisationEvent.subject == meals.id).order_by(OrganisationEvent.id)))
    assert logged == ["fund_created", "fund_updated"]


def test_fund_forms_refuse_bad_input_with_422(world: World, browser: Browsers) -> None:
    owner = browser(world.members["owner"])
    url = f"/dashboard/{world.org.slug}/funds/new"
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Fund))
    for data, message in [
        ({"name": "", "type": "project"}, "This is needed."),
        ({"name": "Winter appeal", "type": "project"}, "There is a fund named"),
        ({"name": "Second general", "type": "general"}, "Not a valid choice"),
        ({"name": "Roof", "type": "project", "goal_amount": "1.234", "goal_currency": "EUR"},
         "at most 2 decimals"),
        ({"name": "Roof", "type": "project", "goal_amount": "100"}, "Choose the currency first"),
    ]:
        response = owner.post(url, data, htmx=True)
        assert response.status_code == 422, data
        body = response.get_data(as_text=True)
        assert message in body, data
        assert body.lstrip().startswith('<form id="fund_form"')
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Fund)) == count


def test_there_is_exactly_one_general_fund(world: World, browser: Browsers) -> None:
    owner = browser(world.members["owner"])
    general = db.session.scalar(sa.select(Fund).where(
        Fund.organisation_id == world.org.id, Fund.type == "general"))
    assert general is not None
    refused = owner.post(f"/dashboard/{world.org.slug}/funds/{general.id}/archive")
    assert refused.status_code == 409
    assert "The General Fund cannot be archived" in refused.get_data(as_text=True)
    # Its kind cannot change, and no other fund can become general.
    edit = owner.post(f"/dashboard/{world.org.slug}/funds/{general.id}/edit",
                      {"name": "Unrestricted", "type": "project"})
    assert edit.status_code == 422
    winter = owner.post(f"/dashboard/{world.org.slug}/funds/{world.fund_id}/edit",
                        {"name": "Winter appeal", "type": "general"})
    assert winter.status_code == 422
    db.session.refresh(general)
    assert general.type == "general" and general.archived_at is None


def test_archiving_keeps_the_fund_and_its_entries(world: World, browser: Browsers) -> None:
    owner = browser(world.members["owner"])
    archive = f"/dashboard/{world.org.slug}/funds/{world.fund_id}/archive"
    # An expense charged to the fund still waits for a decision.
    waiting = owner.post(archive)
    assert waiting.status_code == 409
    assert "waiting for approval" in waiting.get_data(as_text=True)
    from portal.services import expenses

    expenses.reject_expense(world.members["finance"].id, world.org.id, world.expense_id,
                            "Duplicate")
    entries_before = ledger.get_head(world.org.id).sequence
    assert owner.post(archive).status_code == 303
    archived = db.session.get(Fund, world.fund_id)
    assert archived is not None and archived.archived_at is not None
    assert ledger.get_head(world.org.id).sequence == entries_before
    page = owner.get(f"/dashboard/{world.org.slug}/funds").get_data(as_text=True)
    assert "Winter appeal" in page and "Archived" in page and "Restore" in page
    assert owner.post(archive).status_code == 409
    assert owner.post(f"/dashboard/{world.org.slug}/funds/{world.fund_id}/restore"
                      ).status_code == 303
    assert db.session.get(Fund, world.fund_id).archived_at is None  # type: ignore[union-attr]


def test_viewers_see_fund_balances_of_public_entries_only(
    world: World, browser: Browsers
) -> None:
    ledger.append_entry(world.org.id, "donation_received", 77_700, "EUR",
                        {"fund_id": world.fund_id, "visibility": "internal_only",
                         "donor_name": "Quiet donor"})
    db.session.commit()
    viewer = browser(world.members["viewer"]).get(f"/dashboard/{world.org.slug}/funds")
    auditor = browser(world.members["auditor"]).get(f"/dashboard/{world.org.slug}/funds")
    # The fund's public balance is minus the approved rent (120.00); in full, plus 777.00.
    assert "-€120.00" in viewer.get_data(as_text=True)
    assert "€657.00" not in viewer.get_data(as_text=True)
    assert "€657.00" in auditor.get_data(as_text=True)


def test_new_organisations_get_the_default_categories(world: World) -> None:
    slugs = {c.slug for c in categories.list_categories(world.org.id)}
    assert slugs == {slug for slug, _ in categories.DEFAULT_CATEGORIES}


def test_categories_are_added_relabelled_archived_and_restored(
    world: World, browser: Browsers
) -> None:
    owner = browser(world.members["owner"])
    base = f"/dashboard/{world.org.slug}/categories"
    assert owner.post(base, {"label": "Office & supplies"}).status_code == 303
    added = db.session.get(Category, (world.org.id, "office-supplies"))
    assert added is not None and added.label == "Office & supplies"
    duplicate = owner.post(base, {"label": "office supplies"}, htmx=True)
    assert duplicate.status_code == 422
    assert "exists already" in duplicate.get_data(as_text=True)
    assert owner.post(base, {"label": "  "}).status_code == 422

    assert owner.post(f"{base}/office-supplies/label",
                      {"label": "Office supplies"}).status_code == 303
    db.session.refresh(added)
    assert added.label == "Office supplies"  # the slug the ledger records stays
    blank = owner.post(f"{base}/office-supplies/label", {"label": ""})
    assert blank.status_code == 422
    assert "This is needed." in blank.get_data(as_text=True)

    assert owner.post(f"{base}/office-supplies/archive").status_code == 303
    assert "office-supplies" not in {c.slug for c in
                                     categories.active_categories(world.org.id)}
    assert owner.post(f"{base}/office-supplies/archive").status_code == 409
    assert owner.post(f"{base}/office-supplies/restore").status_code == 303
    assert owner.post(f"{base}/no-such-thing/archive").status_code == 404
    actions = list(db.session.scalars(sa.select(OrganisationEvent.action).where(
        OrganisationEvent.subject == "office-supplies").order_by(OrganisationEvent.id)))
    assert actions == ["category_added", "category_relabelled", "category_archived",
                       "category_restored"]
