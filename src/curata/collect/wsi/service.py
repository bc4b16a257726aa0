"""Slides through ingest: vendor files de-identified, converted to DICOM-WSI and filed; DICOM-WSI cleaned.

``curata ingest`` hands every input whose first bytes are a TIFF (SVS, NDPI, Philips, OME, generic)
to :func:`ingest_slide`; DICOM VL Whole Slide Microscopy instances (from files, C-STORE or STOW)
go through the PS3.15 engine first and then :func:`clean_wsm`.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from curata.catalog import RawView
from curata.collect.deid.pseudonyms import Pseudonymizer
from curata.collect.deid.text import Identifiers, find_identifier
from curata.collect.wsi.deid import (
    Needles,
    SlideDeidConfig,
    SlideDeidentifier,
    SlideDeidResult,
    SlideIdentity,
    device_like,
    slide_pseudonym,
    specimen_fields,
)
from curata.collect.wsi.dicomize import MAGNIFICATION_RANGE, SlideInfo, slide_info, to_dicom
from curata.collect.wsi.formats import WSM_SOP_CLASS, is_sidecar_name, is_tiff, positive_number
from curata.collect.wsi.labels import DEFAULT_SIZE, render_label
from curata.errors import DeidError, InputError

_SPECIMEN_TEXT = (
    "SpecimenShortDescription",
    "SpecimenDetailedDescription",
    "ContainerDescription",
    "LabelText",
    "BarcodeValue",
    "ImageComments",
)


LABEL_CHOICES = ("removed", "generated")


@dataclass
class SlideSettings:
    """The site's ``[wsi]`` settings."""

    keep_vendor_file: bool = True
    keep_make_model: bool = True
    tile_size: int = 512
    label: str = "removed"  # or "generated": a label showing only the slide pseudonym

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> SlideSettings:
        cfg = cfg or {}
        label = str(cfg.get("label", "removed")).lower()
        if label not in LABEL_CHOICES:
            raise InputError(
                f"[wsi] label = {label!r} is not one of {', '.join(LABEL_CHOICES)}",
                hint='"removed" drops the label image; "generated" replaces it by the slide pseudonym',
            )
        return cls(
            keep_vendor_file=bool(cfg.get("keep_vendor_file", True)),
            keep_make_model=bool(cfg.get("keep_make_model", True)),
            tile_size=int(cfg.get("tile_size", 512)),
            label=label,
        )

    @property
    def generated_label(self) -> bool:
        return self.label == "generated"


@dataclass
class SlideIngest:
    """A de-identified slide ready for the store: its DICOM-WSI instances and (maybe) its vendor file."""

    deid: SlideDeidResult
    info: SlideInfo
    instances: list[bytes]
    datasets: list[Dataset]
    vendor_bytes: bytes | None
    slide_fields: dict[str, Any] = field(default_factory=dict)


def looks_like_slide(name: str, head: bytes) -> bool:
    """A TIFF that is not a DICOM file (a DICOM preamble may itself hold a TIFF header: dual files)."""
    return is_tiff(head[:8]) and head[128:132] != b"DICM"


def is_sidecar(name: str) -> bool:
    return is_sidecar_name(name)


_MRXS_PART = re.compile(r"(?i)(^|[/\\!])(slidedat\.ini|index\.dat|data\d+\.dat)$")


def mrxs_role(name: str) -> str | None:
    """``slide`` for a 3DHISTECH .mrxs file, ``part`` for a file of its data folder, else None."""
    if name.lower().endswith(".mrxs"):
        return "slide"
    return "part" if _MRXS_PART.search(name) else None


