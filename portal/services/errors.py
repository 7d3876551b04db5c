"""The base of every domain error; views turn them into 4xx responses or CLI messages."""

from __future__ import annotations


class DomainError(Exception):
    """A use case refused its input. ``str(error)`` is safe and meant for people."""

    #: HTTP status a view should answer with when it does not know better.
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409
