"""Chain verification for visitors: run once per ledger head, then served from Redis.

A ledger only changes by growing, so a result for a given head stays true until the
next append; repeated clicks cost a Redis read. One visitor at a time verifies a
given head; the others wait for that result instead of repeating the work.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from portal.extensions import redis_store
from portal.services import ledger

RESULT_TTL = 30 * 24 * 3600
LOCK_TTL = 120
WAIT_SECONDS = 60


@dataclass(frozen=True)
class VerificationReport:
    organisation_id: str
    valid: bool
    entry_count: int
    head_sequence: int
    head_hash: str | None
    verified_at: str
    error: str | None = None
    broken_sequence: int | None = None
    detail: str | None = None
    cached: bool = False


def _key(organisation_id: str, head: ledger.Head) -> str:
    return f"verify:{organisation_id}:{head.sequence}:{head.entry_hash or 'empty'}"


def _last_key(organisation_id: str) -> str:
    return f"verify:last:{organisation_id}"


def verify(organisation_id: str) -> VerificationReport:
    """The verification of the ledger at its current head, computed at most once."""
    store = redis_store.client()
    head = ledger.get_head(organisation_id)
    key = _key(organisation_id, head)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        cached = store.get(key)
        if cached is not None:
            return VerificationReport(**{**json.loads(cached), "cached": True})
        if store.set(key + ":lock", "1", nx=True, ex=LOCK_TTL):
            break
        if time.monotonic() > deadline:
            break  # the other verifier is gone: do the work here
        time.sleep(0.2)
    try:
        result = ledger.verify_chain(organisation_id)
        report = VerificationReport(
            organisation_id, result.valid, result.entry_count, result.head_sequence,
            result.head_hash, ledger.utc_timestamp(), result.error, result.broken_sequence,
            result.detail,
        )
        payload = json.dumps(asdict(report))
        store.set(key, payload, ex=RESULT_TTL)
        store.set(_last_key(organisation_id), payload)
    finally:
        store.delete(key + ":lock")
    return report


def last_reports(organisation_ids: list[str]) -> dict[str, VerificationReport]:
    """The most recent verification of each organisation that has one."""
    if not organisation_ids:
        return {}
    values = redis_store.client().mget([_last_key(org) for org in organisation_ids])
    return {org: VerificationReport(**json.loads(value))
            for org, value in zip(organisation_ids, values, strict=True) if value}
