"""Who may reach every dashboard and admin route: built from the app's own URL map, so a
new route is in the matrix the moment it exists."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from portal.extensions import db
from portal.models import Category, Expense, Fund, Invitation, LedgerEntry, Membership, User
from portal.services import ledger, permissions
from tests.dashboard.conftest import Browser, World, submit, undone

#: Routes any signed-in person may use, and routes no one in the matrix may use (an
#: invitation link works only for the address it was sent to).
FOR_EVERYONE_SIGNED_IN = {"dashboard.home", "dashboard.apply"}
FOR_THE_INVITED_ONLY = {"dashboard.accept_invitation"}
#: What each organisation route requires: the specification the routes are held to.
#: A route missing here fails the matrix until someone decides who may use it.
REQUIRED_ACTION = {
    "dashboard.overview": "view",
    "dashboard.verify": "view",
    "dashboard.entries": "view",
    "dashboard.entry": "view",
    "dashboard.reverse_entry": "record_correction",
    "dashboard.recategorize_entry": "record_correction",
    "dashboard.funds_list": "view",
    "dashboard.new_fund": "manage_funds",
    "dashboard.edit_fund": "manage_funds",
    "dashboard.archive_fund": "manage_funds",
    "dashboard.restore_fund": "manage_funds",
    "dashboard.categories_list": "manage_settings",
    "dashboard.relabel_category": "manage_settings",
    "dashboard.archive_category": "manage_settings",
    "dashboard.restore_category": "manage_settings",
    "dashboard.expenses_list": "view_internal",
    "dashboard.new_expense": "submit_expense",
    "dashboard.expense": "view_internal",
    "dashboard.expense_receipt": "view_internal",
    "dashboard.approve_expense": "approve_expense",
    "dashboard.reject_expense": "approve_expense",
    "dashboard.withdraw_expense": "submit_expense",
    "dashboard.transfers_page": "make_transfer",
    "dashboard.donations": "view_internal",
    "dashboard.donations_csv": "export",
    "dashboard.members_list": "manage_members",
    "dashboard.invite_member": "manage_members",
    "dashboard.change_role": "manage_members",
    "dashboard.remove_member": "manage_members",
    "dashboard.revoke_invitation": "manage_members",
    "dashboard.leave": "view",
    "dashboard.settings": "manage_settings",
    "dashboard.activity_log": "view_internal",
    "dashboard.reports_page": "download_reports",
    "dashboard.report_job": "download_reports",
    "dashboard.report_download": "download_reports",
    "dashboard.export": "export",
    "dashboard.connect_stripe": "connect_payments",
    "dashboard.stripe_refresh": "connect_payments",
    "dashboard.stripe_return": "connect_payments",
}
PEOPLE = ("anonymous", "outsider", "viewer", "finance", "admin", "owner", "auditor",
          "platform_admin")


def guarded_rules(app: Flask) -> Iterator[tuple[Rule, str]]:
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/dashboard", "/admin")):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield rule, method


def url_for_rule(rule: Rule, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"{rule.rule}: give the matrix a value for <{name}>"
        return values[name]

    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", value, rule.rule)


def report_job(organisation_id: str) -> str:
    """A queued report of the organisation (its page exists; its download is not ready)."""
    from amply_verify.report import Period
    from portal.services import reports

    return reports.start_background(organisation_id, Period(), "auditor", "usr_matrix").id


def url_values(world: World) -> dict[str, str]:
    return {"org": world.org.slug, "entry_id": world.entry_id, "expense_id": world.expense_id,
            "fund_id": world.fund_id, "category": "rent",
            "user_id": world.members["viewer"].id, "invitation_id": world.invitation_id,
            "token": world.invitation_token, "organisation_id": world.org.id,
            "job_id": report_job(world.org.id), "audience": "auditor"}


def expected_access(app: Flask, endpoint: str, person: str) -> bool:
    """Whether ``person`` may use the route (the matrix's single source of truth)."""
    if person == "anonymous":
        return False
    if endpoint.startswith("admin."):
        return person == "platform_admin"
    if endpoint in FOR_EVERYONE_SIGNED_IN:
        return True
    if endpoint in FOR_THE_INVITED_ONLY:
        return False
    assert endpoint in REQUIRED_ACTION, f"decide who may use {endpoint}: add it to the matrix"
    action = REQUIRED_ACTION[endpoint]
    guard = getattr(app.view_functions[endpoint], "required_action", None)
    assert guard == action, f"{endpoint} is guarded by for_members({guard!r}), not {action!r}"
    if person in ("outsider", "platform_admin"):
        return False
    return permissions.allowed(person, action)


def refused_by_access(response: TestResponse, person: str, endpoint: str) -> bool:
    """Did the guard (not the use case behind it) turn the request away?"""
    body = response.get_data().decode(errors="replace")
    if person == "anonymous":
        return response.status_code == 302 and "/account/login" in response.headers["Location"]
    if response.status_code == 404:
        return True
    if response.status_code != 403:
        return False
    if endpoint.startswith("admin."):
        return "Only the portal&#39;s administrators" in body or \
            "Only the portal's administrators" in body
    if endpoint in FOR_THE_INVITED_ONLY:
        return "This invitation was sent to" in body
    return f"As {person}, you may not" in body


def request(browser: Browser, method: str, url: str) -> TestResponse:
    response = browser.get(url) if method == "GET" else browser.post(url)
    response.get_data()
    response.close()  # downloads hold their file open until then
    return response


@pytest.fixture
def everyone(world: World, browser: Callable[[User | None], Browser]) -> dict[str, Browser]:
    people: dict[str, User | None] = {"anonymous": None, "outsider": world.outsider,
                                      "platform_admin": world.platform_admin,
                                      **world.members}
    made = {name: browser(user) for name, user in people.items()}
    for made_browser in made.values():
        if made_browser.user is not None:
            assert made_browser.token  # fetched before any request is undone
    return made


@pytest.mark.parametrize("person", PEOPLE)
def test_every_route_admits_exactly_the_roles_allowed(
    app: Flask, world: World, everyone: dict[str, Browser], person: str
) -> None:
    values = url_values(world)
    wrong: list[str] = []
    for rule, method in guarded_rules(app):
        url = url_for_rule(rule, values)
        with undone():
            response = request(everyone[person], method, url)
        assert response.status_code < 500, f"{method} {url} as {person}: server error"
        allowed = expected_access(app, rule.endpoint, person)
        refused = refused_by_access(response, person, rule.endpoint)
        if allowed == refused:
            wrong.append(f"{method} {url}: {'refused' if refused else 'admitted'} "
                         f"({response.status_code})")
        elif not allowed and person not in ("anonymous",) and rule.endpoint not in \
                FOR_THE_INVITED_ONLY and not rule.endpoint.startswith("admin."):
            expected = 404 if person in ("outsider", "platform_admin") else 403
            if response.status_code != expected:
                wrong.append(f"{method} {url}: {response.status_code}, expected {expected}")
    assert not wrong, f"as {person}:\n" + "\n".join(wrong)


def test_the_matrix_covers_every_guarded_route(app: Flask) -> None:
    endpoints = {rule.endpoint for rule, _ in guarded_rules(app)}
    assert {"dashboard.overview", "dashboard.approve_expense", "admin.approve",
            "dashboard.donations_csv", "dashboard.invite_member"} <= endpoints
    organisation_routes = {e for e in endpoints if e.startswith("dashboard.")} - (
        FOR_EVERYONE_SIGNED_IN | FOR_THE_INVITED_ONLY)
    assert organisation_routes == set(REQUIRED_ACTION)
    for endpoint, action in REQUIRED_ACTION.items():
        assert action in permissions.ACTIONS
        assert getattr(app.view_functions[endpoint], "required_action", None) == action


def test_only_the_invited_address_opens_an_invitation(
    world: World, browser: Callable[[User | None], Browser],
    create_user: Callable[..., User],
) -> None:
    invited = browser(create_user(email="stranger@example.org"))
    url = f"/dashboard/invitations/{world.invitation_token}"
    page = invited.get(url)
    assert page.status_code == 200
    assert "invites you to join Riverside Food Bank as" in page.get_data(as_text=True)


def test_actions_that_move_money_need_two_factor_sign_in(
    world: World, browser: Callable[[User | None], Browser],
    create_user: Callable[..., User], add_member: Callable[..., Any],
) -> None:
    no_mfa = create_user()
    add_member(world.org, no_mfa, "finance")
    person = browser(no_mfa)
    refused = person.post(f"/dashboard/{world.org.slug}/expenses/{world.expense_id}/approve")
    assert refused.status_code == 403
    assert "Turn on two-factor sign-in" in refused.get_data(as_text=True)
    assert db.session.get(Expense, world.expense_id).status == "submitted"  # type: ignore[union-attr]
    # A page that needs it sends the member to set it up, and then back.
    form_page = person.get(f"/dashboard/{world.org.slug}/expenses/new")
    assert form_page.status_code == 302
    assert form_page.headers["Location"].startswith("/account/two-factor?next=")
    # Reading needs no second factor.
    assert person.get(f"/dashboard/{world.org.slug}/entries").status_code == 200


# --------------------------------------------------------------------------- tenants


def _snapshot(organisation_id: str) -> dict[str, Any]:
    """Everything a dashboard route could change about an organisation."""
    def rows(query: Any) -> list[Any]:
        return sorted(tuple(row) for row in db.session.execute(query))

    return {
        "entries": ledger.get_head(organisation_id).sequence,
        "funds": rows(sa.select(Fund.id, Fund.name, Fund.archived_at, Fund.goal_amount)
                      .where(Fund.organisation_id == organisation_id)),
        "categories": rows(sa.select(Category.slug, Category.label, Category.archived_at)
                           .where(Category.organisation_id == organisation_id)),
        "expenses": rows(sa.select(Expense.id, Expense.status)
                         .where(Expense.organisation_id == organisation_id)),
        "members": rows(sa.select(Membership.user_id, Membership.role)
                        .where(Membership.organisation_id == organisation_id)),
        "invitations": rows(sa.select(Invitation.id, Invitation.revoked_at)
                            .where(Invitation.organisation_id == organisation_id)),
    }


#: Plausible, valid input for every field of every dashboard form, so that a use case
#: would go ahead if the route let it.
FULL_FORM = {
    "reason": "Entered twice", "note": "Booked under the wrong category",
    "category": "b-only", "label": "Renamed by a stranger", "role": "owner",
    "name": "Taken over", "type": "project", "description": "x", "amount": "1.00",
    "currency": "EUR", "payee": "Someone", "spent_on": "2026-01-01",
    "visibility": "public_full", "email": "someone@example.org",
}


def test_a_member_of_one_organisation_reaches_nothing_of_another(
    app: Flask, world: World, browser: Callable[[User | None], Browser],
    add_member: Callable[..., Any], create_user: Callable[..., User],
) -> None:
    from portal.services import categories, expenses, funds, members

    other, b_owner = world.other, world.outsider
    b_member = create_user(mfa=True)
    add_member(other, b_member, "viewer")
    b_fund = funds.create_fund(b_owner.id, other.id, name="Hilltop roof", fund_type="project")
    categories.add_category(b_owner.id, other.id, "B only")
    b_submitter = create_user(mfa=True)
    add_member(other, b_submitter, "finance")
    b_expense = submit(b_submitter, other, b_fund, payee="Zanzibarroofer", category="b-only")
    b_entry = expenses.approve_expense(b_owner.id, other.id, submit(
        b_submitter, other, b_fund, payee="Quixoticsupplier", category="b-only"))
    b_invitation = members.invite(b_owner.id, other.id, "b-friend@example.org", "viewer")
    before = _snapshot(other.id)

    b_values = {"org": world.org.slug, "entry_id": b_entry.entry_id,
                "expense_id": b_expense, "fund_id": b_fund, "category": "b-only",
                "user_id": b_member.id, "invitation_id": b_invitation,
                "token": world.invitation_token, "organisation_id": other.id,
                # An audience is not the other organisation's data: this one names none.
                "job_id": report_job(other.id), "audience": "no-such-audience"}
    owner_of_a = browser(world.members["owner"])
    assert owner_of_a.token
    checked = 0
    for rule, method in guarded_rules(app):
        if rule.endpoint.startswith("admin.") or rule.endpoint in (
                FOR_EVERYONE_SIGNED_IN | FOR_THE_INVITED_ONLY):
            continue
        names = set(rule.arguments) - {"org"}
        for url in (url_for_rule(rule, {**b_values, "org": other.slug}),
                    *([url_for_rule(rule, b_values)] if names else [])):
            response = (owner_of_a.get(url) if method == "GET"
                        else owner_of_a.post(url, FULL_FORM))
            body = response.get_data(as_text=True)
            assert response.status_code in (404, 422), f"{method} {url}: {response.status_code}"
            for secret in ("Zanzibarroofer", "Quixoticsupplier", "Hilltop roof",
                           "b-friend@example.org", b_member.email):
                assert secret not in body, f"{method} {url} shows {secret}"
            checked += 1
    assert checked > 40
    assert _snapshot(other.id) == before


def test_the_scope_of_a_dashboard_request_is_its_organisation(
    world: World, browser: Callable[[User | None], Browser],
) -> None:
    # Even a query that forgot its filter would find only this organisation's rows.
    owner = browser(world.members["owner"])
    page = owner.get(f"/dashboard/{world.org.slug}/entries")
    assert page.status_code == 200
    ids = set(db.session.scalars(sa.select(LedgerEntry.entry_id)
                                 .where(LedgerEntry.organisation_id == world.other.id)))
    assert not any(entry_id in page.get_data(as_text=True) for entry_id in ids)


def test_changes_need_the_csrf_token_in_the_form_or_the_htmx_header(
    world: World, browser: Callable[[User | None], Browser]
) -> None:
    owner = browser(world.members["owner"])
    url = f"/dashboard/{world.org.slug}/categories"
    without = owner.client.post(url, data={"label": "Forged"})
    assert without.status_code == 400
    assert db.session.get(Category, (world.org.id, "forged")) is None
    with_header = owner.client.post(url, data={"label": "Sent by htmx"},
                                    headers={"HX-Request": "true", "X-CSRFToken": owner.token})
    assert with_header.status_code == 200 and with_header.headers["HX-Redirect"] == url
    assert db.session.get(Category, (world.org.id, "sent-by-htmx")) is not None
    page = owner.get(f"/dashboard/{world.org.slug}").get_data(as_text=True)
    assert f'hx-headers=\'{{"X-CSRFToken": "{owner.token}"}}\'' in page
