"""Rate limits of the account pages, counted in Redis and so shared by every process.

Only what a view marks with ``count_this()`` uses up a limit: a failed sign-in, a
wrong code or password, an email sent. A request over a limit is refused before
its view runs, with HTTP 429 and a message that says how long to wait.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, g, request, session
from flask_limiter import RouteLimit
from flask_limiter.util import get_remote_address
from flask_login import current_user

from portal.auth import PENDING
from portal.extensions import limiter
from portal.services import accounts

SIGN_IN_MESSAGE = "Too many failed sign-in attempts; wait a minute and try again."
CODE_MESSAGE = "Too many wrong codes; wait a minute and try again."
CODE_DAILY_MESSAGE = ("Too many wrong codes for this account today. Try again tomorrow, "
                      "or use one of your recovery codes then.")
MAIL_FROM_HERE_MESSAGE = ("Too many emails have been asked for from your network; wait an "
                          "hour and try again.")
MAIL_TO_ADDRESS_MESSAGE = ("We have sent several emails to this address in the last hour; "
                           "wait an hour before asking for another.")
REAUTHENTICATION_MESSAGE = "Too many wrong passwords or codes; wait a minute and try again."


def count_this() -> None:
    """Let this response use up the limits of its route."""
    g.rate_limit_counted = True


def _counted(response: Response) -> bool:
    return bool(g.get("rate_limit_counted"))


def _by_ip() -> str:
    return f"ip:{get_remote_address()}"


def _by_submitted_email() -> str:
    return f"email:{accounts.rate_limit_key(request.form.get('email', ''))}"


def _by_pending_sign_in() -> str:
    pending = session.get(PENDING) or {}
    return f"user:{pending.get('user_id') or 'none'}"


def _by_person() -> str:
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return _by_ip()


def _failures(limit: str, key: Callable[[], str], message: str, *,
              shared: str | None = None) -> RouteLimit:
    if shared:
        return limiter.shared_limit(limit, scope=shared, key_func=key, methods=["POST"],
                                    deduct_when=_counted, error_message=message)
    return limiter.limit(limit, key_func=key, methods=["POST"], deduct_when=_counted,
                         error_message=message)


# Signing in: per address typed and per network address, failures only.
sign_in_by_ip = _failures("10 per minute", _by_ip, SIGN_IN_MESSAGE)
sign_in_by_account = _failures("10 per minute", _by_submitted_email, SIGN_IN_MESSAGE)

# The second step: 10 wrong codes a minute, and at most 50 a day for one account, so
# guessing six digits stays hopeless even for someone who has the password.
code_by_ip = _failures("10 per minute", _by_ip, CODE_MESSAGE)
code_by_account = _failures("10 per minute", _by_pending_sign_in, CODE_MESSAGE)
code_by_account_daily = _failures("50 per day", _by_pending_sign_in, CODE_DAILY_MESSAGE)

# Pages that send email to an address typed in, together: counted per email sent.
mail_by_ip = _failures("10 per hour", _by_ip, MAIL_FROM_HERE_MESSAGE, shared="mail")
mail_by_address = _failures("3 per hour", _by_submitted_email, MAIL_TO_ADDRESS_MESSAGE,
                            shared="mail")

# Changes that ask for the password or a code again, together: counted per failure.
reauthentication = _failures("10 per minute", _by_person, REAUTHENTICATION_MESSAGE,
                             shared="reauthentication")
