"""DICOM Segmentation objects from label maps (highdicom): readers' reads, AI drafts and accepted labels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from curata.errors import AnnotationError


def _hex_to_cielab(colour: str) -> tuple[int, int, int]:
    from highdicom.color import CIELabColor

    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = lin(r), lin(g), lin(b)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    lab = 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))
    return CIELabColor(*lab).value  # type: ignore[no-any-return]


def write_seg(
    source_images: Sequence[Any],
    labels: np.ndarray,
    label_defs: Sequence[Any],
    *,
    series_description: str,
    draft: bool = False,
    algorithm: str = "",
    series_number: int = 900,
) -> bytes:
    """A DICOM SEG of ``labels`` (slices in the order of ``source_images``) with one segment per
    segmentation label of the schema; ``draft`` marks an AI pre-annotation (algorithm type
    AUTOMATIC, the model named) so no viewer or reader mistakes it for a reader's work."""
    import io

    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    seg_defs = sorted((d for d in label_defs if d.kind == "segmentation"), key=lambda d: d.value)
    if not seg_defs:
        raise AnnotationError("the schema has no segmentation label")
    if labels.shape[0] != len(source_images):
        raise AnnotationError(f"{labels.shape[0]} label slices for {len(source_images)} images")
    descriptions, planes = [], []
    for number, d in enumerate(seg_defs, start=1):
        kwargs: dict[str, Any] = {}
        if draft:
            kwargs["algorithm_type"] = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
            kwargs["algorithm_identification"] = hd.AlgorithmIdentificationSequence(
                name=algorithm or "curata-assist",
                version="1",
                family=codes.cid7162.ArtificialIntelligence,
            )
        else:
            kwargs["algorithm_type"] = hd.seg.SegmentAlgorithmTypeValues.MANUAL
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=d.name,
            segmented_property_category=hd.sr.CodedConcept(*_code(d.category)),
            segmented_property_type=hd.sr.CodedConcept(d.code, _scheme(d.scheme), d.meaning),
            **kwargs,
        )
        desc.RecommendedDisplayCIELabValue = list(_hex_to_cielab(d.colour))
        descriptions.append(desc)
        planes.append(labels == d.value)
    stack = np.stack(planes, axis=-1).astype(np.uint8)
    with warnings.catch_warnings():  # pseudonyms and user names are single-component person names
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = hd.seg.Segmentation(
            source_images=list(source_images),
            pixel_array=stack,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="Curata",
            manufacturer_model_name="curata-annotate",
            software_versions="1",
            device_serial_number="0",
            # no Content Creator's Name (PS3.15 Table E.1-1: Z): the reader is the catalog's, from the
            # account that sent or filed the object; a name here would be trusted by no one
            series_description=series_description[:64],
            content_label="DRAFT" if draft else "READ",
            omit_empty_frames=True,
        )
    if getattr(source_images[0], "PatientIdentityRemoved", "") == "YES":
        seg.PatientIdentityRemoved = "YES"
        if hasattr(source_images[0], "DeidentificationMethod"):
            seg.DeidentificationMethod = source_images[0].DeidentificationMethod
    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def _scheme(s: str) -> str:
    return {"RADLEX": "RADLEX", "SCT": "SCT", "DCM": "DCM"}.get(s.upper(), s)


def _code(c: Sequence[str]) -> tuple[str, str, str]:
    scheme, value, meaning = c  # as a schema writes it: (scheme, code, meaning)
    return value, _scheme(scheme), meaning
