"""A generated replacement label: the pseudonymous slide ID as text (and a QR code of it, with segno),
drawn on a white card of the removed label's size. Nothing else of the glass label is carried over.

Sites that want a label in their viewer (``[wsi] label = "generated"``) get this image in place of the
photograph of the glass label: in the de-identified vendor file (SVS, generic TIFF: a new stripped,
deflate-compressed IFD at the end of the file) and as a LABEL instance of the DICOM-WSI series.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SIZE = (600, 300)  # (width, height) when the vendor file had no label image (NDPI, MRXS)


def _qr_modules(text: str) -> np.ndarray | None:
    """The QR code of ``text`` as a boolean module matrix (True = dark), or None without segno."""
    try:
        import segno
    except ImportError:  # pragma: no cover - segno is a dependency; text alone still identifies
        return None
    qr = segno.make(text, error="m", micro=False)
    return np.asarray([[bool(v) for v in row] for row in qr.matrix], dtype=bool)


def render_label(slide_id: str, width: int, height: int) -> np.ndarray:
    """An RGB label image (height, width, 3) showing only ``slide_id`` (text, and a QR code if it fits)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = max(int(width), 32), max(int(height), 32)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    margin = max(2, min(width, height) // 20)
    text_box = (margin, margin, width - margin, height - margin)
    modules = _qr_modules(slide_id)
    if modules is not None:
        n = modules.shape[0] + 8  # quiet zone of 4 modules on each side
        landscape = width >= height
        side = min(height, width // 2) if landscape else min(width, height // 2)
        scale = (side - 2 * margin) // n
        if scale >= 2:
            cells = np.pad(modules, 4)
            qr = np.where(np.kron(cells, np.ones((scale, scale), bool)), 0, 255).astype(np.uint8)
            img.paste(Image.fromarray(qr, "L").convert("RGB"), (margin, margin))
            q = n * scale
            text_box = (
                (2 * margin + q, margin, width - margin, height - margin)
                if landscape
                else (margin, 2 * margin + q, width - margin, height - margin)
            )
    box_w, box_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
    size = max(8, box_h // 3)
    while size > 8:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), slide_id, font=font)
        if right - left <= box_w and bottom - top <= box_h:
            break
        size -= 2
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), slide_id, font=font)
    x = text_box[0] + (box_w - (right - left)) // 2 - left
    y = text_box[1] + (box_h - (bottom - top)) // 2 - top
    draw.text((x, y), slide_id, fill="black", font=font)
    return np.asarray(img)
