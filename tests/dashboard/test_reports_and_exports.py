"""Reports and exports in the dashboard: the auditor export, a report at once or built in
the background with its progress, and refusals that say why."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from portal import jobs
from portal.extensions import db, redis_store
from portal.models import User
from portal.services import ledger, reports
from tests.dashboard.conftest import Browser, World


@pytest.fixture
def queue(app: Flask) -> Iterator[None]:
    redis_store.client().delete(jobs.QUEUE)
    yield
    redis_store.client().delete(jobs.QUEUE)


def export_of(browser: Browser, world: World, audience: str) -> dict[str, Any]:
    response = browser.get(f"/dashboard/{world.org.slug}/exports/{audience}.json")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "private, no-store"
    return json.loads(response.get_data())  # type: ignore[no-any-return]


def test_an_auditor_gets_every_entry_in_full(
    world: World, browser: Callable[[User | None], Browser]
) -> None:
    secret = ledger.append_entry(world.org.id, "expense", -7_777, "EUR",
                                 {"category": "legal", "payee": "Vermilion Counsel",
                                  "visibility": "internal_only"})
    db.session.commit()
    auditor = browser(world.members["auditor"])
    full = export_of(auditor, world, "auditor")
    assert full["audience"] == "auditor"
    record = next(r for r in full["entries"] if r["entry_hash"] == secret.entry_hash)
    assert record["metadata"]["payee"] == "Vermilion Counsel" and "balance_after" in record
    public = export_of(auditor, world, "public")
    redacted = next(r for r in public["entries"] if r["entry_hash"] == secret.entry_hash)
    assert redacted["redacted"] is True and "Vermilion" not in json.dumps(public)
    page = auditor.get(f"/dashboard/{world.org.slug}/reports").get_data(as_text=True)
    assert "Auditor export" in page and "Confidential" in page


def test_no_such_export(world: World, browser: Callable[[User | None], Browser]) -> None:
    owner = browser(world.members["owner"])
    assert owner.get(f"/dashboard/{world.org.slug}/exports/everything.json").status_code == 404


def pdf_text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True,
                          check=True).stdout.decode()


def test_a_small_ledgers_report_comes_back_at_once(
    world: World, browser: Callable[[User | None], Browser]
) -> None:
    finance = browser(world.members["finance"])
    response = finance.post(f"/dashboard/{world.org.slug}/reports",
                            {"period_from": "2000-01-01", "audience": "auditor"})
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert "riverside-food-bank-audit-2000-01-01.pdf" in response.headers["Content-Disposition"]
    text = pdf_text(response.get_data())
    response.close()  # a download holds its file open until then
    assert "Riverside Food Bank" in text and "the auditor export" in text
    assert "amply-verify report riverside-food-bank-ledger.json --from 2000-01-01" in text


def test_a_wrong_period_is_refused_with_the_reason(
    world: World, browser: Callable[[User | None], Browser]
) -> None:
    owner = browser(world.members["owner"])
    response = owner.post(f"/dashboard/{world.org.slug}/reports",
                          {"period_from": "2030-02-01", "period_to": "2030-01-01",
                           "audience": "auditor"})
    assert response.status_code == 422
    assert "The last day is before the first day." in response.get_data(as_text=True)
    response = owner.post(f"/dashboard/{world.org.slug}/reports",
                          {"period_from": "yesterday", "audience": "everyone"})
    assert response.status_code == 422


def test_a_large_ledgers_report_is_built_in_the_background(
    app: Flask, world: World, browser: Callable[[User | None], Browser], queue: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reports, "BACKGROUND_ABOVE", 1)
    auditor = browser(world.members["auditor"])
    started = auditor.post(f"/dashboard/{world.org.slug}/reports", {"audience": "public"})
    assert started.status_code == 303
    page_url = started.headers["Location"]
    waiting = auditor.get(page_url).get_data(as_text=True)
    assert "Waiting for a worker" in waiting and 'hx-trigger="every 1s"' in waiting
    assert '<meta http-equiv="refresh" content="3">' in waiting  # without JavaScript
    download = page_url + "/download"
    assert auditor.get(download).status_code == 409

    assert jobs.run_pending(app) == 1
    fragment = auditor.get(page_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "The report is ready" in fragment and "hx-trigger" not in fragment
    assert "<html" not in fragment
    pdf = auditor.get(download)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert "-public.pdf" in pdf.headers["Content-Disposition"]
    assert "the public export" in pdf_text(pdf.get_data())
    pdf.close()
    # Another member who may download reports may follow it; a viewer may not.
    assert browser(world.members["owner"]).get(page_url).status_code == 200
    assert browser(world.members["viewer"]).get(page_url).status_code == 403
