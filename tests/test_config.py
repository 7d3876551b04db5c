"""Settings: one place reads the environment, the README documents every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from portal.config import (
    SETTINGS,
    ConfigError,
    check_settings,
    load_settings,
    secret_key_for,
    sqlalchemy_url,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_readme_documents_each_setting_with_its_default(setting: object) -> None:
    name = setting.name  # type: ignore[attr-defined]
    default = setting.default  # type: ignore[attr-defined]
    row = re.search(rf"^\| `{name}` \| (.+?) \| (.+) \|$", README, re.MULTILINE)
    assert row, f"{name} is missing from the README's configuration table"
    shown = f"`{default}`" if default else "(empty)"
    assert row.group(1) == shown


def test_nothing_else_reads_the_environment() -> None:
    portal = Path(__file__).resolve().parent.parent / "portal"
    offenders = [str(path.relative_to(portal)) for path in portal.rglob("*.py")
                 if path.name != "config.py" and "os.environ" in path.read_text()]
    assert offenders == []


def test_defaults_load_from_an_empty_environment() -> None:
    values = load_settings({})
    assert values["PORTAL_ENV"] == "development"
    assert values["DATABASE_POOL_SIZE"] == 10
    assert values["SQL_ECHO"] is False


def test_values_are_parsed() -> None:
    values = load_settings({"DATABASE_POOL_SIZE": "3", "SQL_ECHO": "yes"})
    assert (values["DATABASE_POOL_SIZE"], values["SQL_ECHO"]) == (3, True)


@pytest.mark.parametrize(("environ", "message"), [
    ({"SQL_ECHO": "maybe"}, "SQL_ECHO"),
    ({"DATABASE_POOL_SIZE": "many"}, "DATABASE_POOL_SIZE"),
])
def test_malformed_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ)


def test_production_needs_real_servers_and_a_key() -> None:
    values = load_settings({"PORTAL_ENV": "production"})
    with pytest.raises(ConfigError, match="SECRET_KEY, DATABASE_URL, REDIS_URL"):
        check_settings(values)
    check_settings(load_settings({
        "PORTAL_ENV": "production", "SECRET_KEY": "x" * 40,
        "DATABASE_URL": "postgresql://db/portal", "REDIS_URL": "redis://cache:6379/0",
    }))


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="PORTAL_ENV"):
        check_settings(load_settings({"PORTAL_ENV": "staging"}))


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
])
def test_database_urls_use_psycopg(given: str, expected: str) -> None:
    assert sqlalchemy_url(given) == expected


def test_other_databases_are_refused() -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        sqlalchemy_url("sqlite:///portal.db")


def test_development_secret_key_is_made_once(tmp_path: Path) -> None:
    values = load_settings({})
    first = secret_key_for(values, tmp_path)
    assert len(first) >= 40
    assert secret_key_for(values, tmp_path) == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("proxies", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_client_addresses_come_from_trusted_proxies_only(
    app_config: dict[str, object], proxies: int, seen: str
) -> None:
    from flask import request

    from portal import create_app

    application = create_app({**app_config, "TRUSTED_PROXIES": proxies})
    application.add_url_rule("/whoami", "whoami", lambda: str(request.remote_addr))
    response = application.test_client().get(
        "/whoami", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.get_data(as_text=True) == seen
