"""One use case, one transaction: commit everything it did, or roll all of it back.

Without the explicit rollback, a use case that flushed some rows and then refused
would leave them pending in the session for whatever commits next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from portal.extensions import db


@contextmanager
def one_transaction() -> Iterator[None]:
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise
    db.session.commit()
