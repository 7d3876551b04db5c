"""The JSON export of one organisation's ledger (format: docs/ledger-spec.md).

The document is produced as a stream of UTF-8 chunks of about 64 KiB, one entry per
line, so a million-entry ledger is written (to a file or an HTTP response) in flat
memory and without a system call per entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.models import Fund, Organisation
from portal.services import ledger
from portal.services.disclosure import full_record, public_record

FORMAT = "amply-ledger-export"
FORMAT_VERSION = 1
Audience = Literal["public", "auditor"]
AUDIENCES: tuple[Audience, ...] = ("public", "auditor")


CHUNK_BYTES = 64 * 1024


def _dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 (orjson writes what json.dumps(separators=(",", ":"),
    ensure_ascii=False) writes, several times faster)."""
    return orjson.dumps(value)


def export_header(
    organisation: Organisation, audience: Audience, head: ledger.Head
) -> dict[str, Any]:
    funds = db.session.scalars(
        sa.select(Fund).where(Fund.organisation_id == organisation.id).order_by(Fund.created_at)
    )
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "hash_algorithm": "sha256",
        "audience": audience,
        "exported_at": ledger.utc_timestamp(),
        "portal": {
            "name": current_app.config["PORTAL_NAME"],
            "base_url": current_app.config["PUBLIC_BASE_URL"],
        },
        "organisation": {
            "id": organisation.id,
            "slug": organisation.slug,
            "name": organisation.name,
            "legal_name": organisation.legal_name,
            "country": organisation.country,
            "default_currency": organisation.default_currency,
            "website": organisation.website,
        },
        "funds": [
            {"id": fund.id, "name": fund.name, "type": fund.type} for fund in funds
        ],
        "head": {"sequence": head.sequence, "entry_hash": head.entry_hash},
    }


def export_chunks(
    organisation: Organisation,
    audience: Audience = "public",
    *,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Yield the export document piece by piece; joined, the pieces are valid JSON.

    The head is read first and entries are streamed up to it, so the document is a
    consistent picture even while new entries are being appended.
    """
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    head = ledger.get_head(organisation.id)
    opening = _dumps(export_header(organisation, audience, head))
    yield opening[:-1] + b',"entries":[\n'
    now = ledger.utc_timestamp()
    auditor = audience == "auditor"
    buffer: list[bytes] = []
    size = 0
    count = 0
    for count, entry in enumerate(
        ledger.iter_entries(organisation.id, up_to_sequence=head.sequence), start=1
    ):
        record = full_record(entry, with_balance=True) if auditor else public_record(entry, now)
        line = (b"" if count == 1 else b",\n") + _dumps(record)
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
        if progress is not None and count % 1000 == 0:
            progress(1000)
    if progress is not None and count % 1000:
        progress(count % 1000)
    buffer.append(b"\n]}\n")
    yield b"".join(buffer)