def read_sidecar(name: str) -> SlideIdentity | None:
    """``<slide>.json`` beside a file on disk (zip members: not supported, the slide gets its own key)."""
    if "!" in name:
        return None
    side = Path(name + ".json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text("utf-8"))
    except (OSError, ValueError) as exc:  # the sidecar's name is the slide's: often the patient's too
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise InputError(f"the slide's sidecar (.json) is not valid JSON ({where})") from exc
    if not isinstance(data, dict):
        raise InputError("the slide's sidecar (.json) must hold a JSON object")
    return SlideIdentity.from_mapping(data)


def deidentify_slide(
    raw: bytes,
    *,
    key: bytes,
    source: str,
    identity: SlideIdentity | None,
    settings: SlideSettings | None = None,
    pseudo: Pseudonymizer | None = None,
) -> SlideIngest:
    """De-identify one vendor slide, check it still opens, and convert it to DICOM-WSI."""
    settings = settings or SlideSettings()
    pseudo = pseudo or Pseudonymizer(key)
    deider = SlideDeidentifier(
        key,
        config=SlideDeidConfig(
            keep_make_model=settings.keep_make_model, generated_label=settings.generated_label
        ),
        pseudo=pseudo,
    )
    res = deider.deidentify_bytes(raw, source=source, identity=identity)
    fd, path = tempfile.mkstemp(suffix="." + res.format.value)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(res.output_bytes)
        info = slide_info(path)
    finally:
        Path(path).unlink(missing_ok=True)
    info.stain, info.organ, notes = specimen_fields(identity)  # the two sidecar values a slide keeps
    res.record.rewritten = sorted({*res.record.rewritten, *notes})
    slide_key = (identity and (identity.specimen_id or identity.accession)) or res.record.input_sha256
    dicom = to_dicom(
        res.output_bytes,
        suffix=res.format.value,
        pseudo=pseudo,
        patient_pseudonym=res.patient_pseudonym,
        slide_id=res.slide_id,
        slide_key=slide_key,
        info=info,
        tile_size=settings.tile_size,
        label=render_label(res.slide_id, *(res.label_size or DEFAULT_SIZE))
        if settings.generated_label
        else None,
    )
    for blob, ds in zip(dicom.instances, dicom.datasets, strict=True):
        _gate_dicom(blob, ds, res.needles, res.ids)
    fields = {
        "slide_id": res.slide_id,
        "vendor": res.format.name.lower(),
        **{k: v for k, v in info.as_dict().items() if k not in ("vendor", "level_sizes")},
        "removed_images": res.record.removed_images,
    }
    return SlideIngest(
        deid=res,
        info=info,
        instances=dicom.instances,
        datasets=dicom.datasets,
        vendor_bytes=res.output_bytes if settings.keep_vendor_file else None,
        slide_fields=fields,
    )


def convert_mrxs_slide(
    path: Path,
    raw: bytes,
    *,
    key: bytes,
    identity: SlideIdentity | None,
    settings: SlideSettings | None = None,
    pseudo: Pseudonymizer | None = None,
) -> SlideIngest:
    """A 3DHISTECH MRXS slide (``path`` with its data folder) as DICOM-WSI: tiles re-encoded from
    OpenSlide reads, label/macro never read, the vendor folder never kept (see ``mrxs.py``)."""
    from curata.collect.wsi.mrxs import convert_mrxs

    settings = settings or SlideSettings()
    res, info, dicom = convert_mrxs(
        path,
        raw,
        key=key,
        identity=identity,
        tile_size=settings.tile_size,
        generated_label=settings.generated_label,
        pseudo=pseudo,
    )
    for blob, ds in zip(dicom.instances, dicom.datasets, strict=True):
        _gate_dicom(blob, ds, res.needles, res.ids)
    fields = {
        "slide_id": res.slide_id,
        "vendor": "mirax",
        **{k: v for k, v in info.as_dict().items() if k not in ("vendor", "level_sizes")},
        "removed_images": res.record.removed_images,
    }
    return SlideIngest(
        deid=res,
        info=info,
        instances=dicom.instances,
        datasets=dicom.datasets,
        vendor_bytes=None,  # never: Slidedat.ini, Index.dat and the label image hold the identity
        slide_fields=fields,
    )


def _gate_dicom(blob: bytes, ds: Dataset, needles: set[str], ids: Identifiers | None = None) -> None:
    """The converted instance's header (all but its frames) must not hold any identifying value; the
    site's identity (``ids``) in any spelling (radiology's rules)."""
    end = len(blob)
    if "PixelData" in ds:
        idx = blob.rfind(b"\xe0\x7f\x10\x00")
        end = idx if idx > 0 else end
    if ids is not None and find_identifier(blob[:end], ids.gate_needles()):
        raise DeidError(
            "final gate: the patient identity, in some spelling, reached the DICOM-WSI header of the slide"
        )
    hay = blob[:end].lower()
    for n in needles:
        pat = re.escape(n.lower().encode("utf-8", "replace"))
        if re.search(rb"(?<![a-z0-9])" + pat + rb"(?![a-z0-9])", hay):
            raise DeidError(
                "final gate: an identifying value of the slide reached its DICOM-WSI header; not released"
            )


# ---------------------------------------------------------------------- DICOM-WSI from the engine
class LabelImageRemoved(DeidError):
    """A DICOM-WSI LABEL or OVERVIEW instance: dropped at the edge, never stored."""


def is_wsm(ds: Dataset | RawView) -> bool:
    """A VL Whole Slide Microscopy Image (from its data set, or its bytes' view)."""
    return str(ds.get("SOPClassUID", "")) == WSM_SOP_CLASS


def refuse_label(ds: Dataset) -> None:
    """LABEL and OVERVIEW images photograph the glass label (names, barcodes): they never leave the site."""
    kinds = {str(v).upper() for v in (ds.get("ImageType") or [])}
    if kinds & {"LABEL", "OVERVIEW"}:
        kind = "LABEL" if "LABEL" in kinds else "OVERVIEW"
        raise LabelImageRemoved(
            f"slide {kind.lower()} image removed at the edge (ImageType {kind})",
            hint="label and overview images carry the glass label; Curata never stores them",
        )
    if str(ds.get("SpecimenLabelInImage", "") or "").strip().upper() == "YES":  # any other kind of image
        raise LabelImageRemoved(
            "slide image showing its label removed at the edge (SpecimenLabelInImage YES)",
            hint="an image that shows the glass label carries its names and barcodes; Curata never stores it",
        )


def clean_wsm(output: bytes, ds: Dataset, raw: bytes, pseudo: Pseudonymizer) -> tuple[bytes, Dataset]:
    """After the PS3.15 engine: the container and specimen identifiers become the slide pseudonym,
    specimen free text and image comments go, and the result passes a gate for the input's values."""
    refuse_label(ds)
    original = _original_wsm(raw)
    container = str(original.get("ContainerIdentifier", "") or "") if original is not None else ""
    slide_id = slide_pseudonym(pseudo, container or str(ds.SeriesInstanceUID))
    ds.ContainerIdentifier = slide_id
    for kw in _SPECIMEN_TEXT:
        if kw in ds:
            delattr(ds, kw)
    for spec in ds.get("SpecimenDescriptionSequence") or []:
        spec.SpecimenIdentifier = slide_id
        for kw in (*_SPECIMEN_TEXT, "SpecimenPreparationSequence"):
            if kw in spec:
                delattr(spec, kw)
        spec.SpecimenPreparationSequence = []
        spec.IssuerOfTheSpecimenIdentifierSequence = []
    for kw in ("AlternateContainerIdentifierSequence", "IssuerOfTheContainerIdentifierSequence"):
        if kw in ds:
            setattr(ds, kw, [])
    ds.SpecimenLabelInImage = "NO"
    if "DeviceSerialNumber" in ds:  # the scanner's serial, as removed from vendor files
        ds.DeviceSerialNumber = "UNKNOWN"
    ids = _wsm_identity(original)
    _device_strings(ds, ids)
    for path in ds.get("OpticalPathSequence") or []:
        if "OpticalPathDescription" in path:  # free text a scanner operator types
            del path.OpticalPathDescription
        if (
            "ObjectiveLensPower" in path
            and positive_number(path.ObjectiveLensPower, *MAGNIFICATION_RANGE) is None
        ):
            del path.ObjectiveLensPower  # (a number that is no lens's: 19610412)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    out = buf.getvalue()
    needles = Needles()
    for value in _wsm_values(original):
        needles.add_identity(value)
    _gate_dicom(out, ds, needles.identity, ids)
    return out, ds


_WSM_DEVICE = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")


def _wsm_identity(original: Dataset | None) -> Identifiers:
    """The input's own patient (name, IDs, birth date, accession) as a slide's sidecar gives it: what
    the device strings lose and the final gate finds in any spelling."""
    if original is None:
        return Identifiers()
    others = (
        [str(v) for v in (original.get("OtherPatientIDs") or []) if v]
        if original.get("OtherPatientIDs")
        else []
    )
    return SlideIdentity(
        patient_id=str(original.get("PatientID") or "") or None,
        patient_name=str(original.get("PatientName") or "") or None,
        birth_date=str(original.get("PatientBirthDate") or "") or None,
        accession=str(original.get("AccessionNumber") or "") or None,
        extra=[*others, *_wsm_values(original)],
    ).identifiers()


def _device_strings(ds: Dataset, ids: Identifiers) -> None:
    """Manufacturer, model and software versions of a DICOM-WSI keep a value only as a vendor file's
    Make, Model and Software do: in a device string's shape and holding no identity (an operator's name
    or the patient's ID digits there went through the PS3.15 engine, which keeps these attributes)."""
    needles = ids.gate_needles()
    for kw in _WSM_DEVICE:
        if kw not in ds:
            continue
        elem = ds[kw]
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        clean = [
            v
            if device_like(str(v)) and not find_identifier(str(v).encode("utf-8", "replace"), needles)
            else "unknown"
            for v in values
            if v not in (None, "")
        ]
        if clean != values:
            elem.value = clean if len(clean) > 1 else (clean[0] if clean else "")


def _original_wsm(raw: bytes) -> Dataset | None:
    try:
        return pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, force=True)
    except Exception:
        return None


def _wsm_values(ds: Dataset | None) -> list[str]:
    """Identifying slide values of a DICOM-WSI input: container, specimen and label fields."""
    if ds is None:
        return []
    values: list[str] = []
    for kw in ("ContainerIdentifier", "LabelText", "BarcodeValue", "DeviceSerialNumber"):
        if ds.get(kw):
            values.append(str(ds.get(kw)))
    for spec in ds.get("SpecimenDescriptionSequence") or []:
        for kw in ("SpecimenIdentifier", "LabelText", "BarcodeValue"):
            if spec.get(kw):
                values.append(str(spec.get(kw)))
    return values
