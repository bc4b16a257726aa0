"""Shared fixtures: workspaces, catalogs on SQLite and a real PostgreSQL, small real DICOM files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import settings
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def in_ci() -> bool:
    """True under CI (``CI=true``), where scripts/system-deps.sh has installed every real peer."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# Property tests explore new examples on every run here; in CI each runs the same examples
# (derandomized), so a run of main is reproducible and a merge is judged on what was tested locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
if in_ci():
    settings.load_profile("ci")


def require_peer(available: bool, what: str, hint: str = "scripts/system-deps.sh installs it") -> None:
    """Skip when a real peer (Orthanc, dcmtk, dcm2niix, tesseract, dciodvfy...) is missing here; FAIL in CI.

    Callable in a test, a fixture, or at module level (then the whole module skips, or errors in CI).
    """
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is missing, and CI must run every real peer ({hint})", pytrace=False)
    pytest.skip(f"{what} not installed ({hint})", allow_module_level=True)


def require_programs(*programs: str) -> None:
    """:func:`require_peer` for programs looked up on PATH."""
    import shutil

    missing = [p for p in programs if shutil.which(p) is None]
    require_peer(not missing, ", ".join(missing))


def require_module(name: str) -> Any:
    """Import an optional test dependency (the dev extra installs it); skip without it here, FAIL in CI."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        require_peer(False, f"the Python module {name}", "pip install -e '.[dev]' (scripts/bootstrap.sh)")


PG_ADMIN_URL = os.environ.get("CURATA_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(autouse=True)
def _pydicom_validation_as_found() -> Iterator[None]:
    """pydicom's validation modes are one global: a test (or the code it runs) that leaves them changed
    fails here, and they are put back, so no later test of the worker runs under them (the whole suite
    once failed 52 tests in one worker that found writing validation set to RAISE)."""
    config = pydicom.config.settings
    raw = config._reading_validation_mode, config._writing_validation_mode
    before = config.reading_validation_mode, config.writing_validation_mode
    yield
    after = config.reading_validation_mode, config.writing_validation_mode
    config._reading_validation_mode, config._writing_validation_mode = raw
    if after != before:
        pytest.fail(f"pydicom's validation modes were left changed: {before} -> {after}")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    if not _pg_available():
        if os.environ.get("CURATA_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; scripts/test.sh starts one")
        require_peer(False, f"PostgreSQL at {PG_ADMIN_URL}", "run the tests through scripts/test.sh")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"curata_test_{uuid.uuid4().hex[:12]}"
    admin = pg_admin_url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog tests run on both engines."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from curata.workspace import Workspace

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    monkeypatch.delenv("CURATA_WORKSPACE", raising=False)
    return Workspace.init(tmp_path / "ws", site="test-site")


def pseudonym_of(patient_id: str) -> str:
    """A stand-in for the site's keyed pseudonym of ``patient_id`` (``CUR-`` + 16 base32), as
    ``make_ct(deidentified=True)`` writes it; a value that is one already is kept."""
    import base64
    import hashlib

    from curata.collect.deid.pseudonyms import is_pseudonym

    if is_pseudonym(patient_id):
        return patient_id
    return "CUR-" + base64.b32encode(hashlib.sha256(patient_id.encode()).digest()[:10]).decode()


def make_ct(
    path: Path | None = None,
    *,
    patient_id: str = "PAT-0001",
    patient_name: str = "Doe^Jane",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    index: int = 0,
    rows: int = 16,
    columns: int = 16,
    deidentified: bool = False,
    seed: int = 0,
) -> pydicom.Dataset:
    """A small but complete CT image (real Part-10 when ``path`` is given)."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = ds.SeriesDate = "20240301"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC123"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "AXIAL 1.0"
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "Revolution"
    ds.SeriesNumber = 2
    ds.InstanceNumber = index + 1
    ds.FrameOfReferenceUID = "1.2.3.4.5.6.7"
    ds.ImagePositionPatient = [-100.0, -100.0, float(-index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.KVP = 120
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    rng = np.random.default_rng(seed + index)
    ds.PixelData = rng.integers(0, 2000, size=(rows, columns), dtype=np.uint16).tobytes()
    if deidentified:  # as a Curata site releases it: the platform checks more than the flag
        ds.PatientID = ds.PatientName = pseudonym_of(patient_id)  # a keyed pseudonym's shape
        ds.PatientBirthDate = ds.AccessionNumber = ""  # every profile empties them
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "test fixture"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.fixture
def ct_series(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: write ``n`` slices of one series into a folder; returns the folder."""

    def build(n: int = 5, folder: str = "in", deidentified: bool = False, **kw: object) -> Path:
        out = tmp_path / folder
        study, series = generate_uid(), generate_uid()
        for i in range(n):
            make_ct(
                out / f"IM{i:04d}",
                study_uid=study,
                series_uid=series,
                index=i,
                deidentified=deidentified,
                **kw,
            )  # type: ignore[arg-type]
        return out

    return build


def corrupt_rle(ds: pydicom.Dataset) -> pydicom.Dataset:
    """RLE-compress ``ds`` (if not yet) and damage its first frame so that pylibjpeg-rle, a Rust
    decoder, panics on it (pyo3's PanicException, a BaseException): the first segment's runs repeat
    128 bytes each, far past the frame. pydicom's own RLE decoder only warns on such a segment."""
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import RLELossless

    if ds.file_meta.TransferSyntaxUID != RLELossless:
        ds.compress(RLELossless)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))
    first = bytearray(frames[0])
    start = int.from_bytes(first[4:8], "little")
    end = int.from_bytes(first[8:12], "little") or len(first)
    first[start:end] = b"\x81\x00" * ((end - start) // 2) + b"\x00" * ((end - start) % 2)
    ds.PixelData = encapsulate([bytes(first), *frames[1:]])
    return ds


def truncate_pixels(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Keep half of the (native) pixel data: a transfer cut short. pydicom and numpy raise a plain
    ``ValueError`` on it (no panic)."""
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return ds


def garbage_jpeg_lossless(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A JPEG Lossless object whose codestream is garbage between its SOI and EOI markers: every pixel
    data plugin refuses it with a ``RuntimeError``."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(range(256)) * 2 + b"\xff\xd9"])
    return ds


def garbage_jpeg2000(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A JPEG 2000 object whose codestream is no JPEG 2000 at all (``RuntimeError`` from every plugin)."""
    from pydicom.uid import JPEG2000Lossless

    garbage_jpeg_lossless(ds)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    return ds


def write_good_and_corrupt_series(
    folder: Path, n: int = 4, damage: Callable[[pydicom.Dataset], pydicom.Dataset] = corrupt_rle
) -> tuple[str, str]:
    """Two CT series of ``n`` slices under ``folder``: one intact, one whose second slice (the only one
    when n is 1) is damaged by ``damage`` (by default RLE-compressed so that the Rust RLE decoder
    panics); returns their series UIDs (intact, corrupt)."""
    good, bad = generate_uid(), generate_uid()
    study = generate_uid()
    for i in range(n):
        make_ct(folder / "good" / f"{i}.dcm", index=i, study_uid=study, series_uid=good)
        ds = make_ct(index=i, study_uid=study, series_uid=bad, seed=7)
        ds.SeriesNumber, ds.SeriesDescription = 3, "AXIAL DAMAGED"
        if i == min(1, n - 1):
            damage(ds)
        (folder / "bad").mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / "bad" / f"{i}.dcm", enforce_file_format=True)
    return good, bad
