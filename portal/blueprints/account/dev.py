"""Development aid: the outbox of emails that would have been sent, at ``/dev/outbox``.

Only in debug mode (and never in production); everywhere else the page is not there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, Response, abort, current_app
from markupsafe import Markup, escape

from portal.services import mail
from portal.web import render

bp = Blueprint("dev", __name__, url_prefix="/dev")

SHOWN = 50
_LINK = re.compile(r"https?://[^\s<>\"')]+")


@dataclass(frozen=True)
class OutboxMessage:
    name: str
    subject: str
    to: str
    date: str
    body: Markup


def with_links(text: str) -> Markup:
    """Plain text, escaped, with its web addresses made into links."""
    parts: list[str] = []
    position = 0
    for found in _LINK.finditer(text):
        parts.append(escape(text[position:found.start()]))
        url = escape(found.group(0))
        parts.append(Markup('<a href="{0}">{0}</a>').format(url))
        position = found.end()
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


def _read(path: Path) -> OutboxMessage:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain", "html"))
    text = part.get_content() if part is not None else ""
    return OutboxMessage(path.name, str(message["Subject"] or ""), str(message["To"] or ""),
                         str(message["Date"] or ""), with_links(str(text)))


@bp.get("/outbox")
def outbox() -> Response:
    if not current_app.debug or current_app.config["PORTAL_ENV"] == "production":
        abort(404)
    files = sorted(mail.outbox().glob("*.eml"), key=lambda path: path.stat().st_mtime_ns,
                   reverse=True)
    return render("account/dev_outbox.html", messages=[_read(path) for path in files[:SHOWN]],
                  total=len(files))
