"""Text for spreadsheets: CSV cells that a spreadsheet will show, never run."""

from __future__ import annotations

FORMULA_STARTS = frozenset({"=", "+", "-", "@", "\t", "\r"})


def safe_cell(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ (or a tab, a return) as formulas:
    such text gets a leading apostrophe, which they show as plain text."""
    return "'" + text if text[:1] in FORMULA_STARTS else text
