"""The audit report: an organisation's figures for a period, computed from an export alone.

The portal builds its reports by streaming its own export through this module, and
``amply-verify report`` runs the same code on a downloaded export, so the two give
the same figures by construction. Everything is computed in one pass, in memory
bounded by the period's listing (at most ``LISTING_LIMIT`` rows are kept; larger
periods are summarised by month, and their full listing is written to CSV and JSON
files attached inside the PDF).

Rendering needs Jinja2, WeasyPrint and Babel (installed with the portal); the figures
themselves are plain Python.
"""

from __future__ import annotations

import base64
import csv
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from amply_verify import checkpoint as formats
from amply_verify.chain import ChainBroken, ChainChecker
from amply_verify.export import ExportError, ExportHeader, open_export

LISTING_LIMIT = 1_000
#: A fund's money raised: gifts net of their refunds, reversals and disputes.
DONATION_TYPES = frozenset({"donation_received", "refund_issued", "donation_reversed",
                            "dispute_opened", "dispute_won"})


class RenderingUnavailable(RuntimeError):
    """WeasyPrint or its system libraries are missing."""


@dataclass(frozen=True)
class Period:
    start: date | None = None
    end: date | None = None

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> Period:
        def day(text: str | None, name: str) -> date | None:
            if not text:
                return None
            try:
                return date.fromisoformat(text)
            except ValueError as exc:
                raise ValueError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from exc

        period = cls(day(start, "--from"), day(end, "--to"))
        if period.start and period.end and period.start > period.end:
            raise ValueError("the period ends before it starts")
        return period

    def place(self, timestamp: str) -> int:
        """-1 before the period, 0 in it, 1 after it (timestamps are ISO UTC strings)."""
        day = timestamp[:10]
        if self.start and day < self.start.isoformat():
            return -1
        if self.end and day > self.end.isoformat():
            return 1
        return 0

    @property
    def label(self) -> str:
        if not (self.start or self.end):
            return "the whole ledger"
        start = self.start.isoformat() if self.start else "the first entry"
        end = self.end.isoformat() if self.end else "the last entry"
        return f"{start} to {end}"

    def arguments(self) -> str:
        parts = []
        if self.start:
            parts.append(f"--from {self.start.isoformat()}")
        if self.end:
            parts.append(f"--to {self.end.isoformat()}")
        return " ".join(parts)


@dataclass
class CurrencySummary:
    currency: str
    opening: int = 0
    income_by_type: dict[str, int] = field(default_factory=dict)
    spending_by_type: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    entries: int = 0

    @property
    def income(self) -> int:
        return sum(self.income_by_type.values())

    @property
    def spending(self) -> int:
        return sum(self.spending_by_type.values())

    @property
    def closing(self) -> int:
        return self.opening + self.income - self.spending

    def spending_by_category(self) -> list[tuple[str, int]]:
        return sorted(((c, a) for c, a in self.categories.items() if a),
                      key=lambda item: (-item[1], item[0]))


@dataclass
class FundSummary:
    id: str
    name: str
    type: str
    currency_figures: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, currency: str, entry_type: str, amount: int, in_period: bool) -> None:
        """Gifts and their corrections (refunds, reversals, disputes) count as raised;
        everything else that leaves the fund counts as spent."""
        figures = self.currency_figures.setdefault(
            currency, {"raised": 0, "spent": 0, "raised_to_date": 0, "spent_to_date": 0})
        if entry_type in DONATION_TYPES or amount > 0:
            key, value = "raised", amount
        else:
            key, value = "spent", -amount
        figures[f"{key}_to_date"] += value
        if in_period:
            figures[key] += value


@dataclass(frozen=True)
class Correction:
    sequence: int
    timestamp: str
    kind: str
    target: str
    detail: str
    amount: int
    currency: str


@dataclass(frozen=True)
class ListingRow:
    sequence: int
    timestamp: str
    type: str
    amount: int | None
    currency: str
    category: str
    fund: str
    description: str
    visibility: str
    entry_hash: str


@dataclass
class Verification:
    chain_valid: bool = True
    chain_problem: str = ""
    entry_count: int = 0
    head_hash: str | None = None
    root: str = ""
    unsupported: int = 0
    checkpoint_id: str | None = None
    checkpoint_timestamp: str | None = None
    checkpoint_key: str | None = None
    tree_size: int | None = None
    checkpoint_root: str | None = None
    root_matches: bool | None = None
    totals_match: bool | None = None
    consistency: str = "not checked"


