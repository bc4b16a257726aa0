"""A patient's ID or birth date where a slide keeps technical values: its device strings (Make, Model,
Software, the NDPI channel name, Philips' model and software attributes) and its numeric vendor fields
(Aperio's allow-list, NDPI properties, Philips and OME numbers, the Aperio ICC Profile name).

With the site's sidecar naming the patient, such a value is removed and the slide stored (it used to be
left to the final gate, which refused the whole slide). Without one, an ID's digit run (``MRN4417702``,
``SS4417702``: 6 or more digits in a token; 7 or more in a whole number) is no device string and no
measurement, and a date is no ICC profile's name. Every output (vendor file, DICOM-WSI, slide row, record)
is scanned with separators removed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from curata.collect.wsi import SlideDeidentifier, SlideIdentity, deidentify_slide
from curata.collect.wsi._tiff import TiffEditor
from curata.errors import DeidError
from tests.collect.wsi.test_slide_planted_spellings import HEADER, write_philips, write_slide

KEY = b"k" * 32
SIDECAR = SlideIdentity(
    patient_id="MRN4417702", patient_name="SUZUKI^KENJI", birth_date="1961-04-12", accession="S26-12345"
)
IDS = ["MRN4417702", "MRN 4417702", "4417702", "19610412", "12.04.1961", "1961-04-12", "SUZUKI", "S26-12345",
       # the ID's digits grouped by thousands or a dash, the accession's without its letter (an outside
       # reviewer's: Rack = 4,417,702 and Software 4.417.702 were kept)
       "4,417,702", "4.417.702", "441-7702", "26-12345"]  # fmt: skip


def _squeeze(data: bytes) -> bytes:
    return re.sub(rb"[\s^,.\-_'/\\\x00:|;+=\[\]()\"]+", b"", data.lower())


def _forms(value: str) -> set[bytes]:
    forms = {_squeeze(value.encode())}
    forms |= {d.encode() for d in re.findall(r"\d{6,}", value)}
    forms |= {d.encode() for d in re.findall(r"\d{6,}", re.sub(r"(?<=\d)[-,.](?=\d)", "", value))}
    if re.search(r"1961", value):
        forms.add(b"19610412")
        forms.add(b"12041961")
    return forms


def _outcome(raw: bytes, source: str, identity: SlideIdentity | None, planted: str) -> str:
    """``stored`` (clean), ``refused`` (the slide lost at the gate) or ``leaked: <forms>``."""
    try:
        if source.startswith("ph-"):  # (the Philips fixture is XML only: de-identified, not converted)
            deid = SlideDeidentifier(KEY).deidentify_bytes(raw, source=source, identity=identity)
            blobs = [deid.output_bytes]
        else:
            res = deidentify_slide(raw, key=KEY, source=source, identity=identity)
            deid = res.deid
            blobs = [res.deid.output_bytes, *res.instances, json.dumps(res.slide_fields).encode()]
    except DeidError:
        return "refused"
    blobs.append(json.dumps(deid.record.as_dict()).encode())
    hay = [_squeeze(b) for b in blobs]
    hit = sorted(f.decode() for f in _forms(planted) if any(f in h for h in hay))
    return f"leaked: {hit}" if hit else "stored"


def _svs_places() -> dict[str, Any]:
    return {
        "Make": lambda v: {"extratags": [(271, "s", 0, v, True)]},
        "Model": lambda v: {"extratags": [(272, "s", 0, f"GT450 {v}", True)]},
        "Software": lambda v: {"software": f"ScanScope Console {v}"},
        **{f"Aperio {k}": _aperio_field(k) for k in APERIO_KEPT},
    }


APERIO_KEPT = ("Rack", "Slide", "StripeWidth", "Left", "Exposure Time", "OriginalWidth", "DisplayColor",
               "Focus Offset", "ICC Profile")  # fmt: skip


def _aperio_field(key: str) -> Any:
    return lambda v: {"fields": f"|{key} = {v}"}


def _ndpi(shared: Path, line: str = "", channel: str | None = None) -> bytes:
    ed = TiffEditor((shared / "test3-DAPI-2-387.ndpi").read_bytes())
    props = (ed.text(ed.ifds[0], 65449) or "") + line
    for ifd in ed.ifds:
        ed.set_text(ifd, 65449, props)
        if channel is not None and ifd.get(65434) is not None:
            ed.set_text(ifd, 65434, channel)
    return bytes(ed.buf)


def _cases(tmp: Path, shared: Path) -> list[tuple[str, str, bytes, str]]:
    """(place, planted value, slide bytes, source name) for every place and value."""
    cases = []
    for n, (place, plant) in enumerate(_svs_places().items()):
        for m, value in enumerate(IDS):
            kw = plant(value)
            path = write_slide(tmp / f"{n}-{m}.svs", HEADER, **kw)
            cases.append((place, value, path.read_bytes(), path.name))
    for m, value in enumerate(IDS):
        for place, attr in (("Philips model", "DICOM_MANUFACTURERS_MODEL_NAME"),
                            ("Philips software", "DICOM_SOFTWARE_VERSIONS"), ("Philips number", "DICOM_BITS_STORED")):  # fmt: skip
            path = write_philips(tmp / f"ph-{attr}-{m}.tiff", attr, value, identity_fields=False)
            cases.append((place, value, path.read_bytes(), path.name))
        cases.append(("NDPI property", value, _ndpi(shared, f"\r\nStage.Offset.X={value}"), "x.ndpi"))
        cases.append(("NDPI channel", value, _ndpi(shared, channel=f"DAPI {value}"), "x.ndpi"))
    return cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, shared_wsi: Path) -> list[tuple[str, str, bytes, str]]:
    return _cases(tmp_path_factory.mktemp("ids"), shared_wsi)


def test_the_sidecar_identity_in_a_kept_field_is_removed_and_the_slide_stored(cases) -> None:  # type: ignore[no-untyped-def]
    bad = [(p, v, o) for p, v, raw, src in cases if (o := _outcome(raw, src, SIDECAR, v)) != "stored"]
    assert bad == [], f"{len(bad)} of {len(cases)} not stored clean: {bad[:12]}"


# without a sidecar: the spellings whose shape says they are no device string or measurement
SHAPED = ["MRN4417702", "MRN 4417702", "4417702", "19610412", "12.04.1961", "1961-04-12", "S26-12345"]


def test_an_ids_digits_or_a_date_in_a_kept_field_go_without_a_sidecar(cases) -> None:  # type: ignore[no-untyped-def]
    bad = [
        (p, v, o)
        for p, v, raw, src in cases
        if v in SHAPED and (o := _outcome(raw, src, None, v)) != "stored"
    ]
    total = sum(v in SHAPED for _p, v, _r, _s in cases)
    assert bad == [], f"{len(bad)} of {total} not stored clean: {bad[:12]}"


REAL_DEVICE_STRINGS = ["C13210-01", "NanoZoomer 2.0-HT", "GT 450", "ScanScope Console v102.0.0.33",
                       "12.0.15.5022", "Aperio Image Library v12.0.5", "4.1.7.0", "SS7453", "Pannoramic 250 Flash III"]  # fmt: skip


@pytest.mark.parametrize("value", REAL_DEVICE_STRINGS)
def test_real_device_strings_stay(value: str) -> None:
    from curata.collect.wsi.deid import device_like

    assert device_like(value)


@pytest.mark.parametrize("value", ["MRN4417702", "SS4417702", "A123456", "GT450 MRN4417702"])
def test_a_digit_run_of_an_id_is_no_device_string(value: str) -> None:
    from curata.collect.wsi.deid import device_like

    assert not device_like(value)


@pytest.mark.parametrize(
    ("value", "kept"),
    [("20", True), ("0.4990", True), ("23.449873", True), ("23,449873", True), ("-0.0012", True), ("2040", True),
     ("100-200", True), ("68,279,1256,685", True), ("4,417,702", False), ("555-867-5309", False), ("1961,02,03", False), ("078-05-1120", False),
     ("24-99871", False), ("4.417.702", False), ("1234567", False)],
)  # fmt: skip
def test_a_numeric_field_keeps_measurements_and_no_grouped_ids_phones_or_dates(
    value: str, kept: bool
) -> None:
    """Without a sidecar: digits grouped by a dash, a space or thousands are joined before the shape of an
    ID (7 digits or more) or a date is looked for; a decimal's fraction is no group."""
    from curata.collect.wsi.deid import _technical_number

    assert _technical_number(value) is kept
