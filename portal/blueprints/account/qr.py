"""QR codes as inline SVG: no image requests, nothing the Content-Security-Policy forbids."""

from __future__ import annotations

import re

import qrcode
from markupsafe import Markup, escape
from qrcode.image.svg import SvgPathImage


def qr_svg(text: str, *, label: str) -> Markup:
    """``text`` as an accessible SVG QR code, sized by the stylesheet (not in millimetres)."""
    image = qrcode.make(text, image_factory=SvgPathImage, border=2,
                        error_correction=qrcode.constants.ERROR_CORRECT_M)
    svg: str = image.to_string(encoding="unicode")
    opening, rest = svg.split(">", 1)
    opening = re.sub(r'\s(?:width|height)="[^"]*"', "", opening)
    # qrcode's own SVG (paths only), from our own text; the one thing added is escaped.
    return Markup(f'{opening} class="qr-code" role="img">'  # noqa: S704
                  f"<title>{escape(label)}</title>{rest}")
