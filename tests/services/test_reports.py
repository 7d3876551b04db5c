"""Audit reports: the portal's PDF and ``amply-verify report`` on the same export say the
same, and what they say matches the ledger (read back from the PDF with pdftotext)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from flask import Flask

from amply_verify import report as audit
from amply_verify.note import Signer
from portal import jobs
from portal.extensions import db
from portal.ids import new_id
from portal.models import Fund, Organisation
from portal.services import checkpoints, ledger, ledger_export, reports
from portal.services.errors import DomainError

pytestmark = pytest.mark.usefixtures("app", "signing_key")
MOMENT = datetime(2031, 9, 1, 20, 0, tzinfo=UTC)


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout


def section(text: str, start: str, end: str) -> str:
    """The text from the heading ``start`` to the heading ``end`` (headings on lines of their
    own)."""
    begin = re.search(rf"^\s*{re.escape(start)}\s*$", text, re.MULTILINE)
    assert begin is not None, start
    finish = re.search(rf"^\s*{re.escape(end)}\s*$", text[begin.end():], re.MULTILINE)
    assert finish is not None, end
    return text[begin.start():begin.end() + finish.start()]


def without_page_furniture(text: str) -> str:
    """The text minus page footers, the cover's generation time and the column spacing
    (pdftotext aligns columns per page, and what else is on the page varies)."""
    lines = [line for line in text.splitlines()
             if not re.search(r"Page \d+ of \d+", line) and "Generated" not in line]
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


def a_year_of_books(create_org: Callable[..., Organisation]) -> Organisation:
    org = create_org(name="Willow Shelter <script>alert(1)</script>")
    restricted = Fund(id=new_id("fund"), organisation_id=org.id, name="Roof Appeal",
                      type="restricted")
    db.session.add(restricted)
    db.session.flush()
    gift = ledger.append_entry(org.id, "donation_received", 50_000, "EUR",
                               {"donor_name": "Ada", "fund_id": restricted.id})
    ledger.append_entry(org.id, "fee", -750, "EUR", {"description": "Card fee"})
    roof = ledger.append_entry(org.id, "expense", -12_000, "EUR",
                               {"category": "repairs", "payee": "Roofers Ltd",
                                "fund_id": restricted.id})
    ledger.append_entry(org.id, "expense", -3_000, "EUR",
                        {"category": "salaries", "payee": "Staff",
                         "visibility": "public_aggregated"})
    ledger.append_entry(org.id, "donation_received", 2_000, "USD", {"donor_name": "Bo"})
    db.session.commit()
    ledger.recategorize_expense(org.id, roof.entry_id, "maintenance", reason="Roof is upkeep")
    ledger.reverse_entry(org.id, gift.entry_id, reason="Charged twice")
    ledger.append_entry(org.id, "donation_received", 50_000, "EUR",
                        {"donor_name": "Ada", "fund_id": restricted.id})
    db.session.commit()
    return org


def test_the_portal_and_the_verifier_print_the_same_figures(
    app: Flask, create_org: Callable[..., Organisation], signing_key: Signer, tmp_path: Path
) -> None:
    org = a_year_of_books(create_org)
    made = checkpoints.create_checkpoint(MOMENT).checkpoint
    period = audit.Period(None, date(2099, 12, 31))
    portal_pdf = reports.build_pdf(org.id, period, "auditor", tmp_path / "portal.pdf")
    assert portal_pdf.pages >= 2
    assert portal_pdf.download_name.endswith("-audit-2099-12-31.pdf")

    export = tmp_path / "audit.json"
    with export.open("wb") as out:
        for chunk in ledger_export.export_chunks(org, "auditor"):
            out.write(chunk)
    document = tmp_path / "checkpoint.json"
    document.write_text(json.dumps(checkpoints.get_document(made.id)))
    key = tmp_path / "key.txt"
    key.write_text(f"{signing_key.verifier}\n")
    verifier_pdf = tmp_path / "verifier.pdf"
    done = subprocess.run(
        [sys.executable, "-m", "amply_verify.cli", "report", str(export), "--to", "2099-12-31",
         "--checkpoint", str(document), "--public-key", str(key), "--output",
         str(verifier_pdf)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

    ours, theirs = pdf_text(portal_pdf.path), pdf_text(verifier_pdf)
    for start, end in (("Summary", "Funds"), ("Funds", "Verification"),
                       ("Corrections", "Entries")):
        assert without_page_furniture(section(ours, start, end)) == \
            without_page_furniture(section(theirs, start, end))
    cover = section(ours, "Reproduce these figures", "Summary")
    assert "amply-verify report" in cover and made.id in cover and "--to 2099-12-31" in cover

    # The figures are the ledger's: EUR 500 + 500 - 500 (reversed) - 7.50 - 120 - 30.
    balances = ledger.balances(org.id)
    assert balances == {"EUR": 34_250, "USD": 2_000}
    summary = section(ours, "Summary", "Funds")
    assert re.search(r"Closing balance\s+€342\.50", summary)
    assert re.search(r"Closing balance\s+\$20\.00", summary)
    assert re.search(r"Money out during the period\s+€657\.50", summary)
    categories = summary.split("Spending by category")[1]
    assert re.search(r"maintenance\s+€120\.00", categories) and "repairs" not in categories
    # The restricted fund: raised 500 + 500 - 500, spent 120 on the roof, 380 left.
    funds = section(ours, "Funds", "Verification")
    assert re.search(r"Roof\s+restricted\s+EUR\s+€500\.00\s+€120\.00\s+€500\.00\s+€120\.00"
                     r"\s+€380\.00", funds)
    corrections = section(ours, "Corrections", "Entries")
    assert "recategorization" in corrections and "repairs →" in corrections
    assert re.search(r"reversal .*Charged twice\s+-€500\.00", corrections)
    verification = section(ours, "Verification", "Corrections")
    assert "matches the root of the export's first 8 entries" in verification
    assert re.search(r"Signed totals\s+match the export", verification)
    # The organisation's name is shown as text, wherever it appears.
    assert ours.count("Willow Shelter <script>alert(1)</script>") >= 3
    assert "&lt;" not in ours


def test_a_public_report_says_what_it_cannot_show(
    create_org: Callable[..., Organisation], tmp_path: Path
) -> None:
    org = a_year_of_books(create_org)
    checkpoints.create_checkpoint(MOMENT)
    made = reports.build_pdf(org.id, audit.Period(), "public", tmp_path / "public.pdf")
    text = pdf_text(made.path)
    assert "the public export: 1 entries redacted" in text
    assert "not checkable from this export (entries are redacted)" in text
    assert made.download_name.endswith("-public.pdf")


def test_a_report_without_a_checkpoint_says_so(
    create_org: Callable[..., Organisation], tmp_path: Path
) -> None:
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 100, "EUR", {})
    db.session.commit()
    text = pdf_text(reports.build_pdf(org.id, audit.Period(), "auditor",
                                      tmp_path / "r.pdf").path)
    assert "not bound to a signed checkpoint" in text


def test_a_large_period_is_summarised_and_attached(
    create_org: Callable[..., Organisation], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "LISTING_LIMIT", 5)
    org = create_org()
    for i in range(8):
        ledger.append_entry(org.id, "donation_received", 100 + i, "EUR", {"donor_name": "X"})
    db.session.commit()
    made = reports.build_pdf(org.id, audit.Period(), "auditor", tmp_path / "big.pdf")
    text = " ".join(pdf_text(made.path).split())
    assert "The period has 8 entries, more than the 5 this document lists one by one" in text
    assert "summarised by month" in text
    assert re.search(r"\d{4}-\d{2} EUR 8 €8\.28 €0\.00", text)
    listed = subprocess.run(["pdfdetach", "-list", str(made.path)], capture_output=True,
                            text=True, check=True).stdout
    assert "listing.csv" in listed and "listing.jsonl" in listed
    subprocess.run(["pdfdetach", "-saveall", "-o", str(tmp_path), str(made.path)], check=True)
    rows = (tmp_path / "listing.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("sequence,timestamp")


def test_bad_periods_are_refused() -> None:
    with pytest.raises(DomainError, match="not a date"):
        reports.parse_period("2031-13-01", None)
    with pytest.raises(DomainError, match="ends before it starts"):
        reports.parse_period("2031-05-01", "2031-04-01")


def test_reports_fetch_nothing_from_outside() -> None:
    with pytest.raises(ValueError, match="does not load outside resources"):
        audit._refuse_fetch("http://example.com/tracker.png")


def test_a_report_built_in_the_background(
    app: Flask, create_org: Callable[..., Organisation]
) -> None:
    from portal.extensions import redis_store

    redis_store.client().delete(jobs.QUEUE)
    org = create_org()
    ledger.append_entry(org.id, "donation_received", 100, "EUR", {})
    db.session.commit()
    job = reports.start_background(org.id, audit.Period(), "auditor", "usr_someone")
    jobs.run_pending(app)
    done = reports.background_job(job.id, org.id)
    assert done.status == "done", done.message
    made = reports.background_file(done)
    assert made.path.read_bytes().startswith(b"%PDF") and made.pages >= 1
    with pytest.raises(reports.ReportNotFound):
        reports.background_job(job.id, "org_other")
    with pytest.raises(reports.ReportNotFound):
        reports.background_job("job_unknown", org.id)
    queued = reports.start_background(org.id, audit.Period(), "auditor", "usr_someone")
    with pytest.raises(reports.ReportNotReady):
        reports.background_file(reports.background_job(queued.id, org.id))
    redis_store.client().delete(jobs.QUEUE)
