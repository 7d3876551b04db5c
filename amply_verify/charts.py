"""Charts as server-side SVG: one helper for the web pages and the PDF reports.

Charts are drawn from plain numbers and labels, carry a title and a description for
screen readers, and are always shown beside a table of the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b45309", "#0e7490", "#be123c",
           "#4d7c0f", "#6d28d9", "#a16207")
OTHER_COLOUR = "#6b7280"


def bar_chart(
    items: Sequence[tuple[str, int]],
    *,
    title: str,
    value_label: Callable[[int], str],
    chart_id: str = "chart",
    max_bars: int = 8,
    width: int = 640,
) -> Markup:
    """A horizontal bar chart of ``(label, value)`` pairs, largest first.

    Beyond ``max_bars`` the smallest items are folded into one "Other" bar so the
    chart stays readable; the table beside it lists them all.
    """
    ordered = sorted((item for item in items if item[1] > 0), key=lambda i: (-i[1], i[0]))
    if len(ordered) > max_bars:
        rest = sum(value for _, value in ordered[max_bars - 1:])
        ordered = [*ordered[: max_bars - 1], ("Other", rest)]
    if not ordered:
        return Markup("")
    label_width, value_width, bar_height, gap = 190, 130, 22, 10
    plot = width - label_width - value_width
    largest = max(value for _, value in ordered)
    height = len(ordered) * (bar_height + gap) + gap
    description = "; ".join(f"{label}: {value_label(value)}" for label, value in ordered)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    for index, (label, value) in enumerate(ordered):
        y = gap + index * (bar_height + gap)
        length = max(2, round(plot * value / largest))
        colour = OTHER_COLOUR if label == "Other" else PALETTE[index % len(PALETTE)]
        short = label if len(label) <= 28 else label[:27] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'font-size="13" fill="#1b1f24">{escape(short)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar_height}" '
            f'rx="3" fill="{colour}"/>'
            f'<text x="{label_width + length + 6}" y="{y + bar_height * 0.7:.1f}" '
            f'font-size="13" fill="#1b1f24">{escape(value_label(value))}</text>'
        )
    parts.append("</svg>")
    # Every label and value above went through escape(); the rest is our own markup.
    return Markup("".join(parts))  # noqa: S704
