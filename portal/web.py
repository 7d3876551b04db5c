"""What every page shares: the one render helper, template filters, error pages, headers.

``render`` answers an htmx request with just the named block of the page template
and any other request with the whole page, from the same template and context;
responses always carry ``Vary: HX-Request`` so caches keep the two apart.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, AnyStr

import psycopg
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    make_response,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from jinja2_fragments.flask import render_block
from markupsafe import Markup, escape
from psycopg.pq import TransactionStatus
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.money import format_money
from portal.services import tenancy
from portal.services.errors import DomainError

log = logging.getLogger(__name__)
INTRANS = TransactionStatus.INTRANS

LOCALES = ("en", "en_GB", "de", "fr", "es", "it", "nl", "pt", "sv", "da", "nb", "fi", "pl",
           "cs")
ENTRY_TYPE_LABELS = {
    "donation_received": "Donation",
    "fee": "Fee",
    "expense": "Expense",
    "transfer_in": "Transfer in",
    "transfer_out": "Transfer out",
    "refund_issued": "Refund",
    "donation_reversed": "Donation reversed",
    "adjustment": "Adjustment",
    "expense_recategorized": "Recategorization",
    "dispute_opened": "Dispute opened",
    "dispute_won": "Dispute won",
}
SPECIAL_CATEGORIES = {
    "transfers-out": "Transfers to other organisations",
    "uncategorised": "Uncategorised",
    "payment-fees": "Payment fees",
    "undisclosed": "Undisclosed",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
    "object-src 'none'"
)


def is_fragment_request() -> bool:
    """An htmx request that wants a fragment, not a boosted navigation or history restore."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request  # type: ignore[union-attr]


def render(template: str, block: str | None = None, *, status: int = 200,
           headers: Mapping[str, str] | None = None, **context: Any) -> Response:
    """The page, or only ``block`` of it for htmx requests."""
    if block is not None and is_fragment_request():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def stream(chunks: Iterator[AnyStr]) -> Iterator[AnyStr]:
    """A streamed response body that runs with the scope of the request that made it.

    The body is produced after the view has returned and the request's database
    session is gone, so the scope is carried over to the session the body uses.
    """
    scope = tenancy.current()

    def produce() -> Iterator[AnyStr]:
        before = tenancy.current()
        tenancy.set_scope(scope)
        try:
            yield from chunks
        finally:
            tenancy.set_scope(before)

    return stream_with_context(produce())


# --------------------------------------------------------------------------- locale


def get_locale() -> str:
    """The request's language for numbers and dates (Accept-Language), English otherwise."""
    if "locale" not in g:
        best = request.accept_languages.best_match([tag.replace("_", "-") for tag in LOCALES])
        g.locale = (best or "en").replace("-", "_")
    return str(g.locale)


def money_filter(amount: int | None, currency: str | None, signed: bool = False,
                 locale: str | None = None) -> str:
    """``locale`` saves looking up the request's in a long table that already has it."""
    if amount is None or currency is None:
        return ""
    return _money(amount, currency, locale or get_locale(), signed)


@lru_cache(maxsize=8192)
def _money(amount: int, currency: str, locale: str, signed: bool) -> str:
    # Pages show the same amounts again and again (gifts of 25.00, monthly rent).
    return format_money(amount, currency, locale, signed=signed)


def _moment(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).astimezone(UTC)


def date_filter(value: str | date | datetime | None, style: str = "medium",
                locale: str | None = None) -> str:
    locale = locale or get_locale()
    if isinstance(value, date) and not isinstance(value, datetime):
        return _day(value.isoformat(), style, locale)
    if isinstance(value, str) and len(value) >= 10:
        return _day(value[:10], style, locale)
    moment = _moment(value)
    return format_date(moment, style, locale=locale) if moment else ""


@lru_cache(maxsize=4096)
def _day(day: str, style: str, locale: str) -> str:
    return format_date(date.fromisoformat(day), style, locale=locale)


def datetime_filter(value: str | datetime | None) -> str:
    moment = _moment(value)
    if moment is None:
        return ""
    return format_datetime(moment, "medium", tzinfo=UTC, locale=get_locale()) + " UTC"


def category_label(category: str | None) -> str:
    if not category:
        return ""
    return SPECIAL_CATEGORIES.get(category, category.replace("-", " ").replace("_", " ")
                                  .capitalize())


