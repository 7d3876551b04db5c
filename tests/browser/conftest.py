"""Fixtures for the browser tests: demo data in a database of their own, the app on a
real HTTP server, and Debian's Chromium driven by Playwright.

The browser tests never write into the database the other tests share: demo data
committed there would change what those tests see. Without Chromium (or axe-core
for the accessibility checks) the tests are skipped, except in CI, where they fail.
The journeys of signed-in people add accounts, organisations and memberships to the
demo database through the services, and read the portal's mail from its outbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from werkzeug.serving import BaseWSGIServer, make_server

from portal import create_app
from portal.extensions import db, limiter
from tests.account.conftest import body_of, link_in, mails_to
from tests.conftest import DEFAULT_PASSWORD, scratch_database

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE_CORE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE_VIEWPORT = {"width": 390, "height": 844}

# The demo organisations built by ``build_demo_data(organisations=3, ...)``.
RIVERSIDE = ("riverside-food-bank", "Riverside Food Bank")
OPEN_WATER = ("open-water-rescue", "Open Water Rescue")
KIDS_CODE = ("kids-code-club", "Kids Code Club")
ENTRY_LINK = re.compile(r"^#\d+$")


def disclosed_entry_path(page: Page) -> str:
    """The address of Riverside Food Bank's newest entry shown in full (read off its ledger)."""
    page.goto(f"/orgs/{RIVERSIDE[0]}/ledger")
    row = page.get_by_role("region", name="Ledger entries").get_by_role("row").filter(
        has=page.get_by_role("link", name=ENTRY_LINK)).filter(
        has_not_text="undisclosed").filter(has_not_text="Internal entry").first
    href = row.get_by_role("link", name=ENTRY_LINK).get_attribute("href")
    assert href is not None
    return href


# The public pages, by name: each gives its address (some read it off another page).
PUBLIC_PAGES: dict[str, Callable[[Page], str]] = {
    "directory": lambda page: "/",
    "organisation": lambda page: f"/orgs/{RIVERSIDE[0]}",
    "ledger": lambda page: f"/orgs/{RIVERSIDE[0]}/ledger",
    "entry": disclosed_entry_path,
    "verification": lambda page: f"/orgs/{RIVERSIDE[0]}/verify",
    "how-to-verify": lambda page: "/how-to-verify",
    "api-docs": lambda page: "/api/docs",
}


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require(path: Path, *, ci_message: str, skip_reason: str) -> None:
    """Fail under CI=true, skip otherwise, when ``path`` is missing."""
    if path.exists():
        return
    if _in_ci():
        pytest.fail(f"{ci_message} (missing: {path})", pytrace=False)
    pytest.skip(skip_reason)


@pytest.fixture(scope="session", autouse=True)
def _chromium_available() -> None:
    """Checked first, so that nothing is built for tests that will be skipped."""
    require(
        CHROMIUM,
        ci_message="Chromium is required for the browser tests in CI; "
                   "install Debian's chromium package",
        skip_reason="Chromium not installed: browser tests skipped",
    )


@pytest.fixture(scope="session")
def axe_script() -> Path:
    require(
        AXE_CORE,
        ci_message="axe-core is required for the accessibility tests in CI; "
                   "run `npm ci` to install it",
        skip_reason="axe-core not installed (run `npm ci`): accessibility tests skipped",
    )
    return AXE_CORE


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# --------------------------------------------------------------------------- the app


@pytest.fixture(scope="session")
def demo_app(postgres_server_url: str, app_config: dict[str, Any]) -> Iterator[Flask]:
    """The app on a database of its own, built by the migrations, with demo data."""
    import flask_migrate

    from portal.services import tenancy
    from portal.services.demo import build_demo_data

    with scratch_database(postgres_server_url, "portal_browser") as (urls, _):
        application = create_app({**app_config, "DATABASE_URL": urls.app,
                                  "MIGRATION_DATABASE_URL": urls.owner})
        try:
            with application.app_context():
                try:
                    flask_migrate.upgrade()
                    tenancy.platform()
                    # 600 entries give each organisation more than one page (50 rows)
                    # of expenses; with 400, Riverside Food Bank has exactly 50.
                    organisations = build_demo_data(organisations=3, entries=600, seed=11)
                    assert [o.slug for o in organisations] == [
                        RIVERSIDE[0], OPEN_WATER[0], KIDS_CODE[0]]
                finally:
                    db.session.remove()
            yield application
        finally:
            with application.app_context():
                db.engine.dispose()


