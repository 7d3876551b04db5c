"""Every state-changing route refuses a request without the CSRF token, for anyone;
only the routes an external signature authenticates are exempt."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask

from tests.conftest import sign_in_as

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
#: Blueprints exempt from CSRF, and why: they are read-only, or signed by their sender.
EXEMPT_BLUEPRINTS = {
    "api": "read-only JSON",
    "webhooks": "authenticated by Stripe's signature",
}


def changing_routes(app: Flask) -> list[tuple[str, str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        if blueprint in EXEMPT_BLUEPRINTS or rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) & STATE_CHANGING):
            url = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "x", rule.rule)
            found.append((method, url, rule.endpoint))
    return found


def test_every_change_needs_the_token(
    app: Flask, create_user: Callable[..., Any]
) -> None:
    routes = changing_routes(app)
    assert len(routes) > 30  # the account, dashboard and admin forms at least
    anonymous = app.test_client()
    signed_in = app.test_client()
    sign_in_as(signed_in, create_user(mfa=True, admin=True))
    wrong = []
    for method, url, endpoint in routes:
        for who, client in (("anonymous", anonymous), ("signed in", signed_in)):
            response = client.open(url, method=method, data={"anything": "1"})
            body = response.get_data(as_text=True)
            if response.status_code != 400 or "CSRF" not in body:
                wrong.append(f"{method} {url} ({endpoint}) as {who}: {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_a_wrong_token_is_refused_too(app: Flask, create_user: Callable[..., Any]) -> None:
    client = app.test_client()
    sign_in_as(client, create_user())
    assert client.get("/account/security").status_code == 200  # the session gets its token
    response = client.post("/account/logout", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert "The CSRF token is invalid." in response.get_data(as_text=True)
    assert client.get("/account/security").status_code == 200  # still signed in
