"""Expense receipts: checked by their content, stored once under their SHA-256, served
to members and, once the expense's entry is fully disclosed, to the public.

Only PDF, PNG and JPEG are accepted, recognised by their first bytes: a file's name and
the type the browser declared are checked against the content, never trusted. Files are
named by their digest, so the same receipt uploaded twice is stored once, and the digest
recorded in the ledger entry proves which file belongs to it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from portal.extensions import db
from portal.models import RECEIPT_TYPES, Expense, Organisation
from portal.services import ledger, permissions, tenancy
from portal.services.disclosure import is_disclosed
from portal.services.errors import DomainError, NotFound

#: Magic bytes at the start of each accepted type.
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
EXTENSIONS = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg",
              ".jpeg": "image/jpeg"}
#: What browsers send when they do not know a file's type; the content decides then.
UNSPECIFIED_TYPES = frozenset({"", "application/octet-stream"})
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_MAX = 200
TYPE_NAMES = {"application/pdf": "a PDF", "image/png": "a PNG image",
              "image/jpeg": "a JPEG image"}


class InvalidReceipt(DomainError):
    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message, field="receipt")


class ReceiptNotFound(NotFound):
    pass


@dataclass(frozen=True)
class ReceiptUpload:
    """A checked receipt, ready to store."""

    content: bytes
    sha256: str
    name: str
    mime: str

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class ReceiptFile:
    """A stored receipt, ready to send."""

    path: Path
    mime: str
    download_name: str


def sniff(head: bytes) -> str | None:
    """The accepted type these first bytes belong to, if any."""
    for signature, mime in SIGNATURES:
        if head.startswith(signature):
            return mime
    return None


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.0f} MB" if size >= 1_048_576 else f"{size:,} bytes"


def check(content: bytes, filename: str, declared_type: str = "") -> ReceiptUpload:
    """Accept a PDF, PNG or JPEG whose name and declared type agree with its content."""
    limit = int(current_app.config["RECEIPT_MAX_BYTES"])
    if not content:
        raise InvalidReceipt("The receipt file is empty.")
    if len(content) > limit:
        raise InvalidReceipt(f"The receipt is larger than {_megabytes(limit)}; "
                             "scan it at a lower resolution or as a PDF.")
    mime = sniff(content[:16])
    if mime is None:
        raise InvalidReceipt("Receipts must be PDF, PNG or JPEG files; this file is none "
                             "of them.")
    name = Path(filename.replace("\\", "/")).name.strip()[:NAME_MAX] or "receipt"
    named_as = EXTENSIONS.get(Path(name).suffix.lower())
    if named_as is None:
        raise InvalidReceipt("The file name must end in .pdf, .png, .jpg or .jpeg.")
    if named_as != mime:
        raise InvalidReceipt(f"The file is named {Path(name).suffix} but contains "
                             f"{TYPE_NAMES[mime]}; rename it or upload the right file.")
    declared = declared_type.split(";", 1)[0].strip().lower()
    if declared not in UNSPECIFIED_TYPES and declared != mime:
        raise InvalidReceipt(f"The file was sent as {declared[:40]}, but receipts must be "
                             "PDF, PNG or JPEG files.")
    return ReceiptUpload(content, hashlib.sha256(content).hexdigest(), name, mime)


def folder() -> Path:
    configured = current_app.config.get("RECEIPTS_FOLDER") or ""
    return Path(configured or Path(current_app.instance_path) / "receipts")


def _path(sha256: str) -> Path:
    if not DIGEST_RE.match(sha256):
        raise ReceiptNotFound("There is no such receipt.")
    return folder() / sha256


def store(upload: ReceiptUpload) -> None:
    """Write the file under its digest, unless it is there already (atomically)."""
    target = _path(upload.sha256)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(upload.content)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _file(sha256: str, label: str) -> ReceiptFile:
    path = _path(sha256)
    try:
        with path.open("rb") as stream:
            mime = sniff(stream.read(16))
    except FileNotFoundError as exc:
        raise ReceiptNotFound("The receipt file is missing from the portal's storage.") from exc
    if mime is None:  # never stored so; refuse rather than serve something else
        raise ReceiptNotFound("There is no such receipt.")
    return ReceiptFile(path, mime, f"{label}-{sha256[:12]}.{RECEIPT_TYPES[mime]}")


def member_receipt(actor_id: str, organisation_id: str, expense_id: str) -> ReceiptFile:
    """An expense's receipt, for members who see internal details."""
    permissions.require(actor_id, organisation_id, "view_internal")
    expense = db.session.scalar(
        tenancy.organisation_rows(Expense, organisation_id).where(Expense.id == expense_id))
    if expense is None or expense.receipt_sha256 is None:
        raise ReceiptNotFound("This expense has no receipt.")
    return _file(expense.receipt_sha256, "receipt")


def public_receipt(organisation: Organisation, entry_id: str) -> ReceiptFile:
    """The receipt of an entry the public sees in full (public_full, or delayed_public
    after its date); anything else is not found, so hidden entries reveal nothing."""
    try:
        entry = ledger.get_entry(organisation.id, entry_id)
    except ledger.EntryNotFound as exc:
        raise ReceiptNotFound("There is no such entry in this ledger.") from exc
    digest = entry.metadata.get("receipt_sha256")
    if not is_disclosed(entry) or not isinstance(digest, str):
        raise ReceiptNotFound("This entry has no public receipt.")
    return _file(digest, f"{organisation.slug}-receipt")
