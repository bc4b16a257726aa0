"""``curata._pydicom_import``: the ``curata`` command imports pydicom without ``requests`` and ``tqdm``
(pydicom's download of its own test files) and with the installed entry points read once; pydicom
then decodes and encodes what it does after a plain import, and nothing else changes."""

from __future__ import annotations

import json
import subprocess
import sys

_REPORT = """
import importlib.metadata, json, sys
real_entry_points = importlib.metadata.entry_points
{before}
import pydicom
from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS
from pydicom.pixels.encoders.base import _PIXEL_DATA_ENCODERS
from pydicom.pixels.decoders import pylibjpeg as dec
loaded = sorted(m for m in ("requests", "tqdm", "urllib3") if m in sys.modules)
import importlib, importlib.util
importable = [m for m in ("requests", "tqdm") if importlib.util.find_spec(m) is not None]
for m in importable:  # still importable once pydicom is in
    importlib.import_module(m)
print(json.dumps({{
    "loaded": loaded,
    "decoders": {{str(uid): sorted(d.available_plugins) for uid, (d, *_) in _PIXEL_DATA_DECODERS.items()}},
    "encoders": {{str(uid): sorted(e.available_plugins) for uid, (e, *_) in _PIXEL_DATA_ENCODERS.items()}},
    "pylibjpeg": sorted(str(u) for u in dec._DECODERS),
    "entry_points_restored": importlib.metadata.entry_points is real_entry_points,
    "finders_left": [type(f).__module__ for f in sys.meta_path if type(f).__module__ == "curata._pydicom_import"],
    "imported_after": sorted(m for m in importable if m in sys.modules),
    "installed": importable,
}}))
"""


def _report(before: str) -> dict:  # type: ignore[type-arg]
    run = subprocess.run(
        [sys.executable, "-c", _REPORT.format(before=before)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_pydicom_imported_leanly_decodes_and_encodes_as_after_a_plain_import() -> None:
    plain = _report("")
    lean = _report("import curata._pydicom_import as lean; lean.install()")
    # requests comes with dicomweb-client (a dependency); tqdm with the dev and bench extras
    assert "requests" in plain["loaded"] and set(plain["installed"]) <= set(plain["loaded"])
    assert lean["loaded"] == []  # what the lean import leaves out
    assert lean["decoders"] == plain["decoders"] and lean["encoders"] == plain["encoders"]
    assert lean["pylibjpeg"] == plain["pylibjpeg"] and len(lean["pylibjpeg"]) >= 10  # J2K, JPEG, RLE, LS
    assert lean["entry_points_restored"] and lean["finders_left"] == []
    assert lean["imported_after"] == lean["installed"]
