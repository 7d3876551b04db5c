"""Public identifiers: a type prefix plus 96 bits from the operating system's CSPRNG."""

from __future__ import annotations

import secrets

PREFIXES = frozenset(
    {"org", "fund", "usr", "led", "txf", "don", "exp", "inv", "chk", "evt", "ses", "rpt"}
)
RANDOM_BYTES = 12  # 96 bits


def new_id(prefix: str) -> str:
    """Return ``<prefix>_<24 hex digits>``, e.g. ``led_3f9a1c0d5e7b2a4c6d8e0f12``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{secrets.token_hex(RANDOM_BYTES)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """Many ids at once (bulk loads): one read of the CSPRNG instead of ``count``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    raw = secrets.token_bytes(RANDOM_BYTES * count).hex()
    width = RANDOM_BYTES * 2
    return [f"{prefix}_{raw[i * width:(i + 1) * width]}" for i in range(count)]
