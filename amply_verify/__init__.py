"""Independent verification of Amply ledger exports.

This package uses only the Python standard library, so auditors can run it without
the portal, its database or its dependencies. The portal imports its hash function
from here, so the two can never disagree.
"""

from amply_verify.hashing import canonical_json, compute_entry_hash

__all__ = ["canonical_json", "compute_entry_hash"]
