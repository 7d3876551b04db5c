"""Outgoing email: SMTP when configured, otherwise files in an outbox folder.

Development and tests read what would have been sent from the outbox (one ``.eml``
file per message); in debug mode it is listed at ``/dev/outbox``.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from flask import current_app

from portal.ids import new_id


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"


def outbox() -> Path:
    folder = Path(current_app.config["MAIL_OUTBOX"] or
                  Path(current_app.instance_path) / "outbox")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def send(to: str, subject: str, text: str, *, html: str | None = None,
         attachments: tuple[Attachment, ...] = ()) -> EmailMessage:
    """Send one message (or put it in the outbox); return it."""
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="portal.invalid")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        main, _, sub = attachment.mime_type.partition("/")
        message.add_attachment(attachment.content, maintype=main, subtype=sub or "octet-stream",
                               filename=attachment.filename)
    host = current_app.config["MAIL_SERVER"]
    if host:
        with smtplib.SMTP(host, current_app.config["MAIL_PORT"], timeout=30) as smtp:
            if current_app.config["MAIL_USE_TLS"]:
                smtp.starttls(context=ssl.create_default_context())
            if current_app.config["MAIL_USERNAME"]:
                smtp.login(current_app.config["MAIL_USERNAME"],
                           current_app.config["MAIL_PASSWORD"])
            smtp.send_message(message)
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        (outbox() / f"{stamp}-{new_id('evt')}.eml").write_bytes(bytes(message))
    return message
