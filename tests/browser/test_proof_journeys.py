"""Proofs in a real browser: the signed checkpoints, an entry's proof file checked by
the verifier, and an auditor's exports and audit reports, built at once or in the
background with their progress followed with and without JavaScript."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import BrowserContext, Page, expect

from amply_verify.note import Verifier
from amply_verify.tlog_proof import parse_proof, verify_proof
from portal import jobs
from portal.services import reports
from tests.browser.conftest import KIDS_CODE, REPO_ROOT, Person, disclosed_entry_path
from tests.browser.test_dashboard_journeys import field_value, section_nav, sign_in
from tests.browser.test_journeys import assert_no_page_load, htmx_ready, mark_document

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_rate_limits")]

CHECKPOINT_ID = re.compile(r"^chk_\d{4}_\d{2}_\d{2}$")
WELL_KNOWN_KEY = "/.well-known/amply-checkpoint-key"
REPORT_READY = re.compile(r"^The report is ready: \d+ pages?\.$")
AccessibilityCheck = Callable[[Page, str], None]


def signing_key(page: Page) -> str:
    """The portal's current checkpoint key, as published at the well-known address."""
    response = page.request.get(WELL_KNOWN_KEY)
    assert response.ok, f"{WELL_KNOWN_KEY}: {response.status}"
    return response.text().splitlines()[0]


# --------------------------------------------------------------------------- checkpoints


