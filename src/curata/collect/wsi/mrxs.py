"""3DHISTECH MRXS (MIRAX) slides: read through OpenSlide, converted to DICOM-WSI, nothing else kept.

An MRXS slide is several files: ``slide.mrxs`` and a folder ``slide/`` with ``Slidedat.ini`` (the
slide's name, ID, project, dates, barcode, operator), ``Index.dat`` (which repeats the slide ID) and
``Data*.dat`` (JPEG/PNG/BMP camera images of every level *and* the label, macro and preview images,
packed together). It cannot be cleaned in place the way a TIFF can: the identifying images sit in
the same data files as the tiles, the slide ID is the key that binds Index.dat to Slidedat.ini, and
OpenSlide would refuse a folder whose identity was rewritten inconsistently. So Curata:

- reads the pyramid with OpenSlide, one tile-sized region at a time (never a whole level), and
  writes it as DICOM-WSI frames re-encoded as JPEG (quality ``JPEG_QUALITY``): **MRXS is the only
  format whose tiles are re-encoded** (the camera images overlap and are stitched by position, so
  their bytes cannot become DICOM tiles unchanged);
- never reads the label (``ScanDataLayer_SlideBarcode``), the macro (``ScanDataLayer_SlideThumbnail``)
  or the preview: they are not carried (a generated label can be added, ``[wsi] label``);
- does **not** keep the original vendor folder, whatever ``[wsi] keep_vendor_file`` says: it holds
  the identity in Slidedat.ini, Index.dat and the label image;
- gates every DICOM header for every identifying value of Slidedat.ini, the sidecar and the names.

A broken folder (missing, unreadable, OpenSlide refuses it) is quarantined with a clear reason that
names no file.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import re
from pathlib import Path
from typing import Any

from curata.collect.deid.pseudonyms import Pseudonymizer
from curata.collect.deid.text import Identifiers
from curata.collect.wsi.deid import (
    Needles,
    SlideDeidRecord,
    SlideDeidResult,
    SlideIdentity,
    _add_id,
    _add_name,
    patient_key,
    slide_pseudonym,
    specimen_fields,
)
from curata.collect.wsi.dicomize import (
    MPP_RANGE,
    JPEGBaseline8Bit,
    SlideInfo,
    _Level,
    slide_info,
    to_dicom,
)
from curata.collect.wsi.formats import SlideFormat, positive_number
from curata.errors import InputError

JPEG_QUALITY = 92
# Slidedat.ini [GENERAL] keys that are structural or technical, hence kept out of the needles
_TECHNICAL = re.compile(
    r"(?i)^(slide_version|imagenumber_[xy]|objective_magnification|cameraimagedivisionsperside|"
    r"slide_type|.*_version|.*_resolution|.*_count|.*_width|.*_height|.*_format|.*_factor)$"
)


_IDENTIFYING_KEY = re.compile(r"(?i)barcode|label|name|_id$|date|time|operator|user|patient")
_STRUCTURAL_VALUE = re.compile(r"(?i)(jpeg|png|bmp24|scan data layer|slide zoom level|scandatalayer_\w+)")


def mrxs_folder(path: Path) -> Path:
    return path.with_suffix("")


def _read_ini(folder: Path) -> configparser.ConfigParser:
    ini = folder / "Slidedat.ini"
    if not ini.is_file():
        raise InputError(
            "MRXS slide without its data folder (Slidedat.ini not found)",
            hint="copy the .mrxs file together with the folder of the same name (Slidedat.ini, Index.dat, Data*.dat)",
        )
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        text = ini.read_bytes().decode("utf-8-sig", "replace")
        parser.read_string(text)
    except (OSError, configparser.Error) as exc:
        raise InputError(f"MRXS Slidedat.ini cannot be read ({type(exc).__name__})") from exc
    if not parser.has_section("GENERAL"):
        raise InputError("MRXS Slidedat.ini has no [GENERAL] section (not a MIRAX slide)")
    return parser


def identifying_values(parser: configparser.ConfigParser) -> list[str]:
    """Every free-text value of Slidedat.ini that may identify: all of [GENERAL] but the technical
    keys, and any barcode/label/name/ID/date value of any section."""
    return [value for _key, value in identifying_items(parser)]


def identifying_items(parser: configparser.ConfigParser) -> list[tuple[str, str]]:
    """``identifying_values`` with their keys."""
    out: list[tuple[str, str]] = []
    for section in parser.sections():
        for key, value in parser.items(section):
            value = value.strip()
            if not value:
                continue
            general = section == "GENERAL" and not _TECHNICAL.match(key)
            named = bool(_IDENTIFYING_KEY.search(key)) and not _STRUCTURAL_VALUE.fullmatch(value)
            if general or named:
                out.append((key, value))
    return out


_INI_DATE = re.compile(r"(\d{4})[.\-/:_ ]?(\d{2})[.\-/:_ ]?(\d{2})|(\d{1,2})[.\-/](\d{1,2})[.\-/](\d{4})")
_INI_NAME_KEY = re.compile(r"(?i)name|operator|user|patient|project|title")
_INI_ID_KEY = re.compile(r"(?i)barcode|label|_id$|^id$|accession|mrn")


def add_ini_identity(ids: Identifiers, key: str, value: str) -> None:
    """A Slidedat.ini value as the slide's own identity, matched as radiology's gate matches a patient's
    identifiers (any case, separators or none, an ID's number without its prefix, dates in any written
    form): a name-like key's value as a person's name, an ID-like key's value as an ID, a birth date's
    value as a date (not the scan's: a header made the day of the scan holds it), and every token
    holding digits (an accession in the slide name) as an ID."""
    if re.search(r"(?i)date|time|birth|dob", key):
        if not re.search(r"(?i)birth|dob", key):
            return  # the scan's own date: a DICOM-WSI header made today holds today's date
        m = _INI_DATE.search(value)
        if m and m.group(1):
            ids.add_birth_date(f"{m.group(1)}{m.group(2)}{m.group(3)}")
        elif m:
            ids.add_birth_date(f"{m.group(6)}{int(m.group(5)):02d}{int(m.group(4)):02d}")
        return
    if _INI_ID_KEY.search(key):
        if len(value) >= 4:  # "1", "12": an index, not an identifier (the header holds such numbers)
            _add_id(ids, value)
    elif _INI_NAME_KEY.search(key) and re.search(r"[^\W\d_]{3}", value):
        _add_name(ids, value)
    elif Needles._worth(value):
        ids.add_word(value)
    for token in re.split(r"[\s,;|^]+", value):
        if token != value and len(token) >= 5 and sum(c.isdigit() for c in token) >= 3:
            _add_id(ids, token)  # ACC-5521907, S24-123 in a slide name


def mrxs_digest(path: Path, raw: bytes) -> str:
    """The slide's input digest: the .mrxs file with its Slidedat.ini and Index.dat (the .mrxs alone
    is a few bytes that may be equal for different slides)."""
    h = hashlib.sha256(raw)
    folder = mrxs_folder(path)
    for name in ("Slidedat.ini", "Index.dat"):
        part = folder / name
        if part.is_file():
            h.update(part.read_bytes())
    return h.hexdigest()


def _levels_openslide(path: str, tile_size: int) -> list[_Level]:
    """Each OpenSlide level as JPEG frames, read one tile-sized region at a time."""
    import openslide
    from PIL import Image

    levels: list[_Level] = []
    with openslide.OpenSlide(path) as slide:
        mpp = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
        for level, (w, h) in enumerate(slide.level_dimensions):
            ds = slide.level_downsamples[level]
            tw = th = min(tile_size, max(w, h))
            frames: list[bytes] = []
            for y in range(0, h, th):
                for x in range(0, w, tw):
                    region = slide.read_region((round(x * ds), round(y * ds)), level, (tw, th))
                    card = Image.new("RGB", region.size, "white")
                    card.paste(region, mask=region.getchannel("A"))
                    buf = io.BytesIO()
                    card.save(buf, "JPEG", quality=JPEG_QUALITY)
                    frames.append(buf.getvalue())
            base = positive_number(mpp, *MPP_RANGE)
            level_mpp = base * ds if base else None
            levels.append(_Level(w, h, tw, th, level_mpp, frames, JPEGBaseline8Bit, "YBR_FULL_422", True))
    return levels


def convert_mrxs(
    path: Path,
    raw: bytes,
    *,
    key: bytes,
    identity: SlideIdentity | None,
    tile_size: int = 512,
    generated_label: bool = False,
    pseudo: Pseudonymizer | None = None,
) -> tuple[SlideDeidResult, SlideInfo, Any]:
    """Open an MRXS slide with OpenSlide and convert it to DICOM-WSI (pseudonyms only)."""
    import openslide

    from curata.collect.reasons import sanitize

    pseudo = pseudo or Pseudonymizer(key)
    folder = mrxs_folder(path)
    parser = _read_ini(folder)
    in_sha = mrxs_digest(path, raw)
    try:
        info = slide_info(str(path))
        levels = _levels_openslide(str(path), tile_size)
    except InputError as exc:
        raise InputError(f"MRXS: {_scrub(exc.reason, path)}") from exc
    except openslide.OpenSlideError as exc:
        raise InputError(f"MRXS tiles cannot be decoded: {sanitize(_scrub(str(exc), path))}") from exc
    info.vendor = "mirax"
    info.scanner = info.scanner or "3DHISTECH"
    info.compression = "jpeg (re-encoded)"
    info.stain, info.organ, notes = specimen_fields(identity)  # the two sidecar values a slide keeps

    slide_key = (identity and (identity.specimen_id or identity.accession)) or in_sha
    pkey = patient_key(identity, slide_key)
    pseudonym = pseudo.patient(pkey)
    slide_id = slide_pseudonym(pseudo, slide_key)
    needles = Needles(identity.identifiers() if identity else None)
    for secret in identity.secrets() if identity else []:
        needles.add_identity(secret)
    for ini_key, value in identifying_items(parser):
        needles.add_identity(value)
        add_ini_identity(needles.ids, ini_key, value)
    stem = path.stem
    if re.search(r"[\d_\- ^]", stem) and needles._worth(stem):
        needles.identity.add(stem)
    label = None
    if generated_label:
        from curata.collect.wsi.labels import DEFAULT_SIZE, render_label

        label = render_label(slide_id, *DEFAULT_SIZE)
    dicom = to_dicom(
        b"",
        suffix="mrxs",
        pseudo=pseudo,
        patient_pseudonym=pseudonym,
        slide_id=slide_id,
        slide_key=slide_key,
        info=info,
        tile_size=tile_size,
        label=label,
        levels=levels,
    )
    record = SlideDeidRecord(
        input_sha256=in_sha,
        output_sha256="",
        format="mirax",
        patient_pseudonym=pseudonym,
        slide_id=slide_id,
        removed_images=["label (not read)", "macro (not read)", "thumbnail (not read)"],
        dropped_tags=[],
        rewritten=[f"tiles re-encoded as JPEG q{JPEG_QUALITY}", "vendor folder not kept", *notes],
        generated_label=generated_label,
    )
    reid = [
        {
            "kind": "patient",
            "pseudonym": pseudonym,
            "patient_id": (identity.patient_id if identity else None) or "",
            "patient_name": (identity.patient_name if identity else None) or "",
        },
        {"kind": "slide", "pseudonym": pseudonym, "original": slide_key, "new": slide_id},
    ]
    res = SlideDeidResult(
        b"",
        SlideFormat.MIRAX,
        record,
        pseudonym,
        slide_id,
        pseudo.date_shift(pkey),
        [],
        reid,
        needles.identity,
        ids=needles.ids,  # the sidecar's identity and Slidedat.ini's, matched in any spelling
    )
    return res, info, dicom


def _scrub(text: str, path: Path) -> str:
    """OpenSlide's messages name files: the folder and stem (which may be a patient's name) go."""
    for part in sorted({str(mrxs_folder(path)), str(path), path.stem, path.name}, key=len, reverse=True):
        if part:
            text = text.replace(part, "<slide>")
    return text
