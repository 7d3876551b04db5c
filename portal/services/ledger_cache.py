"""Per-process memory of figures derived from a ledger, valid while its head stands still.

What the public sees of a ledger changes only when an entry is appended (the head
moves) or when a scheduled entry reaches its disclosure date. Results computed from
the ledger are kept here under the head's sequence until either happens, so busy
pages do not recompute them on every request. Each worker process has its own
memory; nothing here is shared or needs invalidating by hand.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from portal.extensions import db
from portal.services import ledger

T = TypeVar("T")
SIZE = 512

_lock = threading.Lock()
_memory: OrderedDict[tuple[str, str], tuple[int, str | None, Any]] = OrderedDict()


def next_disclosure(organisation_id: str, now: str) -> str | None:
    """When the next scheduled entry becomes public (views change then), if any."""
    found = db.session.execute(sa.text(
        "SELECT min(reveal_at) FROM ledger_entries WHERE organisation_id = :org"
        " AND visibility = 'delayed_public' AND reveal_at > :now"),
        {"org": organisation_id, "now": now}).scalar_one_or_none()
    return str(found) if found else None


def cached(organisation_id: str, name: str, compute: Callable[[], T], *,
           head_sequence: int | None = None, now: str | None = None) -> T:
    """``compute()``, or its result from earlier at the same head and disclosure state."""
    now = now or ledger.utc_timestamp()
    if head_sequence is None:
        head_sequence = ledger.get_head(organisation_id).sequence
    key = (organisation_id, name)
    with _lock:
        hit = _memory.get(key)
        if hit is not None and hit[0] == head_sequence and (hit[1] is None or now < hit[1]):
            _memory.move_to_end(key)
            return hit[2]  # type: ignore[no-any-return]
    value = compute()
    expires = next_disclosure(organisation_id, now)
    with _lock:
        _memory[key] = (head_sequence, expires, value)
        _memory.move_to_end(key)
        while len(_memory) > SIZE:
            _memory.popitem(last=False)
    return value


def forget() -> None:
    """Drop everything (tests that rewind the clock or the database use it)."""
    with _lock:
        _memory.clear()
