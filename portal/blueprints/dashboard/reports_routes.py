"""Audit reports (PDF) and the ledger's exports, for the roles that may download them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flask import Response, g, redirect, url_for
from flask_login import current_user

from amply_verify.report import Period
from portal.blueprints.dashboard import bp
from portal.blueprints.dashboard.access import for_members, member_may
from portal.blueprints.dashboard.forms import ReportForm
from portal.services import checkpoints, ledger, ledger_export, reports
from portal.web import attachment_response, render, stream


def _context() -> dict[str, Any]:
    organisation_id = str(g.organisation.id)
    return {"entry_count": ledger.get_head(organisation_id).sequence,
            "background_above": reports.BACKGROUND_ABOVE,
            "checkpoint": checkpoints.latest_line(organisation_id),
            "may_export": member_may("export")}


@bp.route("/<org>/reports", methods=["GET", "POST"])
@for_members("download_reports")
def reports_page(org: str) -> Response:
    """The report form; a small ledger's report comes back at once, a large one is built
    in the background and followed on its own page."""
    form = ReportForm()
    if not form.validate_on_submit():
        status = 422 if form.is_submitted() else 200
        return render("dashboard/reports.html", "report_form", status=status, form=form,
                      **_context())
    organisation_id = str(g.organisation.id)
    period = Period(form.period_from.data, form.period_to.data)
    audience = str(form.audience.data)
    if reports.needs_background(organisation_id):
        job = reports.start_background(organisation_id, period, audience, current_user.id)
        target = url_for(".report_job", org=org, job_id=job.id)
        return redirect(target, 303)  # type: ignore[return-value]
    folder = Path(tempfile.mkdtemp(prefix="amply-report-"))
    made = reports.build_pdf(organisation_id, period, audience, folder / "report.pdf")
    response = attachment_response(made.path, "application/pdf", made.download_name)
    response.call_on_close(lambda: reports.discard(folder))
    return response


@bp.get("/<org>/reports/jobs/<job_id>")
@for_members("download_reports")
def report_job(org: str, job_id: str) -> Response:
    """A report being built: its progress (polled by htmx), then its download."""
    job = reports.background_job(job_id, str(g.organisation.id))
    return render("dashboard/report_job.html", "report_status", job=job)


@bp.get("/<org>/reports/jobs/<job_id>/download")
@for_members("download_reports")
def report_download(org: str, job_id: str) -> Response:
    made = reports.background_file(reports.background_job(job_id, str(g.organisation.id)))
    return attachment_response(made.path, "application/pdf", made.download_name)


@bp.get("/<org>/exports/<audience>.json")
@for_members("export")
def export(org: str, audience: str) -> Response:
    """The ledger export: ``public`` (as anyone can download it) or ``auditor`` (every
    entry in full, with running balances: confidential)."""
    if audience not in ledger_export.AUDIENCES or (
            audience == "auditor" and not member_may("view_internal")):
        return render("errors/error.html", "error", status=404, status_code=404,
                      title="Page not found", message="There is no such export.")
    chunks = ledger_export.export_chunks(g.organisation, audience)
    response = Response(stream(chunks), mimetype="application/json")
    suffix = "-auditor" if audience == "auditor" else ""
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{g.organisation.slug}-ledger{suffix}.json"')
    response.headers["Cache-Control"] = "private, no-store"
    return response