@dataclass
class Report:
    organisation: dict[str, Any]
    audience: str
    period: Period
    generated_at: str
    portal: dict[str, Any]
    currencies: dict[str, CurrencySummary] = field(default_factory=dict)
    funds: dict[str, FundSummary] = field(default_factory=dict)
    corrections: list[Correction] = field(default_factory=list)
    listing: list[ListingRow] = field(default_factory=list)
    listing_count: int = 0
    monthly: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    redacted_in_period: int = 0
    redacted_undated: int = 0
    covered: int = 0
    beyond_checkpoint: int = 0
    verification: Verification = field(default_factory=Verification)
    attachments: list[tuple[str, Path, str]] = field(default_factory=list)

    @property
    def summarised(self) -> bool:
        return self.listing_count > LISTING_LIMIT

    def summary_line(self) -> str:
        state = "chain valid" if self.verification.chain_valid else "chain INVALID"
        figures = "; ".join(
            f"{c.currency} opening {c.opening:,}, closing {c.closing:,}"
            for c in self.currencies.values()) or "no disclosed amounts"
        return f"{self.listing_count:,} entries in the period, {state}; {figures} (minor units)"

    def reproduce_command(self, export_name: str) -> str:
        parts = ["amply-verify report", export_name]
        if self.period.arguments():
            parts.append(self.period.arguments())
        if self.verification.checkpoint_id:
            parts.append(f"--checkpoint {self.verification.checkpoint_id}")
        parts.append("--output audit.pdf")
        return " ".join(parts)


