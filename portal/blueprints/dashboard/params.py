"""Reading the query string of dashboard pages."""

from __future__ import annotations

from flask import abort, request


def int_arg(name: str) -> int | None:
    """A whole-number argument (``before=``, ``after=``), or None when absent."""
    value = request.args.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        abort(400, f"{name} must be a whole number")
    return int(value)
