"""Platform administrators' pages (see the organisations queue)."""

from __future__ import annotations
