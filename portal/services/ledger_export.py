"""The JSON export of one organisation's ledger (format: docs/ledger-spec.md).

The document is produced as a stream of text chunks, one entry per line, so a
million-entry ledger is written (to a file or an HTTP response) in flat memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Literal

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


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
) -> Iterator[str]:
    """Yield the export document piece by piece; joined, the pieces are valid JSON.

    The head is read first and entries are streamed up to it, so the document is a
    consistent picture even while new entries are being appended.
    """
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    head = ledger.get_head(organisation.id)
    header = export_header(organisation, audience, head)
    opening = _dumps(header)
    yield opening[:-1] + ',"entries":[\n'
    now = ledger.utc_timestamp()
    first = True
    count = 0
    for count, entry in enumerate(
        ledger.iter_entries(organisation.id, up_to_sequence=head.sequence), start=1
    ):
        record = (full_record(entry, with_balance=True) if audience == "auditor"
                  else public_record(entry, now))
        yield ("" if first else ",\n") + _dumps(record)
        first = False
        if progress is not None and count % 1000 == 0:
            progress(1000)
    if progress is not None and count % 1000:
        progress(count % 1000)
    yield "\n]}\n"
