"""Reading a ledger export (docs/ledger-spec.md, "The JSON export") as a stream.

The export is written one entry per line, so it is read one line at a time: a
million entries take the memory of one. Anything that is not an export of a
version this module knows gives an ``ExportError`` that says what and where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMAT = "amply-ledger-export"
VERSIONS = (1,)
OPENING_TAIL = b',"entries":['
CLOSING = b"]}"

try:  # a faster JSON parser when the portal's dependencies are installed
    import orjson

    _loads: Any = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - the standard library is enough
    _loads = json.loads
    _JSON_ERRORS = (ValueError,)


class ExportError(ValueError):
    """The file is not a complete export this verifier can read."""


@dataclass
class ExportHeader:
    raw: dict[str, Any]
    organisation_id: str
    audience: str
    head_sequence: int
    head_hash: str | None
    base_url: str | None
    funds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def organisation(self) -> dict[str, Any]:
        value = self.raw.get("organisation")
        return value if isinstance(value, dict) else {}


def _header(line: bytes, source: str) -> ExportHeader:
    text = line.rstrip(b"\r\n")
    if not text.endswith(OPENING_TAIL):
        raise ExportError(f"{source}: the first line is not an export header (is this the"
                          " JSON export of an Amply ledger?)")
    try:
        raw = _loads(text[: -len(OPENING_TAIL)] + b"}")
    except _JSON_ERRORS as exc:
        raise ExportError(f"{source}: the header is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ExportError(f"{source}: not an {FORMAT} document")
    if raw.get("version") not in VERSIONS:
        raise ExportError(f"{source}: export version {raw.get('version')!r} is not supported"
                          f" (this verifier reads version {', '.join(map(str, VERSIONS))})")
    organisation, head = raw.get("organisation"), raw.get("head")
    if not isinstance(organisation, dict) or not isinstance(organisation.get("id"), str):
        raise ExportError(f"{source}: the header has no organisation id")
    if (not isinstance(head, dict) or not isinstance(head.get("sequence"), int)
            or isinstance(head.get("sequence"), bool)
            or not (head.get("entry_hash") is None or isinstance(head.get("entry_hash"), str))):
        raise ExportError(f"{source}: the header's head is malformed")
    portal: dict[str, Any] = raw["portal"] if isinstance(raw.get("portal"), dict) else {}
    funds = {fund["id"]: fund for fund in raw.get("funds") or []
             if isinstance(fund, dict) and isinstance(fund.get("id"), str)}
    return ExportHeader(raw, organisation["id"], str(raw.get("audience", "")),
                        head["sequence"], head["entry_hash"], portal.get("base_url"), funds)


class ExportReader:
    """``header`` at once, then ``records()`` one entry at a time, in file order."""

    def __init__(self, stream: IO[bytes], source: str = "the export") -> None:
        self._stream = stream
        self.source = source
        first = stream.readline()
        if not first:
            raise ExportError(f"{source}: the file is empty")
        self.header = _header(first, source)
        self.count = 0

    def records(self) -> Iterator[dict[str, Any]]:
        line_number = 1
        for line in self._stream:
            line_number += 1
            text = line.rstrip(b"\r\n")
            if text == CLOSING:
                if self._stream.read(1).strip():
                    raise ExportError(f"{self.source}: there is data after the end of the"
                                      " document")
                return
            if text.endswith(b","):
                text = text[:-1]
            if not text and self.count == 0:
                continue  # an empty ledger's blank line
            try:
                record = _loads(text)
            except _JSON_ERRORS as exc:
                raise ExportError(f"{self.source}, line {line_number}: not a JSON entry"
                                  f" ({exc}); the file may be cut short or edited") from exc
            if not isinstance(record, dict):
                raise ExportError(f"{self.source}, line {line_number}: an entry is not a"
                                  " JSON object")
            self.count += 1
            yield record
        raise ExportError(f"{self.source}: the file ends after {self.count:,} entries without"
                          " closing the document: it was cut short (download it again)")


def open_export(path: str | Path) -> tuple[IO[bytes], ExportReader]:
    """Open an export file for reading; the caller closes the returned stream."""
    try:
        stream = Path(path).open("rb")  # noqa: SIM115 - returned to the caller, who closes it
    except OSError as exc:
        raise ExportError(f"{path}: {exc.strerror or exc}") from exc
    try:
        return stream, ExportReader(stream, str(path))
    except BaseException:
        stream.close()
        raise
