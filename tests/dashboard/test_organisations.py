"""Applying for an organisation, the administrators' decisions, the overview, settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskCliRunner

from portal.extensions import db
from portal.models import Category, Fund, Membership, Organisation, OrganisationEvent, User
from portal.services import ledger, organisations
from tests.dashboard.conftest import Browser, World

Browsers = Callable[[User | None], Browser]

APPLICATION = {"name": "Lakeside Library Friends", "legal_name": "Lakeside Library Friends e.V.",
               "country": "DE", "default_currency": "EUR",
               "description": "Books for the village.", "website": "https://lakeside.example"}


def applied(browser: Browser, **overrides: str) -> Organisation:
    response = browser.post("/dashboard/apply", {**APPLICATION, **overrides})
    assert response.status_code == 303, response.get_data(as_text=True)[-2000:]
    slug = response.headers["Location"].rsplit("/", 1)[1]
    found = db.session.scalar(sa.select(Organisation).where(Organisation.slug == slug))
    assert found is not None
    return found


def test_an_application_is_pending_until_an_administrator_approves_it(
    world: World, browser: Browsers, create_user: Callable[..., User]
) -> None:
    applicant = create_user(mfa=True)
    org = applied(browser(applicant))
    assert (org.status, org.slug, org.country) == ("pending", "lakeside-library-friends", "DE")
    assert db.session.scalar(sa.select(Fund.type).where(Fund.organisation_id == org.id)) == \
        "general"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Category).where(
        Category.organisation_id == org.id)) == 10
    assert db.session.scalar(sa.select(Membership.role).where(
        Membership.organisation_id == org.id)) == "owner"
    overview = browser(applicant).get(f"/dashboard/{org.slug}").get_data(as_text=True)
    assert "waiting for approval" in overview
    public = browser(None)
    assert public.get(f"/orgs/{org.slug}").status_code == 404

    admin = browser(world.platform_admin)
    queue = admin.get("/admin/organisations").get_data(as_text=True)
    assert "Lakeside Library Friends" in queue and applicant.email in queue
    no_reason = admin.post(f"/admin/organisations/{org.id}/approve", {"reason": ""})
    assert no_reason.status_code == 422
    assert db.session.get(Organisation, org.id).status == "pending"  # type: ignore[union-attr]
    approved = admin.post(f"/admin/organisations/{org.id}/approve",
                          {"reason": "Registration number checked"})
    assert approved.status_code == 303
    assert public.get(f"/orgs/{org.slug}").status_code == 200
    assert "Lakeside Library Friends" in public.get("/").get_data(as_text=True)
    logged = db.session.scalar(sa.select(OrganisationEvent).where(
        OrganisationEvent.organisation_id == org.id,
        OrganisationEvent.action == "organisation_approved"))
    assert logged is not None and logged.actor_id == world.platform_admin.id
    assert logged.details["reason"] == "Registration number checked"
    again = admin.post(f"/admin/organisations/{org.id}/approve", {"reason": "Twice"})
    assert again.status_code == 409


def test_suspension_hides_an_organisation_and_reactivation_restores_it(
    world: World, browser: Browsers
) -> None:
    admin, public = browser(world.platform_admin), browser(None)
    assert admin.post(f"/admin/organisations/{world.org.id}/reactivate",
                      {"reason": "x"}).status_code == 409
    assert admin.post(f"/admin/organisations/{world.org.id}/suspend",
                      {"reason": "Complaint under review"}).status_code == 303
    assert public.get(f"/orgs/{world.org.slug}").status_code == 410
    member_view = browser(world.members["owner"]).get(f"/dashboard/{world.org.slug}")
    assert "has been suspended" in member_view.get_data(as_text=True)
    history = admin.get(f"/admin/organisations/{world.org.id}").get_data(as_text=True)
    assert "Complaint under review" in history
    assert admin.post(f"/admin/organisations/{world.org.id}/reactivate",
                      {"reason": "Complaint resolved"}).status_code == 303
    assert public.get(f"/orgs/{world.org.slug}").status_code == 200
    activity = browser(world.members["owner"]).get(f"/dashboard/{world.org.slug}/activity")
    assert "Complaint resolved" in activity.get_data(as_text=True)


def test_an_application_needs_a_confirmed_email_address(
    browser: Browsers, create_user: Callable[..., User]
) -> None:
    person = browser(create_user(confirmed=False))
    page = person.get("/dashboard/apply").get_data(as_text=True)
    assert "Confirm your email address first" in page and 'id="apply_form"' not in page
    refused = person.post("/dashboard/apply", APPLICATION)
    assert refused.status_code == 403
    assert not db.session.scalar(sa.select(Organisation).where(
        Organisation.name == APPLICATION["name"]))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"name": ""}, "This is needed."),
    ({"country": "XX"}, "Not a valid choice"),
    ({"default_currency": "BTC"}, "Not a valid choice"),
    ({"website": "lakeside"}, "Enter the full address, like https://example.org."),
    ({"website": "javascript:alert(1)"}, "Enter the full address"),
])
def test_the_application_form_says_what_is_wrong(
    browser: Browsers, create_user: Callable[..., User], overrides: dict[str, str],
    message: str,
) -> None:
    response = browser(create_user()).post("/dashboard/apply", {**APPLICATION, **overrides},
                                           htmx=True)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message in body and body.lstrip().startswith('<form id="apply_form"')
    assert not db.session.scalar(sa.select(Organisation).where(
        Organisation.name == APPLICATION["name"]))


def test_names_that_are_taken_or_reserved_get_another_address(
    browser: Browsers, create_user: Callable[..., User]
) -> None:
    person = browser(create_user())
    first, second = applied(person), applied(person)
    assert (first.slug, second.slug) == ("lakeside-library-friends",
                                         "lakeside-library-friends-2")
    assert applied(person, name="Apply").slug == "apply-2"


def test_only_platform_administrators_decide(
    world: World, browser: Browsers, create_user: Callable[..., User]
) -> None:
    owner = browser(world.members["owner"])
    response = owner.post(f"/admin/organisations/{world.org.id}/suspend", {"reason": "Mine"})
    assert response.status_code == 403
    assert db.session.get(Organisation, world.org.id).status == "active"  # type: ignore[union-attr]
    no_mfa_admin = browser(create_user(admin=True))
    sent_to_set_up = no_mfa_admin.get("/admin/organisations")
    assert sent_to_set_up.status_code == 302
    assert sent_to_set_up.headers["Location"].startswith("/account/two-factor")
    refused = no_mfa_admin.post(f"/admin/organisations/{world.org.id}/suspend",
                                {"reason": "Testing"})
    assert refused.status_code == 403
    assert "two-factor sign-in" in refused.get_data(as_text=True)
    assert db.session.get(Organisation, world.org.id).status == "active"  # type: ignore[union-attr]


def test_flask_users_make_admin(runner: FlaskCliRunner, create_user: Callable[..., User]) -> None:
    person = create_user(email="ops@example.org")
    result = runner.invoke(args=["users", "make-admin", "OPS@example.org"])
    assert result.exit_code == 0, result.output
    assert "ops@example.org is now a platform administrator." in result.output
    assert "two-factor" in result.output
    db.session.refresh(person)
    assert person.is_platform_admin
    unknown = runner.invoke(args=["users", "make-admin", "nobody@example.org"])
    assert unknown.exit_code == 2
    assert "No account with the email address" in unknown.output


def test_the_overview_shows_money_waiting_items_payments_and_the_chain(
    world: World, browser: Browsers
) -> None:
    finance = browser(world.members["finance"])
    text = finance.get(f"/dashboard/{world.org.slug}").get_data(as_text=True)
    assert "€380.00" in text  # 500.00 donated, 120.00 spent
    assert "Winter appeal" in text and "General Fund" in text
    assert "Corner Hardware" in text  # waiting for approval
    assert "Stripe: not connected yet" in text
    assert "The ledger has not been verified yet." in text
    checked = finance.get(f"/dashboard/{world.org.slug}/verify",
                          headers={"HX-Request": "true"})
    assert checked.status_code == 200
    body = checked.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="verification"')
    assert f"Chain valid: {ledger.get_head(world.org.id).sequence} entries" in body
    assert "Chain valid" in finance.get(f"/dashboard/{world.org.slug}").get_data(as_text=True)


def test_navigation_lists_what_the_role_allows(world: World, browser: Browsers) -> None:
    def nav(role: str) -> str:
        page = browser(world.members[role]).get(f"/dashboard/{world.org.slug}/funds")
        html = page.get_data(as_text=True)
        return html[html.index('<nav class="dashboard-nav"'):].split("</nav>", 1)[0]

    viewer, owner, auditor = nav("viewer"), nav("owner"), nav("auditor")
    assert ">Overview<" in viewer and ">Ledger<" in viewer and ">Funds<" in viewer
    for hidden in (">Expenses<", ">Members<", ">Settings<", ">Transfers<", ">Donations<"):
        assert hidden not in viewer
    for shown in (">Expenses<", ">Members<", ">Settings<", ">Transfers<", ">Activity<"):
        assert shown in owner
    assert ">Donations<" in auditor and ">Transfers<" not in auditor
    assert 'aria-current="page">Funds<' in owner


def test_settings_change_the_profile_and_are_logged(world: World, browser: Browsers) -> None:
    owner = browser(world.members["owner"])
    url = f"/dashboard/{world.org.slug}/settings"
    assert 'value="Riverside Food Bank"' in owner.get(url).get_data(as_text=True)
    bad = owner.post(url, {"name": "", "country": "DE", "default_currency": "EUR"}, htmx=True)
    assert bad.status_code == 422
    assert bad.get_data(as_text=True).lstrip().startswith('<form id="settings_form"')
    saved = owner.post(url, {"name": "Riverside Food Bank", "country": "GB",
                             "default_currency": "GBP", "website": "https://riverside.example",
                             "description": "Food for everyone"})
    assert saved.status_code == 303
    org = db.session.get(Organisation, world.org.id)
    assert org is not None and (org.country, org.default_currency) == ("GB", "GBP")
    event = db.session.scalar(sa.select(OrganisationEvent).where(
        OrganisationEvent.organisation_id == world.org.id,
        OrganisationEvent.action == "settings_changed"))
    assert event is not None
    assert set(event.details["changed"]) == {"country", "default_currency", "website",
                                             "description"}
    assert org.slug == world.org.slug


def test_home_lists_memberships_and_links_to_applying(world: World, browser: Browsers) -> None:
    home = browser(world.members["viewer"]).get("/dashboard/").get_data(as_text=True)
    assert f'href="/dashboard/{world.org.slug}"' in home and "Riverside Food Bank" in home


def test_an_organisation_created_for_tests_uses_the_same_defaults(
    app: Flask, create_org: Callable[..., Any]
) -> None:
    org = create_org()
    assert organisations.find_organisation(org.slug).id == org.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Category).where(
        Category.organisation_id == org.id)) == 10


def test_an_htmx_form_is_sent_to_the_next_page(
    app: Flask, browser: Browsers, create_user: Callable[..., User]
) -> None:
    response = browser(create_user()).post("/dashboard/apply", APPLICATION, htmx=True)
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/dashboard/lakeside-library-friends"


def test_the_activity_log_shows_amounts_for_people(world: World, browser: Browsers) -> None:
    text = browser(world.members["auditor"]).get(
        f"/dashboard/{world.org.slug}/activity").get_data(as_text=True)
    assert "Submitted an expense" in text and "amount: €45.00" in text
    assert "The submitter" in text and "payee: Corner Hardware" in text
