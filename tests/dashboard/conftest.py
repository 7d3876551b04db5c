"""Fixtures for the dashboard: an organisation with a member of every role, another
organisation next door, and helpers to act as each of them through the test client."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.extensions import db
from portal.models import Organisation, User
from portal.services import expenses, ledger, members, receipts, tenancy
from tests.conftest import sign_in_as

ROLES = ("viewer", "finance", "admin", "owner", "auditor")


def png(extra: int = 0) -> bytes:
    """A small but real PNG image (one white pixel), padded with ``extra`` bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    image = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
             + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(b"IEND", b""))
    return image + b"\x00" * extra


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class Browser:
    """One person's browser: a signed-in test client that finds its own CSRF token."""

    def __init__(self, client: FlaskClient, user: User | None) -> None:
        self.client = client
        self.user = user
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            html = self.client.get("/dashboard/" if self.user else "/account/login")
            found = re.search(r'"X-CSRFToken": "([^"]+)"', html.get_data(as_text=True)) or \
                re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html.get_data(as_text=True))
            assert found, "no CSRF token found"
            self._token = found.group(1)
        return self._token

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, *, htmx: bool = False,
             **kwargs: Any) -> TestResponse:
        headers = {"HX-Request": "true"} if htmx else {}
        payload = {"csrf_token": self.token, **(data or {})}
        return self.client.post(url, data=payload, headers=headers, **kwargs)


@dataclass
class World:
    org: Organisation
    other: Organisation
    members: dict[str, User]
    submitter: User
    outsider: User
    platform_admin: User
    fund_id: str
    expense_id: str
    entry_id: str
    donation_id: str
    invitation_id: str
    invitation_token: str
    browsers: dict[str, Browser] = field(default_factory=dict)

    def slug(self) -> str:
        return self.org.slug


@pytest.fixture
def browser(app: Flask) -> Callable[[User | None], Browser]:
    def make(user: User | None) -> Browser:
        client = app.test_client()
        if user is not None:
            sign_in_as(client, user)
        return Browser(client, user)

    return make


def submit(submitter: User, org: Organisation, fund_id: str, *, amount: int = 12_000,
           payee: str = "Dockside Lettings", category: str = "rent",
           visibility: str = "public_full", receipt: bytes | None = None,
           **extra: Any) -> str:
    """Submit an expense through the service (as the submitter would through the form)."""
    upload = receipts.check(receipt, "receipt.png", "image/png") if receipt else None
    return expenses.submit_expense(
        submitter.id, org.id, amount=amount, currency="EUR", fund_id=fund_id,
        category=category, payee=payee, description="January rent",
        spent_on=date(2026, 1, 5), visibility=visibility, receipt=upload, **extra)


@pytest.fixture
def world(app: Flask, create_org: Callable[..., Organisation],
          create_user: Callable[..., User], add_member: Callable[..., Any]) -> World:
    """Organisation A with an owner, admin, finance, viewer and auditor (all with
    two-factor sign-in), a second finance member who submits expenses, an expense
    waiting for approval, an approved one, a donation and an open invitation; and
    organisation B with its own owner, who is nobody in A."""
    org = create_org(name="Riverside Food Bank")
    other = create_org(name="Hilltop Shelter")
    people = {role: create_user(mfa=True, name=f"The {role}") for role in ROLES}
    for role, user in people.items():
        add_member(org, user, role)
    submitter = create_user(mfa=True, name="The submitter")
    add_member(org, submitter, "finance")
    outsider = create_user(mfa=True, name="The outsider")
    add_member(other, outsider, "owner")
    platform_admin = create_user(mfa=True, admin=True, name="The platform admin")
    from portal.services import funds

    fund_id = funds.create_fund(people["owner"].id, org.id, name="Winter appeal",
                                fund_type="project")
    donation = ledger.append_entry(org.id, "donation_received", 50_000, "EUR",
                                   {"donor_name": "Ada Lovelace", "message": "For winter"})
    db.session.commit()
    approved = submit(submitter, org, fund_id)
    entry = expenses.approve_expense(people["finance"].id, org.id, approved)
    waiting = submit(submitter, org, fund_id, amount=4_500, payee="Corner Hardware",
                     category="equipment", receipt=png())
    invitation_id = members.invite(people["owner"].id, org.id, "stranger@example.org",
                                   "viewer")
    from portal.services import tokens

    token = tokens.make(members.LINK_PURPOSE, {"inv": invitation_id, "org": org.id})
    tenancy.platform()
    return World(org, other, people, submitter, outsider, platform_admin, fund_id, waiting,
                 entry.entry_id, donation.entry_id, invitation_id, token)


@contextmanager
def undone() -> Iterator[None]:
    """Run a block and then undo everything it wrote to the database (the test's own
    transaction stays), so that one set of fixtures serves many requests."""
    db.session.commit()
    connection = db.session().bind
    db.session.remove()
    savepoint = connection.begin_nested()  # type: ignore[union-attr]
    try:
        yield
    finally:
        db.session.remove()
        savepoint.rollback()
        tenancy.platform()
