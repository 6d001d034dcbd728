"""Code 128 barcodes and QR codes as inline SVG for templates."""

from __future__ import annotations

import barcode
import segno
from barcode.errors import BarcodeError
from barcode.writer import SVGWriter
from markupsafe import Markup

MAX_CODE128_CHARS = 80
MAX_QR_CHARS = 2_000


class BarcodeValueError(ValueError):
    """A value that cannot be drawn as the barcode asked for."""


def code128_svg(
    text: str, *, module_width: float = 0.3, height: float = 15.0, human_readable: bool = True
) -> Markup:
    """Return a Code 128 barcode of `text` as inline SVG (sizes in millimetres)."""
    text = str(text)
    if not text or len(text) > MAX_CODE128_CHARS:
        raise BarcodeValueError(f"a Code 128 value needs 1 to {MAX_CODE128_CHARS} characters")
    try:
        code = barcode.Code128(text, writer=SVGWriter())
        svg = code.render(
            {
                "module_width": float(module_width),
                "module_height": float(height),
                "write_text": bool(human_readable),
                "quiet_zone": 2.0,
            }
        )
    except (BarcodeError, ValueError, KeyError) as exc:
        raise BarcodeValueError(f"cannot encode {text!r} as Code 128: {exc}") from None
    return Markup(_svg_element(svg.decode()))


def qr_svg(text: str, *, scale: int = 3, error: str = "m", border: int = 4) -> Markup:
    """Return a QR code of `text` as inline SVG."""
    text = str(text)
    if not text or len(text) > MAX_QR_CHARS:
        raise BarcodeValueError(f"a QR code value needs 1 to {MAX_QR_CHARS} characters")
    try:
        code = segno.make(text, error=error, micro=False)
        svg = code.svg_inline(scale=max(1, min(int(scale), 20)), border=int(border))
    except (segno.DataOverflowError, ValueError) as exc:
        raise BarcodeValueError(f"cannot encode the value as a QR code: {exc}") from None
    return Markup(svg)


def _svg_element(document: str) -> str:
    # The writer emits a standalone file; HTML wants only the <svg> element.
    start = document.find("<svg")
    if start < 0:
        raise BarcodeValueError("the barcode writer produced no SVG")
    return document[start:].strip()