def test_checkpoints_and_an_entrys_proof(page: Page, tmp_path: Path,
                                         assert_accessible: AccessibilityCheck) -> None:
    key = signing_key(page)

    # The list: the key, the latest checkpoint, and both of the demo's checkpoints.
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Checkpoints").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed checkpoints")
    expect(page.get_by_role("region", name="The signing key").get_by_text(key, exact=True)) \
        .to_be_visible()
    listed = page.get_by_role("region", name="All checkpoints").get_by_role(
        "link", name=CHECKPOINT_ID)
    expect(listed).to_have_count(2)
    newest, older = listed.all_inner_texts()
    assert newest > older, "checkpoints are listed newest first"
    latest = page.get_by_role("region", name=f"Latest: {newest}")
    for name in ("Riverside Food Bank", "Open Water Rescue", "Kids Code Club"):
        expect(latest.get_by_role("rowheader", name=name)).to_be_visible()
    assert_accessible(page, "checkpoints")

    # One checkpoint: signed by that key, following the one before.
    listed.first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Checkpoint {newest}")
    expect(field_value(page, "Signed by")).to_have_text(key)
    expect(field_value(page, "Previous checkpoint").get_by_role("link")).to_have_text(older)
    ledgers = page.get_by_role("region", name="Ledgers in this checkpoint")
    expect(ledgers.get_by_role("link", name="Riverside Food Bank")).to_be_visible()
    assert_accessible(page, "checkpoint")

    # An entry the checkpoint covers: its proof, as a file the verifier checks offline.
    page.goto(disclosed_entry_path(page))
    entry_hash = field_value(page, "This entry's hash").get_by_text(
        re.compile(r"^sha256:[0-9a-f]{64}$")).inner_text()
    proof_section = page.get_by_role("region", name="Proof that this entry is in the signed "
                                                    "ledger")
    expect(proof_section).to_contain_text("signed by the portal, covers the first")
    expect(proof_section.get_by_role("link", name=newest)).to_be_visible()
    with page.expect_download() as download_info:
        proof_section.get_by_role("link", name="Download the proof file").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".tlog-proof")
    proof_file = tmp_path / download.suggested_filename
    download.save_as(proof_file)

    proof = parse_proof(proof_file.read_text(encoding="utf-8"))
    assert proof.entry_hash == entry_hash
    tree = verify_proof(proof, entry_hash.encode("ascii"), Verifier.parse(key))
    expect(proof_section).to_contain_text(f"covers the first {tree.size:,} entries")
    expect(proof_section).to_contain_text(tree.root_base64)

    key_file = tmp_path / "amply-key.txt"
    key_file.write_text(key + "\n", encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "amply_verify.cli", "proof", "--file", str(proof_file),
         "--public-key", str(key_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert entry_hash in checked.stdout

    # From the proof to the checkpoint it leads to.
    proof_section.get_by_role("link", name=newest).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Checkpoint {newest}")


def test_how_to_verify_shows_the_key_and_the_commands(page: Page) -> None:
    key = signing_key(page)
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="How to verify") \
        .click()
    expect(page.get_by_role("heading", level=1)).to_have_text("How to verify a ledger yourself")
    expect(page.get_by_text(key, exact=True)).to_be_visible()
    latest = page.get_by_role("link", name=CHECKPOINT_ID)
    expect(latest).to_have_count(1)
    checkpoint = latest.inner_text()
    for command in (
        f"amply-verify checkpoint ledger.json --checkpoint {checkpoint} "
        "--public-key amply-key.txt",
        "amply-verify proof --org ORGANISATION --entry led_…",
        "amply-verify consistency --org ORGANISATION --from chk_A --to chk_B",
    ):
        expect(page.get_by_text(command)).to_be_visible()


# --------------------------------------------------------------------------- reports


@pytest.fixture
def auditor(make_person: Callable[..., Person]) -> Person:
    """An auditor of Kids Code Club (reading needs no two-factor sign-in)."""
    return make_person("Aurelia Auditor", member_of=KIDS_CODE[0], role="auditor")


def open_reports(page: Page, auditor: Person) -> None:
    _, name = KIDS_CODE
    sign_in(page, auditor)
    page.get_by_role("link", name=name).click()
    section_nav(page, name).get_by_role("link", name="Reports and exports").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reports and exports")


def ask_for_report(page: Page) -> None:
    page.get_by_label("First day").fill((date.today() - timedelta(days=30)).isoformat())
    page.get_by_label("Last day").fill(date.today().isoformat())
    expect(page.get_by_role("radio", name=re.compile(r"^Every entry in full"))) \
        .to_be_checked()
    page.get_by_role("button", name="Make the report").click()


def test_auditor_exports_and_reports(
    new_context: Callable[..., BrowserContext], auditor: Person, demo_app: Flask,
    monkeypatch: pytest.MonkeyPatch, assert_accessible: AccessibilityCheck,
) -> None:
    slug, _ = KIDS_CODE
    page = new_context().new_page()
    open_reports(page, auditor)
    expect(page.get_by_text("It will be bound to checkpoint")).to_be_visible()
    assert_accessible(page, "dashboard-reports")

    # The auditor export: every entry in full.
    with page.expect_download() as export_info:
        page.get_by_role("link", name="Auditor export").click()
    assert export_info.value.suggested_filename == f"{slug}-ledger-auditor.json"
    export = json.loads(Path(export_info.value.path()).read_text(encoding="utf-8"))
    assert export["audience"] == "auditor"
    assert export["entries"], "the export has the ledger's entries"

    # A small ledger's audit report comes back at once.
    with page.expect_download() as report_info:
        ask_for_report(page)
    assert report_info.value.suggested_filename.endswith(".pdf")
    assert Path(report_info.value.path()).read_bytes().startswith(b"%PDF")

    # A large one is built in the background: the page shows its progress and, once the
    # job has run, updates itself (htmx polling) to offer the download.
    monkeypatch.setattr(reports, "BACKGROUND_ABOVE", 0)
    page.reload()
    expect(page.get_by_text("the report is built in the background")).to_be_visible()
    ask_for_report(page)
    expect(page).to_have_url(re.compile(rf"/dashboard/{slug}/reports/jobs/job_[0-9a-f]+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit report")
    progress = page.get_by_role("progressbar", name="Progress of the report")
    expect(progress).to_be_visible()
    expect(page.get_by_text("This page reloads by itself every few seconds.")).to_have_count(0)
    htmx_ready(page)
    assert_accessible(page, "dashboard-report-job")
    mark_document(page)

    assert jobs.run_pending(demo_app) >= 1
    expect(page.get_by_text(REPORT_READY)).to_be_visible()
    expect(progress).to_have_count(0)
    assert_no_page_load(page)
    with page.expect_download() as background_info:
        page.get_by_role("link", name="Download the report (PDF)").click()
    assert Path(background_info.value.path()).read_bytes().startswith(b"%PDF")


def test_report_progress_without_javascript(
    new_context: Callable[..., BrowserContext], auditor: Person, demo_app: Flask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reports, "BACKGROUND_ABOVE", 0)
    page = new_context(java_script_enabled=False).new_page()
    open_reports(page, auditor)
    ask_for_report(page)
    expect(page.get_by_role("progressbar", name="Progress of the report")).to_be_visible()
    # Chromium with scripts turned off by Playwright reads <noscript> but does not draw
    # it (a browser whose user turned JavaScript off does), and Playwright's text
    # locators skip it: the note is read from the page's text instead.
    note = page.get_by_role("main").locator("noscript")
    assert "This page reloads by itself every few seconds." in (note.text_content() or "")
    refresh = page.locator('meta[http-equiv="refresh"]')
    expect(refresh).to_have_attribute("content", "3")

    # The page reloads itself until the report is there.
    assert jobs.run_pending(demo_app) >= 1
    expect(page.get_by_text(REPORT_READY)).to_be_visible(timeout=10_000)
    expect(refresh).to_have_count(0)
    with page.expect_download() as report_info:
        page.get_by_role("link", name="Download the report (PDF)").click()
    assert Path(report_info.value.path()).read_bytes().startswith(b"%PDF")