def country_name(code: str) -> str:
    try:
        return str(Locale.parse(get_locale()).territories.get(code.upper(), code))
    except (ValueError, UnknownLocaleError):
        return code


def percent_filter(value: float) -> str:
    """A share for people; never rounds a shortfall up to 100% or a sliver down to 0%."""
    percent = value * 100
    if 99.5 <= percent < 100 or 0 < percent < 0.5:
        return f"{percent:.1f}%"
    return f"{percent:.0f}%"


def short_hash(value: str | None) -> str:
    if not value:
        return ""
    prefix, _, digest = value.partition(":")
    return f"{prefix}:{digest[:10]}…{digest[-6:]}"


# --------------------------------------------------------------------------- links


def template_url_for(endpoint: str, **values: Any) -> str:
    """``url_for`` for templates, remembering the links it has built.

    A page builds two dozen links, mostly the same ones on every request (navigation,
    static files, an organisation's pages). A relative link depends only on the
    endpoint, its values and the path the app is mounted at.
    """
    if (not has_request_context() or endpoint.startswith(".")
            or any(name.startswith("_") for name in values)):
        return url_for(endpoint, **values)
    try:
        return _known_url(request.script_root, endpoint, tuple(sorted(values.items())))
    except TypeError:  # a value that cannot be a key
        return url_for(endpoint, **values)


@lru_cache(maxsize=4096)
def _known_url(script_root: str, endpoint: str, values: tuple[tuple[str, Any], ...]) -> str:
    return url_for(endpoint, **dict(values))


# --------------------------------------------------------------------------- ledger tables


def ledger_rows(rows: Iterable[Any], entry_url: str, sequence_url: str,
                fund_names: Mapping[str, str]) -> Markup:
    """The ``<tr>`` of each public ledger row, inside ``entries_table`` (macros/ledger.html).

    Written out here rather than in the macro: a ledger page has fifty rows, and through
    the template engine's macro calls, attribute lookups and filters they cost more
    than all of the page's database work. Everything taken from a row is escaped, as
    the template would; the filters are the templates' own.
    """
    locale = get_locale()
    out = []
    for row in rows:
        target = f"{entry_url}{row.entry_id}" if row.entry_id else f"{sequence_url}{row.sequence}"
        link = f'<td data-label="Entry"><a href="{escape(target)}">#{int(row.sequence)}</a></td>'
        if row.level in {"full", "aggregated"}:
            dated = (
                f'<td data-label="Date"><time datetime="{escape(row.timestamp)}">'
                f"{escape(date_filter(row.timestamp, locale=locale))}</time></td>"
                f'<td data-label="Type">{escape(entry_type_label(row.type))}</td>'
                f'<td data-label="Category">{escape(category_label(row.category))}</td>'
            )
        if row.level == "full":
            details = []
            if row.party:
                details.append(f'<span class="party">{escape(row.party)}</span>')
            if row.description:
                details.append(f'<span class="muted">{escape(row.description)}</span>')
            fund = fund_names.get(row.fund_id) if row.fund_id else None
            if fund and fund != "General Fund":
                details.append(f'<span class="tag">{escape(fund)}</span>')
            direction = "in" if row.amount > 0 else "out" if row.amount < 0 else "zero"
            out.append(
                f"<tr>{link}{dated}"
                f'<td data-label="Details">{" ".join(details)}</td>'
                f'<td data-label="Amount" class="num"><span class="amount {direction}">'
                f"{escape(money_filter(row.amount, row.currency, True, locale))}</span></td>"
                f'<td data-label="Running balance" class="num">'
                f"{escape(money_filter(row.running_balance, row.currency, False, locale))}</td>"
                "</tr>"
            )
        elif row.level == "aggregated":
            out.append(
                f'<tr class="undisclosed">{link}{dated}'
                '<td data-label="Details" colspan="3"><span class="badge">Amount undisclosed'
                "</span> counted in the category totals</td></tr>"
            )
        elif row.level == "scheduled":
            out.append(
                f'<tr class="undisclosed">{link}'
                '<td data-label="Details" colspan="6"><span class="badge">Scheduled for '
                f'disclosure</span> on <time datetime="{escape(row.reveal_at)}">'
                f"{escape(date_filter(row.reveal_at, locale=locale))}</time></td></tr>"
            )
        else:
            out.append(
                f'<tr class="undisclosed">{link}'
                '<td data-label="Details" colspan="6"><span class="badge">Internal entry</span> '
                f'<code class="hash" title="{escape(row.entry_hash)}">'
                f"{escape(short_hash(row.entry_hash))}</code></td></tr>"
            )
    return Markup("\n".join(out))  # noqa: S704 - every value from a row is escaped above


