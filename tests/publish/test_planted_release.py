"""One patient's identifiers planted in every text element of the source DICOM (CT slices and their
DICOM-SEG), in the folder and file names, ingested with de-identification, released in every format
(DICOM, NIfTI, nnU-Net, MONAI, Croissant, through a pipeline too) and exported to a licensee through
the CLI: no byte of any file written (gzip members opened), no file name and no line the CLI printed
holds any of them, in any of the spellings planted."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from tests.collect.deid.planting import Patient, plant_everywhere
from tests.conftest import make_ct

PATIENT = Patient("WOJCIECHOWSKA", "GRAZYNA", "PX40417Q", "ACC99172", "19480614")
_SEP = re.compile(rb"[\s^,.\-_'/\\\x00]+")


def _write_source(folder: Path) -> None:
    p = PATIENT
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    slices = []
    for i in range(4):
        ds = make_ct(
            patient_id=p.pid,
            patient_name=f"{p.family}^{p.given}",
            study_uid=study,
            series_uid=series,
            index=i,
        )
        plant_everywhere(ds, p, sr_depth=3)
        # what the image and the SEG need to stay an image (planting overwrote every text element)
        ds.ImageType, ds.Modality, ds.PatientSex, ds.StudyID = (
            ["ORIGINAL", "PRIMARY", "AXIAL"],
            "CT",
            "F",
            "1",
        )
        ds.PhotometricInterpretation, ds.PatientPosition = "MONOCHROME2", "HFS"
        ds.SeriesDescription = f"AXIAL {p.family} {p.given}"
        ds.ManufacturerModelName = f"Revolution {p.family}"
        path = folder / f"{p.family}^{p.given}_{p.pid}_{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        slices.append(pydicom.dcmread(path))
    mask = np.zeros((len(slices), slices[0].Rows, slices[0].Columns), dtype=np.uint8)
    mask[1:3, 4:9, 5:11] = 1
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"lesion {p.family} {p.given}",
        segmented_property_category=hd.sr.CodedConcept(
            "49755003", "SCT", "Morphologically Altered Structure"
        ),
        segmented_property_type=hd.sr.CodedConcept("52988006", "SCT", "Lesion"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        tracking_id=f"{p.family} {p.pid}",
        tracking_uid=generate_uid(),
    )
    hd.seg.Segmentation(
        source_images=slices,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=generate_uid(),
        series_number=100,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=f"{p.family} labs",
        manufacturer_model_name=f"{p.given} model",
        software_versions=p.pid,
        device_serial_number=p.accession,
        series_description=f"seg of {p.family} {p.given}",
        content_label="LESION",
        content_description=f"by {p.given} {p.family}",
        content_creator_name=f"{p.family}^{p.given}",
    ).save_as(folder / f"{p.family}^{p.given}_SEG.dcm")


def _contents(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _found(data: bytes) -> list[str]:
    hay = _SEP.sub(b"", data.lower())
    return [text for text, _ in PATIENT.needles() if _SEP.sub(b"", text.lower().encode()) in hay]


def test_planted_identifiers_reach_no_release_file_name_or_output(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curata.cli import app

    p = PATIENT
    source = tmp_path / "in" / f"{p.family}^{p.given}_{p.birth}"
    _write_source(source)
    assert _found(b"".join(f.read_bytes() for f in source.iterdir()))  # the planting is there to find
    pipeline = tmp_path / "iso.toml"
    pipeline.write_text('name = "iso"\n[[step]]\nop = "reorient"\naxcodes = "RAS"\n')
    runner = CliRunner()
    ws = ["-w", str(workspace.root)]
    printed = []
    for args in (
        ["ingest", str(tmp_path / "in"), "-j", "1"],
        ["release", "create", "lungs", "--seed", "7"],
        ["release", "create", "lungs-iso", "--pipeline", str(pipeline), "--format", "nifti,monai,croissant"],
        ["release", "export", "lungs@1", str(tmp_path / "acme"), "--licensee", "ACME AI"],
        ["release", "export", "lungs-iso@1", str(tmp_path / "acme-iso"), "--licensee", "ACME AI"],
        ["release", "show", "lungs@1", "--json"],
    ):
        res = runner.invoke(app, [*args, *ws])
        assert res.exit_code == 0, (args, res.output)
        printed.append(res.output)
    leaks = [f"CLI output: {n}" for n in _found("\n".join(printed).encode())]
    written = [
        f
        for top in (tmp_path / "acme", tmp_path / "acme-iso", workspace.root / "releases")
        for f in top.rglob("*")
    ]
    files = [f for f in written if f.is_file()]
    assert {f.name for f in files} >= {"card.html", "manifest.json", "datalist.json", "croissant.json"}
    assert any(f.name.endswith(".nii.gz") for f in files) and any(f.suffix == ".dcm" for f in files)
    for f in files:
        leaks += [
            f"{f.relative_to(tmp_path if tmp_path in f.parents else workspace.root)}: {n}"
            for n in _found(_contents(f))
        ]
        leaks += [
            f"file name {f.name}: {n}"
            for n in _found(
                str(f.relative_to(tmp_path if tmp_path in f.parents else workspace.root)).encode()
            )
        ]
    assert leaks == []
