"""How dashboard views answer after a change, and when a form was refused."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, request
from flask_wtf import FlaskForm

from portal.blueprints.dashboard.forms import attach_error
from portal.services.errors import DomainError
from portal.web import render


def changed(url: str, message: str) -> Response:
    """Done: say so on the next page. An htmx form is told to load that page itself
    (a redirect would be followed inside the fragment); a plain form is redirected."""
    flash(message, "success")
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.boosted:
        return Response(status=200, headers={"HX-Redirect": url})
    return redirect(url, 303)  # type: ignore[return-value]


def refused(template: str, block: str, form: FlaskForm, error: DomainError | None = None,
            **context: Any) -> Response:
    """The form again, with what was wrong beside its field: 422 for input that cannot be
    used, or the refusal's own status (403, 409 …) when the use case said no to the
    request as a whole rather than to one of its fields."""
    status = 422
    if error is not None:
        names_a_field = error.field is not None and hasattr(form, error.field)
        attach_error(form, error)
        if not names_a_field and error.status_code not in {400, 422}:
            status = error.status_code
    return render(template, block, status=status, form=form, **context)
