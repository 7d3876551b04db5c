"""Independent verification of Amply ledger exports.

This package uses only the Python standard library (plus an Ed25519 library for
signatures), so auditors can run it without the portal or its database.
"""

from amply_verify.hashing import canonical_json, compute_entry_hash

__all__ = ["canonical_json", "compute_entry_hash"]