def _description(metadata: dict[str, Any]) -> str:
    for key in ("payee", "donor_name", "description", "reason", "counterparty_name"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


class _Builder:
    def __init__(self, header: ExportHeader, period: Period, limit: int | None,
                 scratch: Path) -> None:
        self.header, self.period, self.limit = header, period, limit
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.report = Report(dict(header.organisation), header.audience, period, now,
                             dict(header.raw.get("portal") or {}))
        self.expenses: dict[str, tuple[int, str, str]] = {}  # in-period expenses, for moves
        for fund_id, fund in header.funds.items():
            self.report.funds[fund_id] = FundSummary(fund_id, str(fund.get("name", fund_id)),
                                                     str(fund.get("type", "")))
        self.csv_path = scratch / "listing.csv"
        self.json_path = scratch / "listing.jsonl"
        self._csv_file: IO[str] = self.csv_path.open("w", newline="", encoding="utf-8")
        self._json_file: IO[str] = self.json_path.open("w", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["sequence", "timestamp", "type", "amount_minor_units", "currency",
                            "category", "fund", "description", "visibility", "entry_hash"])

    def close(self) -> None:
        self._csv_file.close()
        self._json_file.close()

    def add(self, record: dict[str, Any]) -> None:
        report = self.report
        sequence = record.get("sequence")
        if not isinstance(sequence, int):
            return
        if self.limit is not None and sequence > self.limit:
            report.beyond_checkpoint += 1
            return
        report.covered = sequence
        timestamp = record.get("timestamp")
        if record.get("redacted"):
            if not isinstance(timestamp, str):
                report.redacted_undated += 1
            elif self.period.place(timestamp) == 0:
                report.redacted_in_period += 1
                self._list(record, None)
            return
        if not isinstance(timestamp, str):
            return
        place = self.period.place(timestamp)
        amount, currency = int(record["amount"]), str(record["currency"]).upper()
        metadata = record.get("metadata") or {}
        figures = report.currencies.setdefault(currency, CurrencySummary(currency))
        fund = report.funds.get(str(metadata.get("fund_id", "")))
        if fund is not None and place <= 0:
            fund.add(currency, str(record["type"]), amount, place == 0)
        if place < 0:
            figures.opening += amount
            return
        if place > 0:
            return
        self._count(figures, record, amount, metadata)
        self._list(record, amount)

    def _count(self, figures: CurrencySummary, record: dict[str, Any], amount: int,
               metadata: dict[str, Any]) -> None:
        entry_type = str(record["type"])
        figures.entries += 1
        if amount > 0:
            figures.income_by_type[entry_type] = figures.income_by_type.get(entry_type, 0) + amount
        elif amount < 0:
            figures.spending_by_type[entry_type] = (
                figures.spending_by_type.get(entry_type, 0) - amount)
        category = str(metadata.get("category") or "")
        if entry_type == "expense":
            category = category or "uncategorised"
            self.expenses[str(record.get("entry_id"))] = (-amount, figures.currency, category)
        elif entry_type == "fee":
            category = category or "payment-fees"
        elif entry_type == "transfer_out":
            category = "transfers-out"
        if (category and amount < 0) or (entry_type == "adjustment" and category):
            figures.categories[category] = figures.categories.get(category, 0) - amount
        self._correction(figures, record, amount, metadata)

    def _correction(self, figures: CurrencySummary, record: dict[str, Any], amount: int,
                    metadata: dict[str, Any]) -> None:
        report = self.report
        if "reverses" in metadata:
            report.corrections.append(Correction(
                record["sequence"], record["timestamp"], "reversal", str(metadata["reverses"]),
                str(metadata.get("reason", "")), amount, figures.currency))
        elif record["type"] == "expense_recategorized":
            target = str(metadata.get("refers_to", ""))
            old, new = str(metadata.get("old_category", "")), str(metadata.get("new_category", ""))
            moved = self.expenses.get(target)
            if moved is not None and moved[1] == figures.currency:
                figures.categories[old] = figures.categories.get(old, 0) - moved[0]
                figures.categories[new] = figures.categories.get(new, 0) + moved[0]
                self.expenses[target] = (moved[0], moved[1], new)
            report.corrections.append(Correction(
                record["sequence"], record["timestamp"], "recategorization", target,
                f"{old} \u2192 {new}", moved[0] if moved else 0, figures.currency))

    def _list(self, record: dict[str, Any], amount: int | None) -> None:
        report = self.report
        metadata = record.get("metadata") or {}
        fund_id = str(metadata.get("fund_id", ""))
        fund = report.funds.get(fund_id)
        row = ListingRow(
            int(record["sequence"]), str(record.get("timestamp", "")),
            str(record.get("type", "")), amount,
            str(record.get("currency", "")).upper(), str(metadata.get("category") or
                                                         record.get("category") or ""),
            fund.name if fund else fund_id, _description(metadata),
            str(record.get("visibility", metadata.get("visibility", "public_full"))),
            str(record.get("entry_hash", "")))
        report.listing_count += 1
        if len(report.listing) < LISTING_LIMIT + 1:
            report.listing.append(row)
        month = (row.timestamp[:7], row.currency or "(redacted)")
        bucket = report.monthly.setdefault(month, {"entries": 0, "in": 0, "out": 0})
        bucket["entries"] += 1
        if amount is not None:
            bucket["in" if amount > 0 else "out"] += abs(amount)
        self._csv.writerow([row.sequence, row.timestamp, row.type,
                            "" if amount is None else amount, row.currency, row.category,
                            row.fund, row.description, row.visibility, row.entry_hash])
        self._json_file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
        self._json_file.write("\n")


ConsistencyCheck = Callable[[dict[str, Any], str], str]


def consistency_text(
    document: dict[str, Any],
    organisation_id: str,
    previous: dict[str, Any] | None,
    proof_for: Callable[[int, int], list[bytes]],
) -> str:
    """The report's line on consistency with the previous checkpoint.

    ``previous`` is the previous checkpoint's document (signature already checked) and
    ``proof_for(m, n)`` fetches a consistency proof; the portal and the verifier pass
    their own, so both reports say the same.
    """
    from amply_verify import merkle

    previous_id = document.get("previous_checkpoint_id")
    if not previous_id or previous is None:
        return "first checkpoint of the portal: nothing earlier to compare"
    try:
        earlier = formats.summary_for(previous, organisation_id)
    except formats.CheckpointError:
        return f"first checkpoint of this ledger ({previous_id} did not include it)"
    later = formats.summary_for(document, organisation_id)
    m, n = int(earlier["tree_size"]), int(later["tree_size"])
    try:
        merkle.verify_consistency(m, n, base64.b64decode(earlier["root_hash"]),
                                  base64.b64decode(later["root_hash"]), proof_for(m, n))
    except merkle.ProofError as exc:
        return f"FAILED against {previous_id}: {exc}"
    return f"valid: extends {previous_id} ({m:,} \u2192 {n:,} entries)"


def build(
    header: ExportHeader,
    records: Iterable[dict[str, Any]],
    *,
    period: Period,
    checkpoint: dict[str, Any] | None = None,
    consistency: ConsistencyCheck | None = None,
    scratch: Path,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """The report of ``records`` (one export, in order), bound to ``checkpoint`` if given.

    ``checkpoint`` must already be verified (signature); its line for the organisation
    limits the report to the entries it covers. ``consistency(document, organisation_id)``
    describes the check against the previous checkpoint, when the caller can make it.
    """
    summary = formats.summary_for(checkpoint, header.organisation_id) if checkpoint else None
    limit = int(summary["tree_size"]) if summary else None
    builder = _Builder(header, period, limit, scratch)
    checker = ChainChecker(header, snapshot_at=limit)
    verification = builder.report.verification
    try:
        for record in records:
            if verification.chain_valid:
                try:
                    checker.add(record)
                except ChainBroken as exc:
                    verification.chain_valid, verification.chain_problem = False, str(exc)
            builder.add(record)
            if progress is not None:
                progress(1)
    finally:
        builder.close()
    if verification.chain_valid:
        try:
            result = checker.finish()
        except ChainBroken as exc:
            verification.chain_valid, verification.chain_problem = False, str(exc)
        else:
            verification.entry_count, verification.head_hash = result.entry_count, result.head_hash
            verification.root = base64.b64encode(result.root).decode()
            verification.unsupported = len(result.unsupported)
            _bind(verification, checkpoint, summary, result.snapshot)
    if checkpoint is not None and consistency is not None:
        verification.consistency = consistency(checkpoint, header.organisation_id)
    report = builder.report
    report.attachments = [
        ("listing.csv", builder.csv_path, "Every entry of the period, one per row (CSV)"),
        ("listing.jsonl", builder.json_path,
         "Every entry of the period as exported, one JSON object per line"),
    ]
    return report


def _bind(verification: Verification, checkpoint: dict[str, Any] | None,
          summary: dict[str, Any] | None, snapshot: Any) -> None:
    if checkpoint is None or summary is None:
        return
    verification.checkpoint_id = checkpoint["checkpoint_id"]
    verification.checkpoint_timestamp = checkpoint.get("timestamp")
    verification.checkpoint_key = checkpoint.get("verifier_key")
    verification.tree_size = int(summary["tree_size"])
    verification.checkpoint_root = summary["root_hash"]
    if snapshot is None:
        verification.root_matches = False
        return
    verification.root_matches = (base64.b64encode(snapshot.root).decode()
                                 == summary["root_hash"]
                                 and snapshot.head_hash == summary.get("head_hash"))
    if not snapshot.redacted:
        verification.totals_match = snapshot.totals == summary.get("totals")


def build_from_export(
    path: str | Path,
    *,
    period: Period,
    checkpoint: dict[str, Any] | None = None,
    consistency: ConsistencyCheck | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    stream, reader = open_export(path)
    scratch = Path(tempfile.mkdtemp(prefix="amply-report-"))
    with stream:
        return build(reader.header, reader.records(), period=period, checkpoint=checkpoint,
                     consistency=consistency, scratch=scratch, progress=progress)


# --------------------------------------------------------------------------- PDF


def _refuse_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The report is self-contained: WeasyPrint may not fetch anything."""
    raise ValueError(f"the audit report does not load outside resources ({url})")


def _format_money(amount: int | None, currency: str) -> str:
    if amount is None or not currency:
        return "\u2014"
    try:
        from portal.money import format_money

        return format_money(amount, currency, "en")
    except (ImportError, KeyError, ValueError):
        return f"{amount:,} {currency} (minor units)"


def render_html(report: Report, *, export_name: str = "ledger.json") -> str:
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - installed with the portal
        raise RenderingUnavailable("the report needs Jinja2 (pip install jinja2)") from exc
    from amply_verify.charts import bar_chart

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("amply_verify", "templates"),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    environment.filters["money"] = _format_money
    def money_in(currency: str) -> Callable[[int], str]:
        return lambda value: _format_money(value, currency)

    charts = {
        currency: bar_chart(figures.spending_by_category(),
                            title=f"Spending by category ({currency})",
                            value_label=money_in(currency), chart_id=f"spending-{currency}")
        for currency, figures in report.currencies.items()
    }
    template = environment.get_template("audit_report.html")
    return template.render(report=report, charts=charts,
                           reproduce=report.reproduce_command(export_name),
                           listing=report.listing[:LISTING_LIMIT],
                           monthly=sorted(report.monthly.items()),
                           limit=LISTING_LIMIT)


def write_pdf(report: Report, target: Path, *, export_name: str = "ledger.json") -> int:
    """Render the report to ``target``; return its number of pages."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise RenderingUnavailable(
            f"PDF rendering needs WeasyPrint and its system libraries (Pango): {exc}") from exc
    html = render_html(report, export_name=export_name)
    document = weasyprint.HTML(string=html, url_fetcher=_refuse_fetch).render()
    attachments = []
    files: list[IO[bytes]] = []
    try:
        if report.summarised:
            for name, path, description in report.attachments:
                handle: IO[bytes] = path.open("rb")
                files.append(handle)
                attachments.append(weasyprint.Attachment(file_obj=handle, name=name,
                                                         description=description))
        target.parent.mkdir(parents=True, exist_ok=True)
        document.write_pdf(target, attachments=attachments, pdf_tags=True)
    finally:
        for handle in files:
            handle.close()
    return len(document.pages)


__all__ = ["ExportError", "Period", "RenderingUnavailable", "Report", "build",
           "build_from_export", "render_html", "write_pdf"]
