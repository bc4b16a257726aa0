"""The platform's check (``check_deidentified``, `--verified-deidentified`) refuses none of Curata's
own releases: `curata deid` (research, OCR on) over every pydicom-data object, as it comes and with
one patient's identifiers planted everywhere (every profile's releases are checked in test_fast_path)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest

from curata.collect.deid import check_deidentified
from curata.errors import CurataError

from .planting import PATIENTS, corpus_files, plant_everywhere
from .test_cli import _curata


def _corpus(folder: Path) -> int:
    """Every pydicom-data object, once as it comes and once planted; returns how many were written."""
    folder.mkdir(parents=True)
    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, path in enumerate(corpus_files()):
            (folder / f"plain{i:03d}").write_bytes(Path(path).read_bytes())
            ds = pydicom.dcmread(path)
            plant_everywhere(ds, PATIENTS[i % len(PATIENTS)])
            try:
                ds.save_as(folder / f"planted{i:03d}", enforce_file_format=True)
            except Exception:
                continue
            n += 1
    return n + len(corpus_files())


def _refused(blobs: list[bytes]) -> list[str]:
    out = []
    for raw in blobs:
        try:
            check_deidentified(raw)
        except CurataError as exc:
            out.append(exc.message)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "in"
    assert _corpus(folder) > 200
    return folder


def test_no_release_of_curata_deid_is_refused_at_the_platform(corpus: Path, tmp_path: Path) -> None:
    """The CLI with OCR, under the default profile. Every profile's releases, the lanes' and the
    engine's, are checked the same way in test_fast_path, file for file (a gateway and `curata
    ingest` store the engine's release as it comes)."""
    profile = "research"
    key = tmp_path / "site.key"
    assert _curata("keygen", str(key), cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    run = _curata("deid", str(corpus), str(out), "--key-file", str(key), "--profile", profile, "-j", "2",
                  "--quarantine", str(tmp_path / "q"), cwd=tmp_path)  # fmt: skip
    assert run.returncode in (0, 1), run.stderr
    released = [p.read_bytes() for p in out.rglob("*.dcm")]
    # most of them: the rest (burned-in text OCR cannot clear, documents...) are quarantined
    assert len(released) > 100, (profile, len(released))
    assert _refused(released) == []
