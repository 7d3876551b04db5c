"""The development outbox page: only in debug mode."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.account.conftest import post_form


def test_the_outbox_is_not_there_outside_debug_mode(client: FlaskClient) -> None:
    assert client.get("/dev/outbox").status_code == 404


def test_the_outbox_lists_messages_with_clickable_links_in_debug_mode(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"outbox-{uuid.uuid4().hex[:8]}@example.org"
    post_form(client, "/account/password/forgot", {"email": email})
    monkeypatch.setitem(app.config, "DEBUG", True)
    page = client.get("/dev/outbox")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert email in html
    assert "No account with this address" in html
    assert '<a href="http://portal.test/account/register">' in html


def test_the_outbox_is_never_there_in_production(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "DEBUG", True)
    monkeypatch.setitem(app.config, "PORTAL_ENV", "production")
    assert client.get("/dev/outbox").status_code == 404
