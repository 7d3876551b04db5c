"""Every form of the account pages needs its CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.account.conftest import opens_dashboard, sign_in

SAMPLE_VALUES = {"token": "sometoken", "handle": "0" * 32}


def post_routes(app: Flask) -> list[str]:
    """The URL of every route of the account pages (and their dev pages) that takes POST."""
    urls = []
    with app.test_request_context():
        adapter = app.url_map.bind("portal.test")
        for rule in app.url_map.iter_rules():
            if rule.endpoint.split(".")[0] in ("account", "dev") and "POST" in (
                    rule.methods or ()):
                values = {name: SAMPLE_VALUES[name] for name in rule.arguments}
                urls.append(adapter.build(rule.endpoint, values))
    return urls


def test_every_post_route_refuses_a_request_without_a_token(
    app: Flask, client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    urls = post_routes(app)
    assert len(urls) >= 15  # the list is read from the app, not typed in here
    assert "/account/login" in urls and "/account/two-factor/disable" in urls
    user = create_user()
    for signed_in in (False, True):
        if signed_in:
            sign_in(client, user.email)
        for url in urls:
            response = client.post(url, data={"email": user.email, "password": "x" * 12,
                                              "code": "123456", "binding": "strict"})
            assert response.status_code == 400, url
            assert "CSRF token is missing" in response.get_data(as_text=True), url
    assert opens_dashboard(client)  # nothing above signed this browser out


def test_a_token_from_another_session_is_refused(
    app: Flask, client: FlaskClient, create_user: Callable[..., Any]
) -> None:
    from tests.conftest import csrf_token_from

    user = create_user()
    stranger = app.test_client()
    foreign = csrf_token_from(stranger, "/account/login")
    csrf_token_from(client, "/account/login")
    response = client.post("/account/login", data={"csrf_token": foreign, "email": user.email,
                                                   "password": "x" * 12})
    assert response.status_code == 400
