"""A realistic multi-site hospital export, generated on the fly, with its ground truth on the side.

``generate_hospital_export(out_dir)`` writes what several hospitals' PACS exports look like: real DICOM
Part-10 CT and MR files (baseline and follow-up per patient, body-like anatomy with lesions that grow
or shrink, the follow-up lying slightly differently), vendor headers and private blocks, identifiers
planted in every place they hide (``curata.demo.phi``), each site's own folder layout and encoding, a
few QC defects and a few broken files. The :class:`ExportManifest` next to (never inside) the export is
the hospitals' side of the story: true identities, planted defects, broken files, true rigid transforms
between baseline and follow-up, and lesion volumes.

Series are written in a process pool, slab by slab (16 slices at a time, numpy only), and each
series' header is built, planted and encoded once: a slice is those bytes plus its position, UIDs and
pixels (byte-identical to pydicom's ``save_as``, well under a millisecond). Measured here: a
512x512x110 CT costs about 1.7 CPU-seconds (labels 0.7, intensities and noise 0.7, encoding and
writing 0.1 for 58 MB), a 256x256x60 MR about 0.3; the 30-patient ``full`` export (3.9 GB) about
170 CPU-seconds in all. The same seed gives byte-identical files.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import random
import re
import shutil
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from curata.demo import anatomy as an
from curata.demo.phi import Identity, plant_identifiers
from curata.demo.sites import SITES, Person, SiteProfile, make_person
from curata.errors import ConfigError

__all__ = ["SIZES", "ExportManifest", "SizePreset", "generate_hospital_export"]

GENERATOR = "curata.demo.synth/1"


@dataclass(frozen=True)
class SizePreset:
    ct_matrix: int
    ct_slices: int
    mr_matrix: int
    mr_slices: int


# full: 512x512 CT of 110 slices (2.5 mm over 275 mm) and 256x256x60 MR per series. A 30-patient export
# (4 studies each) is about 3 GB: 120 slices or 1.25 mm would add GBs without adding anything a
# demo or a QC/registration test can use. small: the same anatomy on coarse grids, for tests.
SIZES: dict[str, SizePreset] = {
    "full": SizePreset(ct_matrix=512, ct_slices=110, mr_matrix=256, mr_slices=60),
    "small": SizePreset(ct_matrix=128, ct_slices=40, mr_matrix=96, mr_slices=24),
}

# Scan ranges in the body (or head) frame, z in mm, superior end first.
_CT_RANGE = {"lung": (255.0, -20.0), "liver": (85.0, -190.0)}
_MR_RANGE = {"head": (98.0, -50.0), "abdomen": (50.0, -190.0)}


# --- manifest -------------------------------------------------------------------------------------


@dataclass
class SiteRecord:
    name: str
    folder: str
    institution: str
    city: str
    country: str
    region: str
    manufacturer: str
    ct_model: str
    mr_model: str
    layout: str
    transfer_syntax: str


@dataclass
class PatientRecord:
    key: str
    site: str
    sex: str
    age_at_baseline: int
    indication: str
    response: str
    identity: dict[str, Any]  # phi.Identity.to_dict(): the TRUE identity, hospital side only
    body: dict[str, float]


@dataclass
class StudyRecord:
    study_uid: str
    patient: str
    site: str
    modality: str
    timepoint: str  # baseline | followup
    study_index: int  # index into the identity's study lists
    date: str
    accession: str
    description: str
    frame_of_reference_uid: str
    pose: dict[str, Any]  # body (or head) frame -> scanner frame


@dataclass
class SeriesRecord:
    series_uid: str
    study_uid: str
    patient: str
    site: str
    modality: str
    kind: str  # ct_body | ct_localizer | mr_t1 | mr_t2
    series_number: int
    description: str
    rows: int
    columns: int
    slices_planned: int
    files: int
    pixel_spacing: list[float]
    slice_spacing: float  # distance between slice centres (mm)
    slice_thickness: float
    orientation: list[float]
    first_position: list[float]
    defects: list[str]
    noise: float  # CT: HU std; MR: Rician sigma in stored units
    rescale_slope: float
    rescale_intercept: float
    lesion_voxels: dict[str, int]
    planted: dict[str, Any] = field(repr=False)
    slice_step: float = 0.0  # signed: position of instance k+1 = first_position + k * slice_step * normal


@dataclass
class FileRecord:
    path: str
    sop_instance_uid: str
    series_uid: str
    instance_number: int
    kind: str  # image | localizer


@dataclass
class DefectRecord:
    series_uid: str
    kind: str  # missing_slice | strong_noise | motion_ghosting | localizer_in_series
    detail: dict[str, Any]


@dataclass
class BrokenFileRecord:
    path: str
    site: str
    kind: str  # truncated | not_dicom | missing_attribute
    detail: str
    series_uid: str | None = None


@dataclass
class TransformRecord:
    patient: str
    modality: str
    baseline_study_uid: str
    followup_study_uid: str
    # SimpleITK's convention with fixed=baseline, moving=follow-up: maps a baseline point (LPS mm)
    # onto the same anatomy in the follow-up's scanner frame.
    baseline_to_followup: list[list[float]]
    rotation_deg: list[float]
    translation_mm: list[float]


@dataclass
class LesionRecord:
    patient: str
    lesion: str
    organ: str
    frame: str  # body | head
    center_mm: list[float]
    radii_baseline_mm: list[float]
    radii_followup_mm: list[float]
    volume_baseline_ml: float
    volume_followup_ml: float
    change: str
    scale_followup: float = 1.0  # radii at follow-up = radii at baseline * this


@dataclass
class ExportManifest:
    """Ground truth of a generated export (JSON-serialisable; keep it on the hospital's side)."""

    generator: str
    export_dir: str
    seed: int
    size: str
    sites: list[SiteRecord]
    patients: list[PatientRecord]
    studies: list[StudyRecord]
    series: list[SeriesRecord]
    files: list[FileRecord]
    defects: list[DefectRecord]
    broken_files: list[BrokenFileRecord]
    transforms: list[TransformRecord]
    lesions: list[LesionRecord]
    bytes_written: int = 0
    seconds: float = 0.0  # the one value that differs between runs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        _atomic_write(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: str | Path) -> ExportManifest:
        data = json.loads(Path(path).read_text())
        kinds: dict[str, Any] = {
            "sites": SiteRecord,
            "patients": PatientRecord,
            "studies": StudyRecord,
            "series": SeriesRecord,
            "files": FileRecord,
            "defects": DefectRecord,
            "broken_files": BrokenFileRecord,
            "transforms": TransformRecord,
            "lesions": LesionRecord,
        }
        for key, kind in kinds.items():
            data[key] = [kind(**item) for item in data[key]]
        return cls(**data)

    def identities(self) -> dict[str, Identity]:
        """Patient key -> true identity."""
        return {p.key: Identity.from_dict(p.identity) for p in self.patients}

    def planted_sets(self) -> dict[str, Any]:
        """Series UID -> the :class:`curata.demo.phi.PlantedSet` of what was planted in its files."""
        from curata.demo.phi import PlantedSet

        return {s.series_uid: PlantedSet.from_dict(s.planted) for s in self.series}

    def files_of(self, series_uid: str) -> list[FileRecord]:
        return [f for f in self.files if f.series_uid == series_uid]

    def labels(self, series_uid: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """Ground-truth tissue and lesion labels of a CT/MR series on its planned grid.

        Returns ``(labels, affine, names)``: a uint8 volume indexed ``[k, row, column]`` where slice k is
        instance number k+1 (a missing slice's labels are still there), the 4x4 LPS affine from
        ``(k, row, column)`` to millimetres, and label value -> name (tissues, and lesion ids such as
        ``P001-L2`` for values from 100 on). For registration Dice, segmentation labels, lesion volumes.
        """
        series = next(s for s in self.series if s.series_uid == series_uid)
        if series.kind == "ct_localizer":
            raise ValueError(f"series {series_uid} is a localizer: it has no 3-D grid")
        study = next(st for st in self.studies if st.study_uid == series.study_uid)
        patient = next(p for p in self.patients if p.key == series.patient)
        iop = series.orientation
        grid = an.Grid(
            shape=(series.slices_planned, series.rows, series.columns),
            pixel_spacing=(series.pixel_spacing[0], series.pixel_spacing[1]),
            slice_step=series.slice_step,
            origin=(series.first_position[0], series.first_position[1], series.first_position[2]),
            row_dir=(iop[0], iop[1], iop[2]),
            col_dir=(iop[3], iop[4], iop[5]),
        )
        pose = an.Pose(tuple(study.pose["rotation_deg"]), tuple(study.pose["translation_mm"]))  # type: ignore[arg-type]
        followup = study.timepoint == "followup"
        head = series.kind != "ct_body" and patient.indication == "lung"
        frame = "head" if head else "body"
        records = [le for le in self.lesions if le.patient == patient.key and le.frame == frame]
        lesions = [
            an.Lesion(
                le.organ,
                (le.center_mm[0], le.center_mm[1], le.center_mm[2]),
                (le.radii_baseline_mm[0], le.radii_baseline_mm[1], le.radii_baseline_mm[2]),
                le.scale_followup,
            )
            for le in records
        ]
        if head:
            phantom = an.head_phantom(patient.body["head_scale"], lesions, followup=followup)
        else:
            body = an.BodyShape(
                patient.body["half_width"], patient.body["half_depth"], patient.body["fat_mm"]
            )
            phantom = an.body_phantom(body, lesions, followup=followup, with_table=series.kind == "ct_body")
        names = {int(t): t.name.lower() for t in an.Tissue}
        names.update({an.LESION_BASE + i: le.lesion for i, le in enumerate(records)})
        return an.render_labels(grid, phantom, pose), grid.affine(), names


# --- planning ---------------------------------------------------------------------------------------


@dataclass
class _Job:
    """Everything a worker needs to write one series (and what derives from its pixels)."""

    root: str
    site: SiteProfile
    identity: Identity
    study_index: int
    plant_seed: str
    noise_seed: list[int]
    kind: str  # ct_body | mr_t1 | mr_t2
    anatomy: str  # body | head
    body: an.BodyShape
    head_scale: float
    lesions: list[an.Lesion]
    followup: bool
    pose: an.Pose
    grid: an.Grid
    header: dict[str, Any]
    paths: list[str]  # one per written slice, in instance order (a missing slice has none)
    sop_uids: list[str]
    missing_index: int | None
    noise: float
    ghost_amplitude: float
    contrast: bool
    scout: dict[str, Any] | None = None  # separate localizer series
    scout_in_series: dict[str, Any] | None = None
    broken: list[dict[str, Any]] = field(default_factory=list)


def _uid(site: SiteProfile, *parts: object) -> str:
    return str(generate_uid(prefix=site.vendor.uid_root, entropy_srcs=[str(p) for p in parts]))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


class _Layout:
    """A site's folder habits: where each file of the export goes."""

    def __init__(self, site: SiteProfile) -> None:
        self.site = site
        self.counter = 0
        self.cd_patients: dict[str, int] = {}
        self.cd_studies: dict[str, int] = {}
        self.cd_series: dict[str, int] = {}

    def path(
        self, person: Person, study: dict[str, Any], series: dict[str, Any], instance: int, sop: str
    ) -> str:
        self.counter += 1
        layout = self.site.layout
        if layout == "nested_names":
            patient_dir = _safe(f"{person.family_name} {person.given_name}").upper()
            study_dir = f"{study['date']}_{_safe(study['description'])}"
            series_dir = f"{series['number']:03d}_{_safe(series['description'])}"
            return f"{patient_dir}/{study_dir}/{series_dir}/IMG{instance:04d}.dcm"
        if layout == "flat_numbered":
            return f"EXPORT/{self.counter:08d}.dcm"
        if layout == "cd_no_dicomdir":
            pa = self.cd_patients.setdefault(person.patient_id, len(self.cd_patients))
            st = self.cd_studies.setdefault(study["uid"], len(self.cd_studies))
            se = self.cd_series.setdefault(series["uid"], len(self.cd_series))
            return f"DICOM/PA{pa:06d}/ST{st:06d}/SE{se:06d}/IM{instance - 1:06d}"
        if layout == "id_accession_uid":
            return f"{_safe(person.patient_id)}/{study['accession']}/{sop}"
        return f"images/{sop}.dcm"  # flat_uid


def _study_date(base: date, days: int) -> str:
    return (base + timedelta(days=days)).strftime("%Y%m%d")


def _make_identity(
    site: SiteProfile,
    person: Person,
    rng: random.Random,
    dates: list[date],
    uids: list[str],
    fors: list[str],
    accessions: list[str],
) -> Identity:
    street, _, rest = person.address.partition(", ")
    city = rest.rsplit(", ", 1)[0] if rest else site.city
    non_latin1 = any(ord(ch) > 255 for ch in person.dicom_name + person.address)
    return Identity(
        family=person.family_name,
        given=person.given_name,
        middle=person.middle_name,
        prefix="",
        suffix="",
        patient_id=person.patient_id,
        issuer=f"{site.institution} MPI",
        other_ids=(person.other_id, f"INS{rng.randint(10**9, 10**10 - 1)}"),
        other_names=(person.mother_maiden_name, f"{person.family_name}^{person.given_name.split()[0]}"),
        birth_date=date(int(person.birth_date[:4]), int(person.birth_date[4:6]), int(person.birth_date[6:])),
        sex=person.sex,
        phone=person.phone,
        street=street,
        postal_code=str(rng.randint(10000, 99999)),
        city=city,
        institution=site.institution,
        institution_address=site.address,
        department=site.department,
        staff={
            "referring": person.referring_physician,
            "performing": person.performing_physician,
            "operator": person.operator,
            "reading": person.reading_physician,
            "of_record": person.referring_physician,
        },
        station_name=site.station,
        device_serial=site.device_serial,
        military_rank="",
        occupation=rng.choice(["Teacher", "Trader", "Farmer", "Nurse", "Driver", "Engineer", "Retired"]),
        ethnic_group="",
        medical_record_locator=f"MRL{person.patient_id}",
        study_dates=tuple(dates),
        accessions=tuple(accessions),
        study_ids=tuple(f"{i + 1}" for i in range(len(dates))),
        study_uids=tuple(uids),
        frame_of_reference_uids=tuple(fors),
        charset="ISO_IR 192" if non_latin1 or site.charset == "ISO_IR 192" else "ISO_IR 100",
    )


def _sample_lesions(
    rng: random.Random, body: an.BodyShape, indication: str, scale: float
) -> list[tuple[str, an.Lesion]]:
    organs = an.organ_solids(body)
    out: list[tuple[str, an.Lesion]] = []

    def inside(organ: an.Ellipsoid, max_r: float) -> tuple[float, float, float]:
        while True:
            u = np.array([rng.uniform(-1, 1) for _ in range(3)])
            if u @ u <= 0.3:
                break
        rot = an.rotation_matrix(*organ.rotation_deg)
        c = np.asarray(organ.center) + rot @ (u * np.asarray(organ.radii))
        return (round(float(c[0]), 2), round(float(c[1]), 2), round(float(c[2]), 2))

    def radii(lo: float, hi: float) -> tuple[float, float, float]:
        r = rng.uniform(lo, hi)
        return (round(r, 2), round(r * rng.uniform(0.85, 1.0), 2), round(r * rng.uniform(0.85, 1.15), 2))

    if indication == "lung":
        for _ in range(rng.randint(1, 3)):
            organ = organs[rng.choice(["lung_right", "lung_left"])]
            out.append(("body", an.Lesion("lung", inside(organ, 14.0), radii(5.0, 14.0), scale)))
        for _ in range(rng.randint(1, 2)):
            while True:
                c = (rng.uniform(-40, 40), rng.uniform(-55, 55), rng.uniform(-10, 60))
                if not (abs(c[0]) < 22 and abs(c[1]) < 32 and -5 < c[2] < 32):
                    break
            out.append(("head", an.Lesion("brain", tuple(round(v, 2) for v in c), radii(4.0, 11.0), scale)))  # type: ignore[arg-type]
    else:
        for _ in range(rng.randint(1, 3)):
            out.append(("body", an.Lesion("liver", inside(organs["liver"], 22.0), radii(7.0, 20.0), scale)))
        if rng.random() < 0.5:
            kidney = organs[rng.choice(["kidney_right", "kidney_left"])]
            out.append(("body", an.Lesion("kidney", inside(kidney, 12.0), radii(7.0, 12.0), 1.0)))
    return out


def _pose(rng: random.Random, table_z: float, moved: bool) -> an.Pose:
    if not moved:
        return an.Pose((0.0, 0.0, 0.0), (0.0, 0.0, round(table_z, 2)))
    rot = (round(rng.uniform(-2, 2), 3), round(rng.uniform(-2, 2), 3), round(rng.uniform(-3.5, 3.5), 3))
    shift = (
        round(rng.uniform(-12, 12), 2),
        round(rng.uniform(-8, 8), 2),
        round(table_z + rng.uniform(-15, 15), 2),
    )
    return an.Pose(rot, shift)


def _pose_dict(pose: an.Pose) -> dict[str, Any]:
    return {
        "rotation_deg": list(pose.rotation_deg),
        "translation_mm": list(pose.translation_mm),
        "matrix": np.round(pose.matrix, 9).tolist(),
    }


# --- writing (runs in worker processes) -------------------------------------------------------------


def _atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _transfer_syntax(site: SiteProfile) -> UID:
    return {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian, "rle": RLELossless}[
        site.transfer_syntax
    ]


def _encode_frame(site: SiteProfile, frame: np.ndarray) -> DataElement:
    if site.transfer_syntax == "rle":
        from rle import encode_pixel_data

        rows, cols = frame.shape
        encoded = encode_pixel_data(
            frame.tobytes(), rows=rows, columns=cols, samples_per_pixel=1, bits_allocated=16, byteorder="<"
        )
        return DataElement(0x7FE00010, "OB", encapsulate([encoded]), is_undefined_length=True)
    return DataElement(0x7FE00010, "OW", frame.tobytes())


def _file_bytes(ds: Dataset, site: SiteProfile, sop_class: str, sop: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = _transfer_syntax(site)
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _header(job: _Job, sop_class: str) -> Dataset:
    """The series template: every element shared by its slices, identifiers planted once."""
    h, site, vendor = job.header, job.site, job.site.vendor
    ds = Dataset()
    ds.SpecificCharacterSet = job.identity.charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = job.sop_uids[0]
    ds.PatientSex = job.identity.sex
    ds.Modality = h["modality"]
    ds.Manufacturer = vendor.manufacturer
    ds.ManufacturerModelName = vendor.ct_model if h["modality"] == "CT" else vendor.mr_model
    ds.SoftwareVersions = vendor.ct_software if h["modality"] == "CT" else vendor.mr_software
    ds.StudyInstanceUID = h["study_uid"]
    ds.SeriesInstanceUID = h["series_uid"]
    ds.FrameOfReferenceUID = h["for_uid"]
    ds.PositionReferenceIndicator = ""
    ds.SeriesNumber = h["series_number"]
    ds.AcquisitionNumber = 1
    ds.BodyPartExamined = h["body_part"]
    ds.PatientPosition = "HFS"
    ds.ImageType = h["image_type"]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in (*job.grid.row_dir, *job.grid.col_dir)]
    ds.PixelSpacing = [round(v, 6) for v in job.grid.pixel_spacing]
    ds.SliceThickness = h["slice_thickness"]
    ds.SpacingBetweenSlices = round(abs(job.grid.slice_step), 6)
    ds.Rows, ds.Columns = job.grid.shape[1], job.grid.shape[2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = h["bits_stored"]
    ds.HighBit = h["bits_stored"] - 1
    ds.PixelRepresentation = 1 if h["signed"] else 0
    for key, value in h["modality_fields"].items():
        setattr(ds, key, value)
    if h.get("scout_ref"):
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = h["scout_ref"]
        ds.ReferencedImageSequence = Sequence([ref])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = _transfer_syntax(site)
    with warnings.catch_warnings():  # over-long planted text is clipped below
        warnings.simplefilter("ignore", UserWarning)
        planted = plant_identifiers(
            ds, random.Random(job.plant_seed), identity=job.identity, study=job.study_index
        )
    idt = job.identity
    b = idt.birth_date
    # The planter drew study-level free text and times at random; make them this study's and series'.
    ds.StudyTime, ds.SeriesTime = h["study_time"], h["series_time"]
    ds.AcquisitionTime = ds.ContentTime = h["series_time"]
    ds.StudyDescription = f"{h['study_description']} {idt.family} {idt.patient_id}"
    ds.SeriesDescription = f"{h['series_description']} {b:%Y-%m-%d} {idt.given}"
    ds.ProtocolName = f"{h['protocol']} {idt.given} {idt.family} {b:%d.%m.%Y}"
    ds.RequestedProcedureDescription = f"{h['study_description']} call {idt.phone}"
    ds.RequestAttributesSequence[
        0
    ].RequestedProcedureDescription = f"{h['study_description']} {idt.family} {idt.patient_id}"
    ds.SeriesInstanceUID = h["series_uid"]
    if h.get("scout_ref"):
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = h["scout_ref"]
    for group, creator, elements in vendor.private_blocks:
        block = ds.private_block(group, creator, create=True)
        for offset, vr, value in elements:
            block.add_new(offset, vr, value)
    if job.header["modality"] == "CT" and site.vendor.manufacturer.startswith("GE"):
        ds.private_block(0x0009, "GEMS_IDEN_01").add_new(0x02, "SH", site.station)
    _clip_to_vr_lengths(ds)
    job.header["_planted"] = planted.to_dict()
    return ds


_MAX_CHARS = {"LO": 64, "SH": 16}


def _clip_to_vr_lengths(ds: Dataset) -> None:
    """Planted free text can outgrow LO/SH with our long institution names; keep the header conformant."""
    for elem in ds.iterall():
        limit = _MAX_CHARS.get(elem.VR)
        if limit is None or not elem.value:
            continue
        if isinstance(elem.value, str):
            if len(elem.value) > limit:
                elem.value = elem.value[:limit].rstrip()
        elif isinstance(elem.value, list | tuple) and any(len(str(v)) > limit for v in elem.value):
            elem.value = [str(v)[:limit].rstrip() for v in elem.value]


def _slice_dataset(template: Dataset, elements: list[DataElement]) -> Dataset:
    ds = Dataset(dict(template._dict))
    for elem in elements:
        ds[elem.tag] = elem
    return ds


def _stored(job: _Job, volume: np.ndarray) -> np.ndarray:
    h = job.header
    lo, hi = (
        (-(2 ** (h["bits_stored"] - 1)), 2 ** (h["bits_stored"] - 1) - 1)
        if h["signed"]
        else (0, 2 ** h["bits_stored"] - 1)
    )
    if h["modality"] == "CT":
        values = (volume - np.float32(h["intercept"])) / np.float32(h["slope"])
        values = np.clip(np.rint(values), max(lo, -1024 - h["intercept"]), hi)
    else:
        values = np.clip(np.rint(volume * np.float32(h["mr_scale"])), lo, hi)
    stored = values.astype(np.int16 if h["signed"] else np.uint16)
    if h.get("padding") is not None:
        ny, nx = stored.shape[1:]
        yy, xx = np.ogrid[:ny, :nx]
        outside = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (min(nx, ny) / 2) ** 2
        stored[:, outside] = h["padding"]
    return stored


SLAB = 16  # slices rendered at a time: a small working set, and noise drawn in a fixed order


def _phantom(job: _Job) -> an.Phantom:
    if job.anatomy == "head":
        return an.head_phantom(job.head_scale, job.lesions, followup=job.followup)
    return an.body_phantom(job.body, job.lesions, followup=job.followup, with_table=job.kind == "ct_body")


def _render_slab(
    job: _Job,
    phantom: an.Phantom,
    labels: np.ndarray,
    rng: np.random.Generator,
    bias: an.BiasField | None,
    k0: int,
) -> np.ndarray:
    if job.kind == "ct_body":
        return an.ct_hounsfield(labels, phantom, contrast=job.contrast, noise_hu=job.noise, rng=rng)
    assert bias is not None
    return an.mr_signal(
        labels,
        phantom,
        weighting="T1" if job.kind == "mr_t1" else "T2",
        noise_fraction=job.noise,
        rng=rng,
        bias=bias.slab(k0, k0 + labels.shape[0]),
        ghost_amplitude=job.ghost_amplitude,
    )


def _scout_image(job: _Job, projection: np.ndarray) -> tuple[np.ndarray, float]:
    """A coronal projection radiograph (12-bit) of the CT volume, square pixels of the CT's size."""
    from scipy import ndimage

    proj = projection[::-1] if job.grid.slice_step > 0 else projection  # top row = most superior
    dx = job.grid.pixel_spacing[1]
    rows = max(round(proj.shape[0] * abs(job.grid.slice_step) / dx), 8)
    image = ndimage.zoom(proj, (rows / proj.shape[0], 1.0), order=1)
    image = np.clip(image / max(float(image.max()), 1e-6) * 3800.0, 0, 4095)
    return np.rint(image).astype(np.uint16), dx


def _write_scout(
    job: _Job, template: Dataset, projection: np.ndarray, spec: dict[str, Any], in_series: bool
) -> dict[str, Any]:
    image, dx = _scout_image(job, projection)
    top = max(job.grid.position(0)[2], job.grid.position(job.grid.shape[0] - 1)[2])
    origin = [round(float(job.grid.origin[0]), 4), 0.0, round(float(top), 4)]
    elems = [
        DataElement(0x00080008, "CS", ["ORIGINAL", "PRIMARY", "LOCALIZER"]),
        DataElement(0x00080018, "UI", spec["sop_uid"]),
        DataElement(0x00200013, "IS", spec["instance_number"]),
        DataElement(0x00200032, "DS", origin),
        DataElement(0x00200037, "DS", [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]),
        DataElement(0x00280030, "DS", [round(dx, 6), round(dx, 6)]),
        DataElement(0x00280010, "US", image.shape[0]),
        DataElement(0x00280011, "US", image.shape[1]),
        DataElement(0x00280100, "US", 16),
        DataElement(0x00280101, "US", 12),
        DataElement(0x00280102, "US", 11),
        DataElement(0x00280103, "US", 0),
        DataElement(0x00281052, "DS", 0),
        DataElement(0x00281053, "DS", 1),
        DataElement(0x00281050, "DS", 2000),
        DataElement(0x00281051, "DS", 4000),
        _encode_frame(job.site, image),
    ]
    if not in_series:
        elems += [
            DataElement(0x0020000E, "UI", spec["series_uid"]),
            DataElement(0x00200011, "IS", spec["series_number"]),
            DataElement(0x0008103E, "LO", f"Topogram 0.6 {job.identity.given}"),
        ]
    ds = _slice_dataset(template, elems)
    for keyword in ("SliceLocation", "SpacingBetweenSlices", "ReferencedImageSequence", "PixelPaddingValue"):
        if keyword in ds:
            del ds[keyword]
    _atomic_write(
        Path(job.root) / spec["path"], _file_bytes(ds, job.site, CTImageStorage, spec["sop_uid"]), fsync=False
    )
    return {
        "path": spec["path"],
        "sop": spec["sop_uid"],
        "instance": spec["instance_number"],
        "rows": image.shape[0],
        "cols": image.shape[1],
    }


def _write_broken(
    job: _Job, template: Dataset, frame: np.ndarray, sop_class: str, spec: dict[str, Any]
) -> None:
    k = spec["slice"]
    elems = [
        DataElement(0x00080018, "UI", spec["sop_uid"]),
        DataElement(0x00200013, "IS", len(job.paths) + 10 + k),
        DataElement(0x00200032, "DS", [round(float(v), 4) for v in job.grid.position(k)]),
        _encode_frame(job.site, frame),
    ]
    ds = _slice_dataset(template, elems)
    if spec["kind"] == "missing_attribute":
        del ds[spec["attribute"]]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class)
        if spec["attribute"] != "SOPInstanceUID":
            meta.MediaStorageSOPInstanceUID = UID(spec["sop_uid"])
        meta.TransferSyntaxUID = _transfer_syntax(job.site)
        ds.file_meta = meta
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        data = buf.getvalue()
        if not data.startswith(b"\x00" * 128 + b"DICM"):
            data = b"\x00" * 128 + b"DICM" + data
    else:  # truncated: a transfer that stopped half-way (in the header or in the pixels)
        data = _file_bytes(ds, job.site, sop_class, spec["sop_uid"])
        data = (
            data[: spec["keep_bytes"]] if spec["keep_bytes"] > 0 else data[: len(data) + spec["keep_bytes"]]
        )
    _atomic_write(Path(job.root) / spec["path"], data, fsync=False)


class _SliceWriter:
    """Encodes a series' slices fast: the template's elements are encoded once, in runs between the
    few elements that change per slice; each slice is then those bytes plus its own elements.

    The output is byte-identical to ``Dataset.save_as(enforce_file_format=True)`` (a test checks it).
    """

    VARYING = (0x00080018, 0x00200013, 0x00200032, 0x00201041, 0x7FE00010)

    def __init__(self, template: Dataset, site: SiteProfile, sop_class: str) -> None:
        self.site = site
        self.sop_class = sop_class
        self.implicit = site.transfer_syntax == "implicit"
        self.charset = template.get("SpecificCharacterSet", "ISO_IR 100")
        runs: list[Dataset] = [Dataset() for _ in range(len(self.VARYING) + 1)]
        for elem in template:
            if elem.tag in self.VARYING:
                continue
            runs[bisect.bisect(self.VARYING, elem.tag)][elem.tag] = elem
        self.runs = [self._encode(run) for run in runs]

    def _buffer(self) -> DicomBytesIO:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, self.implicit
        return fp

    def _encode(self, ds: Dataset) -> bytes:
        fp = self._buffer()
        write_dataset(fp, ds, parent_encoding=self.charset)
        return fp.getvalue()

    def slice_bytes(self, sop: str, elements: list[DataElement]) -> bytes:
        """``elements``: exactly the VARYING tags, in that order."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(self.sop_class)
        meta.MediaStorageSOPInstanceUID = UID(sop)
        meta.TransferSyntaxUID = _transfer_syntax(self.site)
        fp = self._buffer()
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        fp.is_little_endian, fp.is_implicit_VR = True, self.implicit
        fp.write(self.runs[0])
        for elem, run in zip(elements, self.runs[1:], strict=True):
            write_data_element(fp, elem, self.charset)
            fp.write(run)
        return fp.getvalue()


def _slice_elements(job: _Job, k: int, sop: str, frame: np.ndarray) -> list[DataElement]:
    pos = job.grid.position(k)
    return [
        DataElement(0x00080018, "UI", sop),
        DataElement(0x00200013, "IS", k + 1),
        DataElement(0x00200032, "DS", [round(float(v), 4) for v in pos]),
        DataElement(0x00201041, "DS", round(float(pos @ job.grid.normal), 4)),
        _encode_frame(job.site, frame),
    ]


def _write_series(job: _Job) -> dict[str, Any]:
    """Render and write one series slab by slab; returns what the manifest needs to know of it."""
    rng = np.random.default_rng(job.noise_seed)
    phantom = _phantom(job)
    bias = an.BiasField.random(job.grid.shape, 0.15, rng) if job.kind != "ct_body" else None
    sop_class = CTImageStorage if job.kind == "ct_body" else MRImageStorage
    template = _header(job, sop_class)
    writer = _SliceWriter(template, job.site, sop_class)
    n = job.grid.shape[0]
    projection = np.zeros((n, job.grid.shape[2]), dtype=np.float32) if job.kind == "ct_body" else None
    counts = np.zeros(256, dtype=np.int64)
    kept: dict[int, np.ndarray] = {}
    files: list[dict[str, Any]] = []
    written = 0
    for k0 in range(0, n, SLAB):
        k1 = min(n, k0 + SLAB)
        labels = an.render_labels(job.grid, phantom, job.pose, (k0, k1))
        counts += np.bincount(labels.ravel(), minlength=256)
        if projection is not None:
            projection[k0:k1] = an.attenuation_projection(labels, phantom, job.grid.pixel_spacing[0])
        stored = _stored(job, _render_slab(job, phantom, labels, rng, bias, k0))
        for k in range(k0, k1):
            if any(spec["slice"] == k for spec in job.broken):
                kept[k] = stored[k - k0].copy()
            if k == job.missing_index:
                continue
            sop, path = job.sop_uids[written], job.paths[written]
            data = writer.slice_bytes(sop, _slice_elements(job, k, sop, stored[k - k0]))
            _atomic_write(Path(job.root) / path, data, fsync=False)
            files.append({"path": path, "sop": sop, "instance": k + 1})
            written += 1
    out: dict[str, Any] = {
        "series_uid": job.header["series_uid"],
        "files": files,
        "planted": job.header["_planted"],
    }
    if job.scout is not None and projection is not None:
        out["scout"] = _write_scout(job, template, projection, job.scout, in_series=False)
    if job.scout_in_series is not None and projection is not None:
        out["scout_in_series"] = _write_scout(job, template, projection, job.scout_in_series, in_series=True)
    for spec in job.broken:
        _write_broken(job, template, kept[spec["slice"]], sop_class, spec)
    if job.kind != "ct_body":
        lut = an.mr_lut(phantom, "T1" if job.kind == "mr_t1" else "T2")
        out["noise_stored"] = round(job.noise * float(lut.max()) * job.header["mr_scale"], 3)
    out["lesion_voxels"] = {str(label): int(counts[label]) for label in phantom.lesion_kinds}
    return out


# --- the public entry point ---------------------------------------------------------------------------


Progress = Callable[[int, int], None]


def _default_manifest_path(out_dir: Path) -> Path:
    return out_dir.parent / f"{out_dir.name}-manifest.json"


def generate_hospital_export(
    out_dir: Path,
    *,
    sites: int = 3,
    patients: int = 30,
    seed: int = 0,
    size: str = "full",
    broken: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
    manifest_path: Path | None = None,
) -> ExportManifest:
    """Write a multi-site hospital export under ``out_dir`` and its ground-truth manifest beside it.

    ``progress(done, total)`` is called as files are written. ``workers`` defaults to all cores.
    The manifest goes to ``manifest_path`` (default ``<out_dir>-manifest.json`` next to ``out_dir``).
    Files go to a staging folder beside ``out_dir`` (each under a temporary name, then renamed; no
    per-file fsync: a killed run leaves only the staging folder, which the next run removes); the
    finished export is renamed into place, then the manifest is written atomically with fsync.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if size not in SIZES:
        raise ConfigError(f"unknown demo size {size!r}", hint=f"use one of {', '.join(SIZES)}")
    if sites < 1 or patients < sites:
        raise ConfigError(
            f"{patients} patients cannot fill {sites} sites", hint="ask for at least one patient per site"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not empty", hint="choose a new folder or remove it first")
    manifest_path = Path(manifest_path) if manifest_path else _default_manifest_path(out_dir)
    if manifest_path.resolve().is_relative_to(out_dir.resolve()):
        raise ConfigError(f"the manifest {manifest_path} must not lie inside the export {out_dir}")
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    plan = _plan(staging, sites=sites, patients=patients, seed=seed, preset=SIZES[size], broken=broken)
    total = sum(
        len(j.paths) + len(j.broken) + (j.scout is not None) + (j.scout_in_series is not None)
        for j in plan.jobs
    )
    total += len(plan.loose_files)
    done = 0
    results: dict[str, dict[str, Any]] = {}
    for rel, data in plan.loose_files:
        _atomic_write(staging / rel, data, fsync=False)
        done += 1
    order = sorted(plan.jobs, key=lambda j: -int(np.prod(j.grid.shape)))  # big series first: better balance
    n_workers = max(1, workers or os.cpu_count() or 1)
    if n_workers == 1:
        for job in order:
            results[job.header["series_uid"]] = _write_series(job)
            done += _job_files(job)
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context()) as pool:
            futures = {pool.submit(_write_series, job): job for job in order}
            for future in as_completed(futures):
                job = futures[future]
                results[job.header["series_uid"]] = future.result()
                done += _job_files(job)
                if progress:
                    progress(done, total)

    manifest = _assemble(plan, results, out_dir, seed, size)
    manifest.bytes_written = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(staging, out_dir)
    manifest.seconds = round(time.perf_counter() - started, 2)
    manifest.save(manifest_path)
    return manifest


def _mp_context() -> Any:
    """fork where there is one: workers start at once and unguarded ``__main__`` scripts work too."""
    import multiprocessing

    return get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _job_files(job: _Job) -> int:
    return len(job.paths) + len(job.broken) + (job.scout is not None) + (job.scout_in_series is not None)


@dataclass
class _Plan:
    sites: list[SiteRecord] = field(default_factory=list)
    patients: list[PatientRecord] = field(default_factory=list)
    studies: list[StudyRecord] = field(default_factory=list)
    jobs: list[_Job] = field(default_factory=list)
    series_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    defects: list[DefectRecord] = field(default_factory=list)
    broken_files: list[BrokenFileRecord] = field(default_factory=list)
    transforms: list[TransformRecord] = field(default_factory=list)
    lesions: list[LesionRecord] = field(default_factory=list)
    loose_files: list[tuple[str, bytes]] = field(default_factory=list)


def _site_profiles(n: int) -> list[SiteProfile]:
    from dataclasses import replace

    out = []
    for i in range(n):
        base = SITES[i % len(SITES)]
        if i >= len(SITES):
            base = replace(
                base,
                key=f"{base.key}{i // len(SITES) + 1}",
                institution=f"{base.institution} Annex {i // len(SITES) + 1}",
            )
        out.append(base)
    return out


def _plan(root: Path, *, sites: int, patients: int, seed: int, preset: SizePreset, broken: bool) -> _Plan:
    rng = random.Random(f"curata-demo:{seed}")
    plan = _Plan()
    profiles = _site_profiles(sites)
    layouts = {s.key: _Layout(s) for s in profiles}
    folders = {s.key: f"{s.key}-{_safe(s.city).lower()}" for s in profiles}
    for s in profiles:
        plan.sites.append(
            SiteRecord(
                name=s.key,
                folder=folders[s.key],
                institution=s.institution,
                city=s.city,
                country=s.country,
                region=s.region,
                manufacturer=s.vendor.manufacturer,
                ct_model=s.vendor.ct_model,
                mr_model=s.vendor.mr_model,
                layout=s.layout,
                transfer_syntax=s.transfer_syntax,
            )
        )
    site_series: dict[str, list[_Job]] = {s.key: [] for s in profiles}
    site_people: dict[str, list[tuple[Person, Identity]]] = {s.key: [] for s in profiles}
    for p in range(patients):
        site = profiles[p % len(profiles)]
        _plan_patient(
            plan,
            rng,
            root,
            site,
            layouts[site.key],
            folders[site.key],
            p,
            seed,
            preset,
            site_series,
            site_people,
        )
    _plan_defects(plan, rng)
    if broken:
        for site in profiles:
            _plan_broken(
                plan,
                rng,
                site,
                folders[site.key],
                layouts[site.key],
                site_series[site.key],
                site_people[site.key],
                seed,
            )
    return plan


def _plan_patient(
    plan: _Plan,
    rng: random.Random,
    root: Path,
    site: SiteProfile,
    layout: _Layout,
    folder: str,
    p: int,
    seed: int,
    preset: SizePreset,
    site_series: dict[str, list[_Job]],
    site_people: dict[str, list[tuple[Person, Identity]]],
) -> None:
    key = f"P{p + 1:03d}"
    sex = rng.choice("FM")
    age = rng.randint(24, 86)
    baseline = date(2023, 1, 2) + timedelta(days=rng.randint(0, 600))
    person = make_person(site, p, sex, age, baseline, rng)
    indication = rng.choice(["lung", "liver"])
    response = rng.choice(["progression", "stable", "response"])
    scale = {
        "progression": rng.uniform(1.15, 1.5),
        "stable": rng.uniform(0.95, 1.05),
        "response": rng.uniform(0.5, 0.85),
    }[response]
    width = rng.gauss(165 if sex == "M" else 155, 10)
    body = an.BodyShape(
        half_width=round(float(np.clip(width, 135, 190)), 2),
        half_depth=round(float(np.clip(rng.gauss(110 if sex == "M" else 102, 8), 88, 130)), 2),
        fat_mm=round(rng.uniform(7, 32), 2),
    )
    head_scale = round(rng.uniform(0.93, 1.05) * (1.0 if sex == "M" else 0.96), 3)
    lesions = _sample_lesions(rng, body, indication, round(scale, 3))
    # Studies: CT and MR at baseline, the same months later.
    fu_days = rng.randint(90, 270)
    offsets = [0, rng.randint(0, 10), fu_days, fu_days + rng.randint(0, 10)]
    modalities = ["CT", "MR", "CT", "MR"]
    dates = [baseline + timedelta(days=d) for d in offsets]
    study_uids = [_uid(site, seed, key, "study", i) for i in range(4)]
    for_uids = [_uid(site, seed, key, "for", i) for i in range(4)]
    accessions = [f"{site.key[-1].upper()}{dates[i]:%y%m}{rng.randint(10000, 99999)}" for i in range(4)]
    identity = _make_identity(site, person, rng, dates, study_uids, for_uids, accessions)
    site_people[site.key].append((person, identity))
    mr_region = "head" if indication == "lung" else "abdomen"
    plan.patients.append(
        PatientRecord(
            key=key,
            site=site.key,
            sex=sex,
            age_at_baseline=age,
            indication=indication,
            response=response,
            identity=identity.to_dict(),
            body=asdict(body) | {"head_scale": head_scale},
        )
    )
    table_z = {"CT": rng.uniform(-40, 40), "MR": rng.uniform(-30, 30)}
    poses = [_pose(rng, table_z[m], moved=i >= 2) for i, m in enumerate(modalities)]
    for frame_name, les in lesions:
        n = sum(1 for le in plan.lesions if le.patient == key)
        plan.lesions.append(
            LesionRecord(
                patient=key,
                lesion=f"{key}-L{n + 1}",
                organ=les.organ,
                frame=frame_name,
                center_mm=list(les.center),
                radii_baseline_mm=[round(r, 3) for r in les.radii_at(False)],
                radii_followup_mm=[round(r, 3) for r in les.radii_at(True)],
                volume_baseline_ml=round(les.volume_ml(False), 4),
                volume_followup_ml=round(les.volume_ml(True), 4),
                change=response if les.organ != "kidney" else "stable",
                scale_followup=les.scale_followup,
            )
        )
    for modality in ("CT", "MR"):
        i_bl, i_fu = (0, 2) if modality == "CT" else (1, 3)
        rel = an.relative_transform(poses[i_bl], poses[i_fu])
        plan.transforms.append(
            TransformRecord(
                patient=key,
                modality=modality,
                baseline_study_uid=study_uids[i_bl],
                followup_study_uid=study_uids[i_fu],
                baseline_to_followup=np.round(rel, 9).tolist(),
                rotation_deg=list(poses[i_fu].rotation_deg),
                translation_mm=[
                    round(a - b, 4)
                    for a, b in zip(poses[i_fu].translation_mm, poses[i_bl].translation_mm, strict=True)
                ],
            )
        )
    contrast = rng.random() < 0.6
    for i in range(4):
        modality = modalities[i]
        followup = i >= 2
        study_desc = (
            ("CT THORAX" if indication == "lung" else "CT ABDOMEN") + (" C+" if contrast else "")
            if modality == "CT"
            else ("MRI BRAIN" if mr_region == "head" else "MRI LIVER")
        )
        study_time = f"{rng.randint(7, 17):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"
        plan.studies.append(
            StudyRecord(
                study_uid=study_uids[i],
                patient=key,
                site=site.key,
                modality=modality,
                timepoint="followup" if followup else "baseline",
                study_index=i,
                date=dates[i].strftime("%Y%m%d"),
                accession=accessions[i],
                description=study_desc,
                frame_of_reference_uid=for_uids[i],
                pose=_pose_dict(poses[i]),
            )
        )
        study = {
            "uid": study_uids[i],
            "date": dates[i].strftime("%Y%m%d"),
            "description": study_desc,
            "accession": accessions[i],
        }
        common = {
            "study_uid": study_uids[i],
            "for_uid": for_uids[i],
            "study_description": study_desc,
            "study_time": study_time,
        }
        frames = {
            "body": [le for f, le in lesions if f == "body"],
            "head": [le for f, le in lesions if f == "head"],
        }
        if modality == "CT":
            job = _ct_job(
                rng,
                root,
                site,
                layout,
                person,
                identity,
                key,
                p,
                i,
                seed,
                preset,
                body,
                indication,
                poses[i],
                study,
                common,
                contrast,
                frames["body"],
                followup,
            )
            jobs = [job]
        else:
            jobs = [
                _mr_job(
                    rng,
                    root,
                    site,
                    layout,
                    person,
                    identity,
                    key,
                    p,
                    i,
                    seed,
                    preset,
                    body,
                    head_scale,
                    mr_region,
                    poses[i],
                    study,
                    common,
                    weighting,
                    frames,
                    followup,
                )
                for weighting in ("T1", "T2")
            ]
        for job in jobs:
            plan.jobs.append(job)
            site_series[site.key].append(job)
            plan.series_meta[job.header["series_uid"]] = {
                "patient": key,
                "site": site.key,
                "study_uid": study_uids[i],
                "folder": folder,
            }


def _ct_job(
    rng: random.Random,
    root: Path,
    site: SiteProfile,
    layout: _Layout,
    person: Person,
    identity: Identity,
    key: str,
    p: int,
    i: int,
    seed: int,
    preset: SizePreset,
    body: an.BodyShape,
    indication: str,
    pose: an.Pose,
    study: dict[str, Any],
    common: dict[str, Any],
    contrast: bool,
    lesions: list[an.Lesion],
    followup: bool,
) -> _Job:
    n = preset.ct_slices
    top, bottom = _CT_RANGE[indication]
    step = round((top - bottom) / n, 3)  # full: 2.5 mm
    fov = float(np.clip(round(2 * (body.half_width + 40), -1), 360, 500))
    dx = round(fov / preset.ct_matrix, 6)
    jitter = rng.uniform(-8, 8)
    z_top = round(top + pose.translation_mm[2] + jitter, 2)
    x0 = round(-fov / 2 + dx / 2 + rng.uniform(-5, 5), 4)
    y0 = round(-fov / 2 + dx / 2 + rng.uniform(-5, 5) + 20.0, 4)
    if site.head_first_order:
        grid = an.Grid((n, preset.ct_matrix, preset.ct_matrix), (dx, dx), -step, (x0, y0, z_top))
    else:
        grid = an.Grid(
            (n, preset.ct_matrix, preset.ct_matrix),
            (dx, dx),
            step,
            (x0, y0, round(z_top - (n - 1) * step, 2)),
        )
    series_uid = _uid(site, seed, key, i, "ct")
    series_number = {"site-a": 2, "site-b": 2, "site-c": 3, "site-d": 4}.get(site.key[:6], 2)
    desc = f"{'Chest' if indication == 'lung' else 'Abdomen'} {step:.1f}mm {site.vendor.ct_kernel}"
    series = {"uid": series_uid, "number": series_number, "description": desc}
    has_scout_series = site.vendor.manufacturer in ("GE MEDICAL SYSTEMS", "SIEMENS")
    scout = None
    if has_scout_series:
        scout_uid = _uid(site, seed, key, i, "scout-series")
        scout_sop = _uid(site, seed, key, i, "scout-sop")
        scout_series = {"uid": scout_uid, "number": 1, "description": "Topogram"}
        scout = {
            "series_uid": scout_uid,
            "sop_uid": scout_sop,
            "series_number": 1,
            "instance_number": 1,
            "path": layout.path(person, study, scout_series, 1, scout_sop),
        }
    sops = [_uid(site, seed, key, i, "ct", k) for k in range(n)]
    paths = [layout.path(person, study, series, k + 1, sops[k]) for k in range(n)]
    signed = site.ct_signed
    header = {
        **common,
        "modality": "CT",
        "series_uid": series_uid,
        "series_number": series_number,
        "series_description": desc,
        "protocol": f"{'Thorax' if indication == 'lung' else 'Abdomen'} Routine",
        "series_time": common["study_time"],
        "body_part": "CHEST" if indication == "lung" else "ABDOMEN",
        "image_type": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "slice_thickness": step,
        "bits_stored": 16 if signed else 12,
        "signed": signed,
        "intercept": site.ct_intercept,
        "slope": 1.0,
        "padding": site.ct_padding,
        "scout_ref": scout["sop_uid"] if scout else None,
        "study_ref": study,
        "modality_fields": {
            "KVP": 120,
            "XRayTubeCurrent": rng.randint(120, 320),
            "ExposureTime": 500,
            "ConvolutionKernel": site.vendor.ct_kernel,
            "ReconstructionDiameter": round(fov, 1),
            "DataCollectionDiameter": 500.0,
            "GantryDetectorTilt": 0.0,
            "TableHeight": round(140.0 + rng.uniform(-20, 20), 1),
            "RotationDirection": "CW",
            "RescaleIntercept": site.ct_intercept,
            "RescaleSlope": 1.0,
            "RescaleType": "HU",
            "WindowCenter": [40, -600] if indication == "lung" else 50,
            "WindowWidth": [400, 1500] if indication == "lung" else 400,
            **({"ContrastBolusAgent": "Omnipaque 350", "ContrastBolusRoute": "IV"} if contrast else {}),
            **({"PixelPaddingValue": site.ct_padding} if site.ct_padding is not None else {}),
        },
    }
    return _Job(
        root=str(root / plan_folder(site)),
        site=site,
        identity=identity,
        study_index=i,
        plant_seed=f"{seed}:{key}:{i}",
        noise_seed=[seed, p, i, 0],
        kind="ct_body",
        anatomy="body",
        body=body,
        head_scale=1.0,
        lesions=lesions,
        followup=followup,
        pose=pose,
        grid=grid,
        header=header,
        paths=paths,
        sop_uids=sops,
        missing_index=None,
        noise=round(rng.uniform(8.0, 14.0), 2),
        ghost_amplitude=0.0,
        contrast=contrast,
        scout=scout,
    )


def plan_folder(site: SiteProfile) -> str:
    return f"{site.key}-{_safe(site.city).lower()}"


def _mr_job(
    rng: random.Random,
    root: Path,
    site: SiteProfile,
    layout: _Layout,
    person: Person,
    identity: Identity,
    key: str,
    p: int,
    i: int,
    seed: int,
    preset: SizePreset,
    body: an.BodyShape,
    head_scale: float,
    region: str,
    pose: an.Pose,
    study: dict[str, Any],
    common: dict[str, Any],
    weighting: str,
    frames: dict[str, list[an.Lesion]],
    followup: bool,
) -> _Job:
    n, m = preset.mr_slices, preset.mr_matrix
    top, bottom = _MR_RANGE[region]
    step = round((top - bottom) / n, 3)
    tz = pose.translation_mm[2]
    sagittal = region == "head" and weighting == "T1" and site.mr_t1_sagittal
    if region == "head":
        fov = 240.0
        dx = round(fov / m, 6)
        if sagittal:
            # rows run head to feet, columns front to back, slices from the patient's left to right
            grid = an.Grid(
                (n, m, m),
                (dx, dx),
                round(150.0 / n, 3),
                (75.0, -fov / 2 + dx / 2, round(tz + 110.0, 2)),
                (0.0, 1.0, 0.0),
                (0.0, 0.0, -1.0),
            )
        else:
            grid = an.Grid(
                (n, m, m), (dx, dx), step, (-fov / 2 + dx / 2, -fov / 2 + dx / 2, round(bottom + tz, 2))
            )
    else:
        fov = 400.0
        dx = round(fov / m, 6)
        grid = an.Grid(
            (n, m, m), (dx, dx), step, (-fov / 2 + dx / 2, -fov / 2 + dx / 2 + 10.0, round(bottom + tz, 2))
        )
    kind = "mr_t1" if weighting == "T1" else "mr_t2"
    series_uid = _uid(site, seed, key, i, kind)
    number = 3 if weighting == "T1" else 4
    plane = "Sag" if sagittal else "Ax"
    desc = f"{plane} {weighting} {'SE' if weighting == 'T1' else 'TSE'}"
    series = {"uid": series_uid, "number": number, "description": desc}
    sops = [_uid(site, seed, key, i, kind, k) for k in range(n)]
    paths = [layout.path(person, study, series, k + 1, sops[k]) for k in range(n)]
    tr, te = (520.0, 12.0) if weighting == "T1" else (4200.0, 98.0)
    header = {
        **common,
        "modality": "MR",
        "series_uid": series_uid,
        "series_number": number,
        "series_description": desc,
        "protocol": f"{'Brain' if region == 'head' else 'Liver'} {weighting}",
        "series_time": common["study_time"],
        "body_part": "HEAD" if region == "head" else "ABDOMEN",
        "image_type": ["ORIGINAL", "PRIMARY", "M", "ND"],
        "slice_thickness": round(abs(grid.slice_step) * 0.8, 3),
        "bits_stored": 12,
        "signed": False,
        "mr_scale": 1.8,
        "study_ref": study,
        "modality_fields": {
            "ScanningSequence": "SE",
            "SequenceVariant": "SK" if weighting == "T2" else "NONE",
            "ScanOptions": "",
            "MRAcquisitionType": "2D",
            "RepetitionTime": tr,
            "EchoTime": te,
            "EchoTrainLength": 1 if weighting == "T1" else 16,
            "FlipAngle": 90.0,
            "MagneticFieldStrength": site.field_strength,
            "ImagingFrequency": round(42.577 * site.field_strength, 4),
            "ImagedNucleus": "1H",
            "PixelBandwidth": 190.0,
            "InPlanePhaseEncodingDirection": "COL",
            "ReceiveCoilName": "Head 20" if region == "head" else "Body 18",
            "WindowCenter": 1100,
            "WindowWidth": 2200,
        },
    }
    return _Job(
        root=str(root / plan_folder(site)),
        site=site,
        identity=identity,
        study_index=i,
        plant_seed=f"{seed}:{key}:{i}",
        noise_seed=[seed, p, i, 1 if weighting == "T1" else 2],
        kind=kind,
        anatomy="head" if region == "head" else "body",
        body=body,
        head_scale=head_scale,
        lesions=frames["head"] if region == "head" else frames["body"],
        followup=followup,
        pose=pose,
        grid=grid,
        header=header,
        paths=paths,
        sop_uids=sops,
        missing_index=None,
        noise=round(rng.uniform(0.015, 0.03), 4),
        ghost_amplitude=0.0,
        contrast=False,
    )


def _plan_defects(plan: _Plan, rng: random.Random) -> None:
    """QC ground truth: a few missing slices, noisy CTs, ghosted MRs and localizers inside CT series."""
    ct = [j for j in plan.jobs if j.kind == "ct_body"]
    mr = [j for j in plan.jobs if j.kind != "ct_body"]
    rng.shuffle(ct)
    rng.shuffle(mr)
    per_kind = max(1, len(ct) // 25)
    picks = {
        "missing_slice": ct[:per_kind],
        "strong_noise": ct[per_kind : 2 * per_kind],
        "localizer_in_series": ct[2 * per_kind : 3 * per_kind],
    }
    picks["motion_ghosting"] = mr[: max(1, len(mr) // 50)]
    for kind, jobs in picks.items():
        for job in jobs:
            uid = job.header["series_uid"]
            if kind == "missing_slice":
                k = rng.randint(job.grid.shape[0] // 4, 3 * job.grid.shape[0] // 4)
                job.missing_index = k
                gone_path = job.paths.pop(k)
                job.sop_uids.pop(k)
                detail = {
                    "slice_index": k,
                    "instance_number": k + 1,
                    "position": [round(float(v), 4) for v in job.grid.position(k)],
                    "path_not_written": gone_path,
                }
            elif kind == "strong_noise":
                job.noise = round(rng.uniform(55.0, 80.0), 2)
                detail = {"noise_hu": job.noise}
            elif kind == "motion_ghosting":
                job.ghost_amplitude = round(rng.uniform(0.45, 0.6), 3)
                detail = {
                    "phase_error_rad": job.ghost_amplitude,
                    "ghost_shift_fraction": 0.25,
                    "phase_encode_axis": "rows",
                }
            else:
                sop = _uid(job.site, "scout-in-series", uid)
                path = job.paths[-1]
                stem = path.rsplit("/", 1)
                name = stem[-1]
                extra = (
                    (name.split(".")[0] + "_LOC" + ("." + name.split(".")[1] if "." in name else ""))
                    if job.site.layout != "id_accession_uid"
                    else sop
                )
                if job.site.layout == "flat_uid":
                    extra = f"{sop}.dcm"
                job.scout_in_series = {
                    "sop_uid": sop,
                    "instance_number": job.grid.shape[0] + 1,
                    "path": (stem[0] + "/" if len(stem) > 1 else "") + extra,
                }
                detail = {"sop_instance_uid": sop, "instance_number": job.grid.shape[0] + 1}
            plan.defects.append(DefectRecord(series_uid=uid, kind=kind, detail=detail))


_PDF = (
    "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R>>endobj\n"
    "4 0 obj<</Length {n}>>stream\nBT /F1 11 Tf 50 780 Td ({text}) Tj ET\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def _plan_broken(
    plan: _Plan,
    rng: random.Random,
    site: SiteProfile,
    folder: str,
    layout: _Layout,
    jobs: list[_Job],
    people: list[tuple[Person, Identity]],
    seed: int,
) -> None:
    """Per site: a truncated file, non-DICOM files, and DICOM files missing required attributes."""
    if not jobs:
        return
    ct_jobs = [j for j in jobs if j.kind == "ct_body"] or jobs
    _person, identity = people[0]
    specs = [
        ("truncated", "", 0.55, "transfer stopped inside the pixel data"),
        ("truncated", "", 300, "transfer stopped inside the header"),
        ("missing_attribute", "SOPInstanceUID", None, "no SOP Instance UID (dataset and file meta)"),
        ("missing_attribute", "PatientID", None, "no Patient ID"),
    ]
    for n, (kind, attribute, keep, detail) in enumerate(specs):
        job = ct_jobs[n % len(ct_jobs)]
        k = n % job.grid.shape[0]
        sop = _uid(site, seed, "broken", n, job.header["series_uid"])
        stem = job.paths[0].rsplit("/", 1)
        prefix = stem[0] + "/" if len(stem) > 1 else ""
        name = {
            "nested_names": f"IMG{9000 + n}.dcm",
            "flat_numbered": f"{99999000 + n:08d}.dcm",
            "cd_no_dicomdir": f"IM{900000 + n:06d}",
            "id_accession_uid": sop,
        }.get(site.layout, f"{sop}.dcm")
        path = prefix + name
        spec: dict[str, Any] = {
            "kind": kind,
            "attribute": attribute,
            "slice": k,
            "sop_uid": sop,
            "path": path,
        }
        if kind == "truncated":
            spec["keep_bytes"] = int(keep) if keep and keep > 1 else 0
            if spec["keep_bytes"] == 0:
                frame_bytes = job.grid.shape[1] * job.grid.shape[2] * 2
                spec["keep_bytes"] = -int(frame_bytes * 0.45)  # cut 45% of a frame off the end
        job.broken.append(spec)
        plan.broken_files.append(
            BrokenFileRecord(
                path=f"{folder}/{path}",
                site=site.key,
                kind=kind,
                detail=f"{detail}{': ' + attribute if attribute else ''}",
                series_uid=job.header["series_uid"],
            )
        )
    text = f"Radiology report for {identity.family} {identity.given}, MRN {identity.patient_id}, DOB {identity.birth_date:%d/%m/%Y}: no acute findings"
    report = _PDF.replace("{n}", str(len(text) + 40)).replace("{text}", text).encode("latin-1", "replace")
    thumbs = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(rng.getrandbits(8) for _ in range(1016))
    notes = f"Export for {identity.given} {identity.family} ({identity.patient_id}), phone {identity.phone}\r\nCD burned by {site.station}\r\n".encode()
    first_dir = ct_jobs[0].paths[0].rsplit("/", 1)[0] if "/" in ct_jobs[0].paths[0] else ""
    loose = [
        (f"{first_dir}/REPORT.PDF" if first_dir else "REPORT.PDF", report, "PDF radiology report"),
        (f"{first_dir}/Thumbs.db" if first_dir else "Thumbs.db", thumbs, "Windows thumbnail cache"),
        (
            "README.TXT" if site.layout == "cd_no_dicomdir" else "export_notes.txt",
            notes,
            "text note with identifiers",
        ),
    ]
    if site.layout == "cd_no_dicomdir":
        loose.append(("AUTORUN.INF", b"[autorun]\r\nopen=viewer\\viewer.exe\r\n", "CD autorun file"))
    for rel, data, detail in loose:
        plan.loose_files.append((f"{folder}/{rel}", data))
        plan.broken_files.append(
            BrokenFileRecord(path=f"{folder}/{rel}", site=site.key, kind="not_dicom", detail=detail)
        )


# --- assembling the manifest ---------------------------------------------------------------------------


def _assemble(
    plan: _Plan, results: dict[str, dict[str, Any]], out_dir: Path, seed: int, size: str
) -> ExportManifest:
    series: list[SeriesRecord] = []
    files: list[FileRecord] = []
    defects_by_series: dict[str, list[str]] = {}
    for d in plan.defects:
        defects_by_series.setdefault(d.series_uid, []).append(d.kind)
    for job in plan.jobs:
        h = job.header
        uid = h["series_uid"]
        res = results[uid]
        meta = plan.series_meta[uid]
        folder = meta["folder"]
        if "scout" in res:
            sc = res["scout"]
            series.append(
                SeriesRecord(
                    series_uid=job.scout["series_uid"],  # type: ignore[index]
                    study_uid=h["study_uid"],
                    patient=meta["patient"],
                    site=meta["site"],
                    modality="CT",
                    kind="ct_localizer",
                    series_number=1,
                    description="Topogram",
                    rows=sc["rows"],
                    columns=sc["cols"],
                    slices_planned=1,
                    files=1,
                    pixel_spacing=[job.grid.pixel_spacing[1]] * 2,
                    slice_spacing=0.0,
                    slice_thickness=h["slice_thickness"],
                    orientation=[1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
                    first_position=[],
                    defects=[],
                    noise=0.0,
                    rescale_slope=1.0,
                    rescale_intercept=0.0,
                    lesion_voxels={},
                    planted=res["planted"],
                )
            )
            scout_uid = job.scout["series_uid"]  # type: ignore[index]
            files.append(FileRecord(f"{folder}/{sc['path']}", sc["sop"], scout_uid, 1, "localizer"))
        for f in res["files"]:
            files.append(FileRecord(f"{folder}/{f['path']}", f["sop"], uid, f["instance"], "image"))
        if "scout_in_series" in res:
            sc = res["scout_in_series"]
            files.append(FileRecord(f"{folder}/{sc['path']}", sc["sop"], uid, sc["instance"], "localizer"))
        lesion_voxels = {
            f"{meta['patient']}-L{int(label) - an.LESION_BASE + 1 + _lesion_offset(plan, meta['patient'], job)}": n
            for label, n in res["lesion_voxels"].items()
        }
        series.append(
            SeriesRecord(
                series_uid=uid,
                study_uid=h["study_uid"],
                patient=meta["patient"],
                site=meta["site"],
                modality=h["modality"],
                kind=job.kind,
                series_number=h["series_number"],
                description=h["series_description"],
                rows=job.grid.shape[1],
                columns=job.grid.shape[2],
                slices_planned=job.grid.shape[0],
                files=len(res["files"]) + ("scout_in_series" in res),
                pixel_spacing=list(job.grid.pixel_spacing),
                slice_spacing=abs(job.grid.slice_step),
                slice_step=job.grid.slice_step,
                slice_thickness=h["slice_thickness"],
                orientation=[float(v) for v in (*job.grid.row_dir, *job.grid.col_dir)],
                first_position=[round(float(v), 4) for v in job.grid.position(0)],
                defects=defects_by_series.get(uid, []),
                noise=job.noise if job.kind == "ct_body" else res["noise_stored"],
                rescale_slope=float(h.get("slope", 1.0)),
                rescale_intercept=float(h.get("intercept", 0.0)),
                lesion_voxels=lesion_voxels,
                planted=res["planted"],
            )
        )
    return ExportManifest(
        generator=GENERATOR,
        export_dir=str(out_dir),
        seed=seed,
        size=size,
        sites=plan.sites,
        patients=plan.patients,
        studies=plan.studies,
        series=series,
        files=files,
        defects=plan.defects,
        broken_files=plan.broken_files,
        transforms=plan.transforms,
        lesions=plan.lesions,
    )


def _lesion_offset(plan: _Plan, patient: str, job: _Job) -> int:
    """Head lesions follow the body lesions in a patient's numbering."""
    if job.anatomy != "head":
        return 0
    return sum(1 for le in plan.lesions if le.patient == patient and le.frame == "body")
