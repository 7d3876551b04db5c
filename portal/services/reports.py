"""Audit reports (PDF): an organisation's figures for a period, bound to its newest checkpoint.

The report is built by streaming the organisation's own export (auditor or public)
through ``amply_verify.report``, the code ``amply-verify report`` runs, so anyone
holding the same export gets the same figures. Reports of large ledgers are built
by a background job (``reports.build``) whose progress the dashboard polls.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from flask import current_app

from amply_verify import checkpoint as formats
from amply_verify import report as audit
from amply_verify.note import Verifier
from portal import jobs
from portal.extensions import db
from portal.models import Organisation
from portal.services import checkpoints, ledger, ledger_export
from portal.services import merkle as trees
from portal.services.errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)

#: Ledgers with more entries than this get their report built in the background.
BACKGROUND_ABOVE = 5_000
AUDIENCES = ("auditor", "public")
_SAFE_NAME = re.compile(r"[^a-z0-9-]+")


class ReportNotFound(NotFound):
    """No such report (or not this organisation's)."""


class ReportNotReady(Conflict):
    """The report is still being built."""


@dataclass(frozen=True)
class ReportFile:
    path: Path
    download_name: str
    pages: int


def parse_period(start: str | None, end: str | None) -> audit.Period:
    try:
        return audit.Period.parse(start or None, end or None)
    except ValueError as exc:
        raise DomainError(str(exc).replace("--from", "the first day")
                          .replace("--to", "the last day"), field="period") from exc


def download_name(organisation: Organisation, period: audit.Period, audience: str) -> str:
    label = "-".join(p.isoformat() for p in (period.start, period.end) if p) or "all"
    slug = _SAFE_NAME.sub("-", organisation.slug.lower())
    suffix = "" if audience == "auditor" else "-public"
    return f"{slug}-audit-{label}{suffix}.pdf"


def needs_background(organisation_id: str) -> bool:
    return ledger.get_head(organisation_id).sequence > BACKGROUND_ABOVE


def _checkpoint_for(organisation_id: str) -> dict[str, Any] | None:
    """The newest checkpoint with a line for the organisation, its signature checked."""
    line = checkpoints.latest_line(organisation_id)
    if line is None:
        return None
    document = checkpoints.get_document(line.checkpoint_id)
    formats.verify_document(document, Verifier.parse(document["verifier_key"]))
    return document


def _consistency(document: dict[str, Any], organisation_id: str) -> str:
    previous_id = document.get("previous_checkpoint_id")
    previous = checkpoints.get_document(previous_id) if previous_id else None
    if previous is not None:
        formats.verify_document(previous, Verifier.parse(previous["verifier_key"]))

    def proof_for(m: int, n: int) -> list[bytes]:
        return trees.consistency_proof(organisation_id, m, n).path

    return audit.consistency_text(document, organisation_id, previous, proof_for)


def build_pdf(
    organisation_id: str,
    period: audit.Period,
    audience: str,
    target: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> ReportFile:
    """Export the ledger, compute the report from the export, and render it to ``target``."""
    if audience not in AUDIENCES:
        raise DomainError(f"unknown audience {audience!r}", field="audience")
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise ReportNotFound("no such organisation")
    scratch = Path(tempfile.mkdtemp(prefix="amply-report-"))
    try:
        export_path = scratch / f"{organisation.slug}-{audience}.json"
        with export_path.open("wb") as out:
            for chunk in ledger_export.export_chunks(organisation, audience):  # type: ignore[arg-type]
                out.write(chunk)
        document = _checkpoint_for(organisation.id)
        built = audit.build_from_export(export_path, period=period, checkpoint=document,
                                        consistency=_consistency, progress=progress)
        pages = audit.write_pdf(built, target, export_name=f"{organisation.slug}-ledger.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ReportFile(target, download_name(organisation, period, audience), pages)


# ------------------------------------------------------------------- in the background


def reports_folder() -> Path:
    configured = current_app.config.get("REPORTS_FOLDER") or ""
    folder = Path(configured) if configured else Path(current_app.instance_path) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_background(organisation_id: str, period: audit.Period, audience: str,
                     user_id: str) -> jobs.Job:
    return jobs.enqueue("reports.build", {
        "organisation_id": organisation_id, "audience": audience,
        "start": period.start.isoformat() if period.start else None,
        "end": period.end.isoformat() if period.end else None,
    }, owner=user_id)


def background_job(job_id: str, organisation_id: str) -> jobs.Job:
    """A report job of this organisation (any member who may download reports may follow
    it); anything else is not found."""
    try:
        job = jobs.get(job_id)
    except jobs.JobNotFound as exc:
        raise ReportNotFound("no such report") from exc
    if job.kind != "reports.build" or job.params.get("organisation_id") != organisation_id:
        raise ReportNotFound("no such report")
    return job


def discard(folder: Path) -> None:
    """Remove a report built for one download, once it has been sent."""
    shutil.rmtree(folder, ignore_errors=True)


def background_file(job: jobs.Job) -> ReportFile:
    if job.status == "failed":
        raise ReportNotFound(f"this report could not be built: {job.message}")
    if job.status != "done" or not job.result:
        raise ReportNotReady("this report is still being built; its page shows how far it got")
    path = reports_folder() / f"{job.id}.pdf"
    if not path.exists():
        raise ReportNotFound("this report has been removed; build it again")
    return ReportFile(path, str(job.result["download_name"]), int(job.result["pages"]))


@jobs.handler("reports.build")
def _build_in_background(params: dict[str, Any], progress: jobs.Progress) -> dict[str, Any]:
    organisation_id = str(params["organisation_id"])
    period = audit.Period(
        date.fromisoformat(params["start"]) if params.get("start") else None,
        date.fromisoformat(params["end"]) if params.get("end") else None)
    progress.total(ledger.get_head(organisation_id).sequence)
    progress.message("Reading the ledger and checking every entry")
    job_id = progress.job_id
    target = reports_folder() / f"{job_id}.pdf"
    made = build_pdf(organisation_id, period, str(params["audience"]), target,
                     progress=progress.advance)
    log.info("report %s built: %d pages", job_id, made.pages)
    return {"download_name": made.download_name, "pages": made.pages,
            "size": target.stat().st_size,
            "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
