"""Release benchmark: building and exporting a release of N DICOM files against merely hashing them.

    .venv/bin/python bench/publish.py [--files 10000] [--slices 100] [--out bench/results/publish.json]

Setup (not timed): N small CT slices (64x64, 16-bit) in series of ``--slices``, one patient per series
at three sites, written to the store and indexed in the catalog directly (as ingest would leave them).
Rows, each timed in this one run on this machine:
- floor: sha256 of every stored file, read back from the store: the least any release or verifier must do;
- release (dicom): ``create_release`` with the DICOM format only: splits, manifest, card, croissant, log;
- release (all formats): DICOM + NIfTI (ITK conversion of every series) + nnU-Net + MONAI + Croissant;
- export: a licensee's fingerprinted copy (every DICOM parsed, UIDs remapped, mark added, written;
  every NIfTI header marked), its manifest, log entry and receipt;
- verify_release.py: the exported script run on the export (hash every file, check the receipt).
Ratios are relative to the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import console, cores, print_ratio_table, rate, timed, write_json
from curata.catalog.models import Blob, Instance, Patient, Series, Site, Study
from curata.publish import create_release, export_release
from curata.workspace import Workspace


def _slice(patient: str, study: str, series: str, index: int, rng: np.random.Generator) -> bytes:
    import io

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientSex = patient, "Anon^Bench", "FM"[index % 2]
    ds.PatientIdentityRemoved = "YES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality, ds.Manufacturer = "CT", "BENCH"
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 2000, size=(64, 64), dtype=np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def populate(ws: Workspace, files: int, per_series: int) -> None:
    rng = np.random.default_rng(0)
    with ws.catalog.session() as s:
        sites = [Site(name=f"site-{c}", country=c) for c in ("NG", "BR", "IN")]
        s.add_all(sites)
        for n in range(max(1, files // per_series)):
            patient = Patient(site=sites[n % 3], pseudonym=f"B{n:05d}", sex="FM"[n % 2])
            study = Study(patient=patient, study_uid=generate_uid(), patient_age_years=20 + n % 60)
            series = Series(
                study=study,
                series_uid=generate_uid(),
                modality="CT",
                manufacturer="BENCH",
                slice_thickness=1.0,
                rows=64,
                columns=64,
                instance_count=per_series,
            )
            s.add_all([patient, study, series])
            for i in range(per_series):
                data = _slice(patient.pseudonym, study.study_uid, series.series_uid, i, rng)
                digest = ws.store.put_bytes(data)
                s.merge(Blob(digest=digest, size=len(data)))
                s.add(
                    Instance(
                        series=series,
                        sop_instance_uid=pydicom.dcmread(
                            __import__("io").BytesIO(data), stop_before_pixels=True
                        ).SOPInstanceUID,
                        instance_number=i + 1,
                        blob_digest=digest,
                        image_position=[0.0, 0.0, float(i)],
                        image_orientation=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    )
                )
            s.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--slices", type=int, default=100, help="slices per series")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "publish.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="curata-bench-publish-") as tmp:
        root = Path(tmp)
        ws = Workspace.init(root / "ws", site="bench")
        with console.status(f"writing {args.files} DICOM files into the store"):
            populate(ws, args.files, args.slices)
        digests = list(ws.store.digests())
        total = sum(ws.store.size(d) for d in digests)

        with timed() as t:
            for d in digests:
                h = hashlib.sha256()
                with ws.store.open(d) as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
        rows.append({"tool": "floor: sha256 of every file", "files": len(digests), "seconds": t["seconds"]})

        with timed() as t:
            dicom_only = create_release(ws, "bench-dicom", formats="dicom", stratify="sex,site")
        rows.append({"tool": "release (dicom)", "files": dicom_only.files, "seconds": t["seconds"]})

        with timed() as t:
            full = create_release(ws, "bench-all", stratify="sex,site")
        rows.append({"tool": "release (all formats)", "files": full.files, "seconds": t["seconds"]})

        with timed() as t:
            exported = export_release(ws, full.ref, root / "export", licensee="Bench Labs")
        rows.append({"tool": "export (fingerprint)", "files": exported.files, "seconds": t["seconds"]})

        with timed() as t:
            proc = subprocess.run(
                [sys.executable, "-I", str(root / "export" / "verify_release.py")],
                capture_output=True,
                text=True,
            )
        if proc.returncode != 0:
            raise SystemExit(f"verify_release.py failed: {proc.stderr}")
        rows.append({"tool": "verify_release.py", "files": exported.files, "seconds": t["seconds"]})

    for row in rows:
        row["files_per_s"] = rate(row["files"], row["seconds"])
    print_ratio_table(
        rows,
        title=f"release of {args.files} DICOM files ({total / 1e6:.0f} MB) on {cores()} cores",
        reference="floor: sha256 of every file",
        columns=[("tool", "step"), ("files", "files"), ("seconds", "seconds"), ("files_per_s", "files/s")],
        ratio_of=["seconds"],
    )
    write_json(args.out, {"files": args.files, "bytes": total, "cores": cores(), "rows": rows})
    console.print(f"results: {args.out}")


if __name__ == "__main__":
    main()
