"""The entry hash: the one function that defines what an entry's hash is.

The portal imports it when it appends, and the verifier when it checks, so the
two can never disagree. The formula is specified in docs/ledger-spec.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

HASH_PREFIX = "sha256:"
#: Prefixes the format reserves for future algorithms (see the spec's versioning
#: section). Entries carrying them are recognised but cannot be checked yet.
KNOWN_FUTURE_PREFIXES = ("sha512:", "sha3-256:", "blake2b:", "blake3:")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ``json.dumps`` builds a new C encoder on every call, which costs more than the
# encoding itself; verifying a million entries notices. The encoder below is the
# one ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
# builds, made once. Where the C encoder is missing, the plain encoder is used.
def _make_fast_encoder() -> Any:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",",
                      True, False, True)
        sample = {"b": [1, None, True, {"z": "é\"\n"}], "a": -2, "ü": {}}
        if "".join(encode(sample, 0)) != _CANONICAL.encode(sample):
            return None
    except TypeError:  # a Python whose C encoder takes other arguments
        return None
    return encode


_fast_encode = _make_fast_encoder()


def canonical_json(value: Mapping[str, Any]) -> str:
    """Serialise metadata the one way the hash expects: sorted keys, no spaces, raw UTF-8.

    Exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.
    """
    if _fast_encode is not None and type(value) is dict:
        return "".join(_fast_encode(value, 0))
    return _CANONICAL.encode(value)


def compute_entry_hash(
    entry_id: str,
    timestamp: str,
    organisation_id: str,
    entry_type: str,
    amount: int,
    currency: str,
    metadata: Mapping[str, Any],
    prev_entry_hash: str | None,
) -> str:
    """Return ``sha256:<hex>`` over the pipe-joined fields of one entry.

    ``timestamp`` is the exact ``YYYY-MM-DDTHH:MM:SSZ`` string stored with the
    entry; ``prev_entry_hash`` is ``None`` for the first entry of a ledger.
    """
    payload = "|".join(
        (
            entry_id,
            timestamp,
            organisation_id,
            entry_type,
            str(amount),
            currency.upper(),
            canonical_json(metadata),
            prev_entry_hash or "null",
        )
    )
    return HASH_PREFIX + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def hash_algorithm(entry_hash: str) -> str:
    """Name the algorithm of a prefixed hash string (``sha256`` for ``sha256:…``)."""
    prefix, sep, _ = entry_hash.partition(":")
    return prefix if sep else ""
