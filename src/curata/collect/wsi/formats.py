"""Which kind of slide a file is, from its first bytes and its first IFD (never from its name alone)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

TIFF_MAGICS = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
WSM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
SLIDE_SUFFIXES = (
    ".svs",
    ".ndpi",
    ".tif",
    ".tiff",
    ".ome.tif",
    ".ome.tiff",
    ".mrxs",
    ".scn",
    ".bif",
    ".qptiff",
)


class SlideFormat(StrEnum):
    """A vendor format Curata reads. The value is the file suffix its de-identified copy gets."""

    APERIO = "svs"
    HAMAMATSU = "ndpi"
    PHILIPS = "philips.tiff"
    OME = "ome.tiff"
    GENERIC_TIFF = "tiff"
    MIRAX = "mrxs"


def is_tiff(head: bytes) -> bool:
    return head[:4] in TIFF_MAGICS


def is_slide_name(name: str) -> bool:
    return name.lower().endswith(SLIDE_SUFFIXES)


def is_sidecar_name(name: str) -> bool:
    """``slide.svs.json``: the identity and slide fields a site gives beside a vendor file."""
    low = name.lower()
    return low.endswith(".json") and is_slide_name(low[:-5])


def classify_description(description: str, ndpi: bool, tiled: bool) -> SlideFormat | None:
    """The vendor from the first IFD's ImageDescription (as OpenSlide's detectors do)."""
    if ndpi:
        return SlideFormat.HAMAMATSU
    desc = description.lstrip()
    if desc.startswith("Aperio"):
        return SlideFormat.APERIO
    if desc.startswith("<?xml") or desc.startswith("<"):
        if "DPUfsImport" in desc[:2000] or "PIM_DP_" in desc[:20000]:
            return SlideFormat.PHILIPS
        if "<OME" in desc[:2000]:
            return SlideFormat.OME
    return SlideFormat.GENERIC_TIFF if tiled else None


def positive_number(value: Any, low: float = 0.0, high: float = math.inf) -> float | None:
    """``value`` as a finite number in ``(low, high]``, or None (missing, 0, negative, NaN, infinite,
    not a number: ``0,5``, ``abc``, ``''``): a vendor's calibration field is read, never trusted."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and low < number <= high else None
