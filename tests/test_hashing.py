"""The entry hash formula against the published test vectors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from amply_verify.hashing import canonical_json, compute_entry_hash, hash_algorithm

VECTORS = json.loads((Path(__file__).parent / "data" / "ledger-vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["entries"], ids=lambda v: v["entry_id"])
def test_every_vector_hash_is_reproduced(vector: dict[str, Any]) -> None:
    computed = compute_entry_hash(
        vector["entry_id"], vector["timestamp"], vector["organisation_id"],
        vector["entry_type"], vector["amount"], vector["currency"], vector["metadata"],
        vector["prev_entry_hash"],
    )
    assert computed == vector["entry_hash"]


def test_vectors_form_one_chain() -> None:
    entries = VECTORS["entries"]
    assert entries[0]["prev_entry_hash"] is None
    for previous, current in itertools.pairwise(entries):
        assert current["prev_entry_hash"] == previous["entry_hash"]


def test_currency_is_upper_cased_before_hashing() -> None:
    lower = compute_entry_hash("led_1", "2025-01-01T00:00:00Z", "org_1", "fee", -1, "eur", {}, None)
    upper = compute_entry_hash("led_1", "2025-01-01T00:00:00Z", "org_1", "fee", -1, "EUR", {}, None)
    assert lower == upper


def test_canonical_json_sorts_keys_keeps_unicode_and_drops_spaces() -> None:
    text = canonical_json({"b": [1, {"z": None, "a": True}], "a": "Zürich ✓"})
    assert text == '{"a":"Zürich ✓","b":[1,{"a":true,"z":null}]}'


def test_every_field_changes_the_hash() -> None:
    base = ["led_1", "2025-01-01T00:00:00Z", "org_1", "expense", -100, "EUR", {"a": 1}, None]
    reference = compute_entry_hash(*base)  # type: ignore[arg-type]
    changes = ["led_2", "2025-01-01T00:00:01Z", "org_2", "fee", -101, "USD", {"a": 2},
               "sha256:" + "0" * 64]
    for index, value in enumerate(changes):
        altered = list(base)
        altered[index] = value
        assert compute_entry_hash(*altered) != reference, f"field {index} is not covered"  # type: ignore[arg-type]


def test_hash_algorithm_is_read_from_the_prefix() -> None:
    assert hash_algorithm(VECTORS["entries"][0]["entry_hash"]) == "sha256"
    assert hash_algorithm("sha512:abcd") == "sha512"
    assert hash_algorithm("abcd") == ""