def entry_type_label(entry_type: str | None) -> str:
    return ENTRY_TYPE_LABELS.get(entry_type or "", entry_type or "")


# --------------------------------------------------------------------------- errors


ERROR_TITLES = {
    400: "That request could not be understood",
    403: "You may not do that",
    404: "Page not found",
    405: "Not allowed here",
    410: "No longer here",
    413: "That is too large",
    422: "Please check what you entered",
    429: "Too many requests",
    500: "Something went wrong on our side",
}


def attachment_response(path: Path, mime: str, download_name: str) -> Response:
    """A file as a download with its real type: never shown inline, never sniffed, never
    scripted (``sandbox`` keeps even a PDF viewer from running it with the portal's
    rights), never cached by shared caches."""
    response = send_file(path, mimetype=mime, as_attachment=True, download_name=download_name,
                         max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def error_page(status: int, message: str | None = None) -> Response:
    """A friendly error page (or fragment for htmx) with a clear message."""
    title = ERROR_TITLES.get(status, "Something went wrong")
    response = render("errors/error.html", "error", status=status, status_code=status,
                      title=title, message=message)
    if request.path.startswith("/api/"):
        response = make_response({"error": {"status": status, "title": title,
                                             "message": message or title}}, status)
    return response


def _handle_http(error: HTTPException) -> Response:
    status = error.code or 500
    # Werkzeug's stock descriptions are written for developers; ours for people.
    stock = type(error).description
    description = None if error.description == stock else error.description
    return error_page(status, description)


def _handle_domain(error: DomainError) -> Response:
    return error_page(error.status_code, error.message)


def _handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_page(500, "The problem has been logged. Please try again in a moment.")


# --------------------------------------------------------------------------- headers


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_app.config["PORTAL_ENV"] == "production":
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    response.vary.add("HX-Request")
    return response


def _start_unscoped() -> None:
    """Every request starts seeing no organisation's rows; its blueprint widens that."""
    before = tenancy.current()
    if before != tenancy.NOTHING or db.session().in_transaction():
        # A caller shares its app context and session with the request (tests do):
        # it gets its scope back afterwards. Otherwise the session, and the scope of
        # its transaction, end with the request: restoring it would be a wasted
        # round trip just before the rollback.
        g.scope_before_request = before
    tenancy.reset()


def _end_request(error: BaseException | None) -> None:
    if "scope_before_request" in g:
        tenancy.set_scope(g.scope_before_request)
    elif error is None:
        _roll_back_keeping_prepared_statements()


def _roll_back_keeping_prepared_statements() -> None:
    """End the request's transaction (what is left open only read) with a ROLLBACK sent
    as a plain statement.

    The driver forgets its prepared statements when asked to roll back (in case one
    failed in the transaction), so every request would parse and plan its queries
    afresh. A read-only page's queries are the same on every request: keeping them
    prepared saves the database most of its work on them.
    """
    session = db.session()
    transaction = session.get_transaction()
    if transaction is None or not transaction.is_active:
        return
    connection = session.connection()
    if connection.in_nested_transaction():
        return  # the session runs inside its caller's transaction (tests): not ours to end
    driver = connection.connection.driver_connection
    if isinstance(driver, psycopg.Connection) and driver.info.transaction_status == INTRANS:
        driver.execute("ROLLBACK", prepare=False)


def register_web(app: Flask) -> None:
    app.before_request(_start_unscoped)
    app.teardown_request(_end_request)
    app.jinja_env.filters.update(
        money=money_filter, date=date_filter, datetime=datetime_filter,
        category=category_label, country=country_name, percent=percent_filter,
        short_hash=short_hash, entry_type=entry_type_label,
        b64=lambda value: base64.b64encode(value).decode(),
    )
    app.jinja_env.globals.update(get_locale=get_locale, Markup=Markup, ledger_rows=ledger_rows,
                                 url_for=template_url_for)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(DomainError, _handle_domain)
    app.register_error_handler(Exception, _handle_unexpected)
    app.after_request(_security_headers)
