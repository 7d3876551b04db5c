"""Use cases. Services take ids and plain values, return values and raise domain errors.

A use case owns its transaction (it commits); helpers that use cases compose, such
as ``ledger.append_entry``, only flush. Nothing here touches ``flask.request``.
"""
