"""A small real catalog for publishing: several patients at two sites, CT series and DICOM-SEG label maps."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from curata.collect.ingest import Ingestor
from tests.conftest import make_ct

SLICES = 4


def write_patient(
    folder: Path, patient_id: str, *, sex: str, age: int, seed: int, with_seg: bool = True
) -> list[Path]:
    """One CT series of ``SLICES`` slices (and a SEG labelling a box in it) as Part-10 files."""
    study, series = generate_uid(), generate_uid()
    paths, datasets = [], []
    for i in range(SLICES):
        path = folder / patient_id / f"CT{i:03d}.dcm"
        ds = make_ct(
            path,
            patient_id=patient_id,
            patient_name="Anon^Test",
            study_uid=study,
            series_uid=series,
            index=i,
            deidentified=True,
            seed=seed,
        )
        ds.PatientSex = sex
        ds.PatientAge = f"{age:03d}Y"
        ds.StudyID = ""  # every profile empties it (Z)
        ds.ReferringPhysicianName = ""
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        datasets.append(pydicom.dcmread(path))
    if with_seg:
        mask = np.zeros((SLICES, datasets[0].Rows, datasets[0].Columns), dtype=np.uint8)
        mask[1:3, 4:9, 5:11] = 1
        desc = hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="lesion",
            segmented_property_category=hd.sr.CodedConcept(
                "49755003", "SCT", "Morphologically Altered Structure"
            ),
            segmented_property_type=hd.sr.CodedConcept("52988006", "SCT", "Lesion"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=mask,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[desc],
            series_instance_uid=generate_uid(),
            series_number=100,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="Curata tests",
            manufacturer_model_name="fixture",
            software_versions="0",
            device_serial_number="0",
        )
        seg_path = folder / patient_id / "SEG.dcm"
        seg.save_as(seg_path)
        paths.append(seg_path)
    return paths


PATIENTS = [
    # id, sex, age, site
    ("P01", "F", 34, "site-a"),
    ("P02", "M", 45, "site-a"),
    ("P03", "F", 67, "site-a"),
    ("P04", "M", 71, "site-a"),
    ("P05", "F", 52, "site-a"),
    ("P06", "M", 29, "site-a"),
    ("P07", "F", 63, "site-b"),
    ("P08", "M", 58, "site-b"),
]


def populate(ws, root: Path, patients=PATIENTS) -> None:  # type: ignore[no-untyped-def]
    for site in sorted({p[3] for p in patients}):
        folder = root / f"src-{site}"
        for n, (pid, sex, age, where) in enumerate(patients):
            if where == site:
                write_patient(folder, pid, sex=sex, age=age, seed=n)
        country = "NG" if site == "site-a" else "KE"
        _, problems = Ingestor(
            ws, deidentify=False, workers=1, site=site, region="Africa", country=country
        ).ingest_paths([folder])
        assert not problems, problems


@pytest.fixture(scope="session")
def released(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Built once per session (read-only for tests, except new versions and exports): a populated workspace, release ``lungs@1`` and ACME's export of it."""
    from curata.publish import create_release, export_release
    from curata.workspace import Workspace

    root = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CURATA_DATABASE_URL", raising=False)
        mp.delenv("CURATA_WORKSPACE", raising=False)
        ws = Workspace.init(root / "ws", site="test-site")
        populate(ws, root)
        release = create_release(ws, "lungs", stratify="sex,site", seed=7)
        export = export_release(ws, release.ref, root / "acme", licensee="ACME AI")
        yield ws, release, Path(export.directory)
