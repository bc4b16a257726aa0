"""Whole-slide images at the edge: vendor readers, slide de-identification, DICOM-WSI conversion.

>>> from curata.collect.wsi import SlideDeidentifier, SlideIdentity
>>> res = SlideDeidentifier(site_key).deidentify_bytes(raw_svs, source="a.svs",
...                                                   identity=SlideIdentity(patient_id="123"))
>>> res.output_bytes, res.record.removed_images, res.file_name
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.collect.wsi._ingest import file_slide, ingest_mrxs_outcome, ingest_slide_outcome
    from curata.collect.wsi.annotations import SlideAnnotation, read_geojson, to_geojson
    from curata.collect.wsi.deid import (
        SlideDeidConfig,
        SlideDeidentifier,
        SlideDeidResult,
        SlideIdentity,
        slide_pseudonym,
    )
    from curata.collect.wsi.dicomize import SlideInfo, slide_info, to_dicom
    from curata.collect.wsi.formats import SlideFormat, is_slide_name
    from curata.collect.wsi.frames import LazyFrames, decode_tile, open_frames, pixel_spacing_um, read_frames
    from curata.collect.wsi.models import Slide
    from curata.collect.wsi.reader import SlideReader
    from curata.collect.wsi.service import (
        LabelImageRemoved,
        SlideSettings,
        clean_wsm,
        deidentify_slide,
        is_sidecar,
        is_wsm,
        looks_like_slide,
        mrxs_role,
        refuse_label,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "file_slide": "_ingest",
        "SlideAnnotation": "annotations",
        "read_geojson": "annotations",
        "to_geojson": "annotations",
        "ingest_slide_outcome": "_ingest",
        "ingest_mrxs_outcome": "_ingest",
        "SlideDeidConfig": "deid",
        "SlideDeidentifier": "deid",
        "SlideDeidResult": "deid",
        "SlideIdentity": "deid",
        "slide_pseudonym": "deid",
        "SlideInfo": "dicomize",
        "slide_info": "dicomize",
        "to_dicom": "dicomize",
        "SlideFormat": "formats",
        "is_slide_name": "formats",
        "read_frames": "frames",
        "decode_tile": "frames",
        "LazyFrames": "frames",
        "open_frames": "frames",
        "pixel_spacing_um": "frames",
        "Slide": "models",
        "SlideReader": "reader",
        "LabelImageRemoved": "service",
        "SlideSettings": "service",
        "clean_wsm": "service",
        "deidentify_slide": "service",
        "is_sidecar": "service",
        "is_wsm": "service",
        "looks_like_slide": "service",
        "mrxs_role": "service",
        "refuse_label": "service",
    },
)

__all__ = [
    "LabelImageRemoved",
    "LazyFrames",
    "Slide",
    "SlideAnnotation",
    "SlideDeidConfig",
    "SlideDeidResult",
    "SlideDeidentifier",
    "SlideFormat",
    "SlideIdentity",
    "SlideInfo",
    "SlideReader",
    "SlideSettings",
    "clean_wsm",
    "decode_tile",
    "deidentify_slide",
    "file_slide",
    "ingest_mrxs_outcome",
    "ingest_slide_outcome",
    "is_sidecar",
    "is_slide_name",
    "is_wsm",
    "looks_like_slide",
    "mrxs_role",
    "open_frames",
    "pixel_spacing_um",
    "read_frames",
    "read_geojson",
    "refuse_label",
    "slide_info",
    "slide_pseudonym",
    "to_dicom",
    "to_geojson",
]
