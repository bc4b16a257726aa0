"""The compiled core (``curata._compiled``): loaded where built from the current source, never from a
stale build, and giving the very bytes and records the Python source gives, refusals included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curata import _compiled

REPO = Path(__file__).resolve().parents[1]
BUILT = all(_compiled.build_path(name).is_file() for name in _compiled.MODULES)


def _require_build() -> None:
    if not BUILT:
        if os.environ.get("CI"):
            pytest.fail(
                "the compiled core is not built: scripts/bootstrap.sh builds it (Cython, a C compiler)"
            )
        pytest.skip("the compiled core is not built here")


def test_every_listed_module_runs_compiled() -> None:
    _require_build()
    assert not _compiled.disabled()
    for name in _compiled.MODULES:
        assert _compiled.loaded_compiled(name), name


def test_pure_python_when_asked() -> None:
    code = (
        "import curata.collect.deid.engine as e, curata.catalog.dicom_index as d; "
        "print(e.__file__); print(d.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "CURATA_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [Path(p).suffix for p in out] == [".py", ".py"]


def test_a_stale_build_is_never_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build is found by its source's digest: once the source changes by one byte, the old build
    is not loaded: Python imports the source."""
    _require_build()
    name = "curata.collect.deid.pseudonyms"
    source = _compiled.source_path(name).read_bytes()
    pkg = tmp_path / "curata" / "collect" / "deid"
    pkg.mkdir(parents=True)
    py = pkg / "pseudonyms.py"
    py.write_bytes(source)
    shutil.copyfile(_compiled.build_path(name), pkg / _compiled.build_path(name).name)
    monkeypatch.setattr(_compiled, "PACKAGE_ROOT", tmp_path / "curata")
    finder = _compiled._Finder()
    spec = finder.find_spec(name, None)
    assert spec is not None and spec.origin == str(pkg / _compiled.build_path(name).name)
    py.write_bytes(source + b"\n# edited\n")
    assert finder.find_spec(name, None) is None
    assert [p.name for p in _compiled._builds(name)] == [_compiled.build_path(name, source).name]
    assert finder.find_spec("curata.collect.deid.batch", None) is None  # not listed: never compiled


_DIGESTS = r"""
import hashlib, json, sys, warnings
from pathlib import Path
import pydicom
from curata.collect.deid import Deidentifier, load_profile
from curata.errors import CurataError
from tests.collect.deid.conftest import KEY
from tests.collect.deid.planting import Patient, corpus_files, plant_everywhere

def digests():
    out = {}
    patient = Patient("SUZUKI", "KENJI", "MRN7730041", "ACC55102", "19610412")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = corpus_files()
        inputs = [(Path(p).name, Path(p).read_bytes()) for p in files]
        for path in files:
            ds = pydicom.dcmread(path)
            try:
                plant_everywhere(ds, patient)
                import io
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
            except Exception:
                continue
            inputs.append(("planted " + Path(path).name, buf.getvalue()))
        for profile in ("research", "basic"):
            deid = Deidentifier(KEY, load_profile(profile), ocr=False)
            for label, raw in inputs:
                try:
                    res = deid.deidentify_bytes(raw)
                except CurataError as exc:
                    out[f"{profile} {label}"] = ["refused", str(exc)]
                    continue
                rec = res.record.as_dict() if hasattr(res.record, "as_dict") else dict(res.record)
                rec = json.dumps(rec, sort_keys=True, default=str)
                out[f"{profile} {label}"] = [hashlib.sha256(res.output_bytes).hexdigest(), rec]
    return out
"""


def _digests_in(env: dict[str, str]) -> dict[str, list[str]]:
    code = _DIGESTS + "\njson.dump(digests(), sys.stdout)\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def test_compiled_and_python_release_the_same_bytes_and_records() -> None:
    """Every pydicom-data object, as it comes and with identifiers planted everywhere, under two
    profiles: the compiled core and the Python source release the same bytes with the same record,
    and refuse the same objects with the same reason."""
    _require_build()
    compiled = _digests_in({k: v for k, v in os.environ.items() if k != "CURATA_PURE_PYTHON"})
    python = _digests_in({**os.environ, "CURATA_PURE_PYTHON": "1"})
    assert len(compiled) > 400
    assert sum(v[0] != "refused" for v in compiled.values()) > 200
    assert compiled.keys() == python.keys()
    differ = [k for k in compiled if compiled[k] != python[k]]
    assert differ == [], differ[:5]
