"""Slide QC validation: plant each defect at several severities into clean slides and measure.

``plant(image, defect, severity, seed)`` returns a defective copy of an RGB slide image (or the frames
to corrupt); ``validate(slides)`` runs every (slide, defect, severity) through the same path the QC
uses on a stored slide (JPEG tiles -> assemble -> metrics -> the default rules) and reports, per
defect class, the sensitivity at each severity and the false-positive rate on the clean slides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from curata.select.metrics.wsi import SlideLevel, measure_levels, tissue_mask
from curata.select.rules import apply, default_ruleset

# defect class -> the default rule that should catch it
DEFECTS: dict[str, str] = {
    "no_tissue": "slide_no_tissue",
    "blur": "slide_out_of_focus",
    "pen": "slide_pen_marks",
    "fold": "slide_folds",
    "bubble": "slide_bubbles",
    "clipping": "slide_clipped",
    "corrupt_tiles": "slide_corrupted_tiles",
}
SEVERITIES = (1, 2, 3)


def _tissue_centre(img: np.ndarray) -> tuple[int, int]:
    m = tissue_mask(img)
    if not m.any():
        return img.shape[0] // 2, img.shape[1] // 2
    ys, xs = np.nonzero(m)
    i = len(ys) // 2
    order = np.argsort(ys * img.shape[1] + xs)
    return int(ys[order[i]]), int(xs[order[i]])


def plant(img: np.ndarray, defect: str, severity: int, seed: int = 0) -> np.ndarray:
    """A defective copy of ``img`` (H x W x 3 uint8). ``corrupt_tiles`` is planted in frames instead."""
    rng = np.random.default_rng(seed * 31 + severity)
    out = img.copy()
    h, w = img.shape[:2]
    tissue = tissue_mask(img)
    if defect == "no_tissue":
        keep = {1: 0.015, 2: 0.006, 3: 0.0}[severity]
        bg = np.array([243, 243, 243], np.uint8)
        cy, cx = _tissue_centre(img)
        r = np.sqrt(keep * h * w / np.pi)
        yy, xx = np.ogrid[:h, :w]
        island = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
        out[~island] = bg
    elif defect == "blur":
        sigma = {1: 1.5, 2: 3.0, 3: 5.0}[severity]
        out = ndi.gaussian_filter(img.astype(np.float32), sigma=(sigma, sigma, 0)).astype(np.uint8)
    elif defect == "pen":
        colour = [(20, 60, 200), (30, 150, 60), (15, 15, 15)][int(rng.integers(0, 3))]
        width = {1: 3, 2: 6, 3: 12}[severity]
        length = {1: 0.25, 2: 0.5, 3: 0.8}[severity]
        y0 = int(rng.uniform(0.2, 0.8) * h)
        x0 = int(0.1 * w)
        x1 = int(x0 + length * w)
        for x in range(x0, min(x1, w)):
            y = int(y0 + 0.1 * h * np.sin(x / max(w, 1) * 6))
            out[max(0, y - width // 2) : y + width // 2 + 1, x] = colour
    elif defect == "fold":
        k = {1: 2.6, 2: 3.2, 3: 4.0}[severity]
        cy, cx = _tissue_centre(img)
        band = np.zeros((h, w), bool)
        half = max(3, int(0.06 * min(h, w)))
        band[max(0, cy - half) : cy + half, :] = True
        sel = band & tissue
        f = out[sel].astype(np.float32) / 255.0
        out[sel] = (255 * np.power(np.maximum(f, 1 / 255), k)).astype(np.uint8)
    elif defect == "bubble":
        r = {1: 0.04, 2: 0.07, 3: 0.11}[severity] * min(h, w)
        cy, cx = _tissue_centre(img)
        yy, xx = np.ogrid[:h, :w]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        out[d <= r] = (238, 236, 240)
        ring = (d > r) & (d <= r + max(2, r * 0.12))
        out[ring] = (70, 60, 80)
    elif defect == "clipping":
        gain = {1: 1.5, 2: 2.0, 3: 3.0}[severity]
        out = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    elif defect == "corrupt_tiles":
        pass
    else:
        raise ValueError(f"unknown defect {defect!r}")
    return out


def to_level(
    img: np.ndarray, tile: int = 256, *, corrupt: int = 0, seed: int = 0, codec: str = "jpeg"
) -> SlideLevel:
    """JPEG (``codec="j2k"``: JPEG 2000) tiles of an RGB image as a stored level; ``corrupt`` frames
    truncated or emptied."""
    import imagecodecs

    h, w = img.shape[:2]
    frames = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = np.full((tile, tile, 3), 255, np.uint8)
            part = img[y : y + tile, x : x + tile]
            t[: part.shape[0], : part.shape[1]] = part
            if codec == "j2k":
                frames.append(bytes(imagecodecs.jpeg2k_encode(t, level=0, codecformat="J2K")))
            else:
                frames.append(bytes(imagecodecs.jpeg8_encode(t, level=90)))
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(frames), size=min(corrupt, len(frames)), replace=False):
        frames[int(i)] = frames[int(i)][: len(frames[int(i)]) // 3] if i % 2 else b""
    return SlideLevel(w, h, tile, tile, frames, True, 0.5)


_RULES: Any = None


def fired(metrics: dict[str, Any]) -> set[str]:
    global _RULES
    _RULES = _RULES or default_ruleset()
    record = {"modality": "SM", **{f"qc.{k}": v for k, v in metrics.items()}}
    _passed, _warned, firings = apply(_RULES, record)
    return {f.rule for f in firings}


@dataclass
class ClassResult:
    defect: str
    rule: str
    detected: dict[int, int]
    planted: dict[int, int]
    false_positives: int
    clean: int

    @property
    def sensitivity(self) -> dict[int, float]:
        return {s: self.detected[s] / self.planted[s] for s in self.planted if self.planted[s]}

    @property
    def fpr(self) -> float:
        return self.false_positives / self.clean if self.clean else 0.0


def validate(slides: list[np.ndarray], defects: list[str] | None = None) -> list[ClassResult]:
    """Sensitivity per severity and false-positive rate per defect class over ``slides`` (clean)."""
    defects = defects or list(DEFECTS)
    clean_fired = [fired(measure_levels([to_level(img)])[0]) for img in slides]
    results = []
    for defect in defects:
        rule = DEFECTS[defect]
        res = ClassResult(
            defect, rule, dict.fromkeys(SEVERITIES, 0), dict.fromkeys(SEVERITIES, 0), 0, len(slides)
        )
        res.false_positives = sum(rule in f for f in clean_fired)
        for i, img in enumerate(slides):
            for sev in SEVERITIES:
                if defect == "corrupt_tiles":
                    level = to_level(img, corrupt={1: 1, 2: 2, 3: 4}[sev], seed=i)
                else:
                    level = to_level(plant(img, defect, sev, seed=i))
                res.planted[sev] += 1
                res.detected[sev] += rule in fired(measure_levels([level])[0])
        results.append(res)
    return results


def table(results: list[ClassResult]) -> str:
    lines = [
        "| defect | rule | sens. sev 1 | sens. sev 2 | sens. sev 3 | FPR (clean) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.sensitivity
        lines.append(
            f"| {r.defect} | {r.rule} | {s.get(1, 0):.2f} | {s.get(2, 0):.2f} | {s.get(3, 0):.2f} | "
            f"{r.fpr:.2f} ({r.false_positives}/{r.clean}) |"
        )
    return "\n".join(lines)


plant_slide_defect = plant  # the public name (curata.select.plant_slide_defect)