@pytest.fixture(scope="session")
def base_url(demo_app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free local port, in a background thread."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, demo_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-test-server",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@dataclass
class ContextFactory:
    """Makes browser contexts that share the live server's base URL; closes them all."""

    browser: Browser
    base_url: str
    contexts: list[BrowserContext]

    def __call__(self, **options: Any) -> BrowserContext:
        context = self.browser.new_context(base_url=self.base_url, **options)
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        return context


@pytest.fixture
def new_context(browser: Browser, base_url: str,
                request: pytest.FixtureRequest,
                artifacts: Path) -> Iterator[Callable[..., BrowserContext]]:
    factory = ContextFactory(browser, base_url, [])
    yield factory
    failed = getattr(request.node, "failed_call", False)
    for index, context in enumerate(factory.contexts):
        if failed:  # what the page looked like when the test failed
            for number, page in enumerate(context.pages):
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
                with contextlib.suppress(PlaywrightError):  # a crashed page has no picture
                    page.screenshot(path=artifacts / f"failure-{name}-{index}-{number}.png",
                                    full_page=True)
        context.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    """A page in a fresh context with JavaScript on, at desktop size."""
    return new_context().new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
    return report


# --------------------------------------------------------------------------- accessibility


@pytest.fixture
def assert_accessible(axe_script: Path, artifacts: Path) -> Callable[[Page, str], None]:
    """``assert_accessible(page, name)``: axe-core on the page as it is now (after any
    htmx swaps), failing on serious or critical violations; all of them go to
    ``tests/artifacts/axe-<name>.json``.

    axe-core is evaluated by Playwright rather than added as a script tag, so the
    portal's Content-Security-Policy stays on for the journey that is being checked.
    """
    # Imported here because that module imports this one.
    from tests.browser.test_accessibility import BLOCKING, describe

    source = axe_script.read_text(encoding="utf-8")

    def check(page: Page, name: str) -> None:
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.evaluate(source)
        results: dict[str, Any] = page.evaluate("async () => await axe.run()")
        violations: list[dict[str, Any]] = results["violations"]
        (artifacts / f"axe-{name}.json").write_text(
            json.dumps({"url": page.url, "violations": violations}, indent=2),
            encoding="utf-8")
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        assert not blocking, (
            f"axe found serious or critical violations on {page.url}:\n{describe(blocking)}")

    return check


# --------------------------------------------------------------------------- people and mail


@dataclass
class Authenticator:
    """An authenticator app holding one account's secret.

    The portal takes each code once (and none older than the last one it took), so
    the app gives this moment's code, or the next moment's when this one is used up:
    the portal accepts a code one step early, for phones whose clocks run ahead.
    """

    secret: str
    last_step: int | None = None

    def code(self) -> str:
        from portal.services import mfa

        now = int(time.time() // mfa.STEP_SECONDS)
        step = now if self.last_step is None else max(now, self.last_step + 1)
        if step > now + mfa.VALID_WINDOW:
            # Every code the portal accepts now has been used: wait for the next one,
            # as a person would (the portal's own advice). Nothing in the page to wait on.
            time.sleep((now + 1) * mfa.STEP_SECONDS - time.time())
        self.last_step = step
        return self.code_at(step)

    def code_at(self, step: int) -> str:
        from portal.services import mfa

        totp = pyotp.TOTP(self.secret, digits=mfa.DIGITS, interval=mfa.STEP_SECONDS)
        return totp.at(step * mfa.STEP_SECONDS)


@dataclass
class Person:
    """Someone with an account (or about to make one) and, once they have turned it on,
    their authenticator app."""

    name: str
    email: str
    password: str = DEFAULT_PASSWORD
    authenticator: Authenticator | None = None


def new_address(name: str) -> str:
    """An email address of its own for every person a test makes."""
    local = re.sub(r"[^a-z]+", ".", name.lower()).strip(".")
    return f"{local}.{uuid.uuid4().hex[:8]}@example.org"


@pytest.fixture
def fresh_rate_limits(demo_app: Flask) -> None:
    """Rate-limit counters live in Redis and outlast a test: a journey starts with none."""
    with demo_app.app_context():
        limiter.reset()


@pytest.fixture
def make_person(demo_app: Flask) -> Callable[..., Person]:
    """Factory: ``make_person("Ada", two_factor=True, platform_admin=True,
    member_of=slug, role="auditor")`` makes a confirmed account through the services."""
    from portal.models import Membership
    from portal.services import accounts, mfa, organisations, tenancy

    def make(name: str, *, two_factor: bool = False, platform_admin: bool = False,
             member_of: str | None = None, role: str = "viewer") -> Person:
        person = Person(name, new_address(name))
        with demo_app.app_context():
            tenancy.platform()
            try:
                user = accounts.register(person.email, person.password, name)
                user.email_confirmed_at = datetime.now(UTC)
                db.session.commit()
                if platform_admin:
                    accounts.make_platform_admin(person.email)
                if two_factor:
                    # Set up a step ago, as if the app had been added a moment before.
                    step = int(time.time() // mfa.STEP_SECONDS) - 1
                    authenticator = Authenticator(mfa.new_secret(), last_step=step)
                    mfa.enable(user.id, authenticator.secret, authenticator.code_at(step),
                               ip="", keep_session=None)
                    person.authenticator = authenticator
                if member_of is not None:
                    organisation = organisations.find_organisation(member_of)
                    db.session.add(Membership(organisation_id=organisation.id,
                                              user_id=user.id, role=role))
                    db.session.commit()
            finally:
                db.session.remove()
        return person

    return make


@pytest.fixture
def make_organisation(demo_app: Flask) -> Callable[..., str]:
    """Factory: ``make_organisation(name, owner)`` registers an organisation waiting
    for approval (not public), owned by ``owner`` (made by ``make_person``); its slug."""
    from portal.services import accounts, organisations, tenancy

    def make(name: str, owner: Person) -> str:
        with demo_app.app_context():
            tenancy.platform()
            try:
                user = accounts.find_by_email(owner.email)
                assert user is not None, f"no account for {owner.email}"
                organisation = organisations.create_organisation(
                    name=name, country="GB", default_currency="GBP", status="pending",
                    owner_user_id=user.id)
                return organisation.slug
            finally:
                db.session.remove()

    return make


@dataclass
class Outbox:
    """The mail the live app has sent (files in its outbox folder)."""

    app: Flask

    def link(self, address: str, path_start: str) -> str:
        """The path of the link starting with ``path_start`` in the newest mail to
        ``address`` that has one (the mail's links point at the portal's public address)."""
        with self.app.app_context():
            messages = mails_to(address)
        for message in reversed(messages):
            if path_start in body_of(message):
                return link_in(message, path_start)
        subjects = [str(message["Subject"]) for message in messages]
        raise AssertionError(f"no {path_start} link in the mail to {address}: {subjects}")


@pytest.fixture
def outbox(demo_app: Flask) -> Outbox:
    return Outbox(demo_app)
