"""The gate, the safety net, must not refuse clean real files: every pydicom-data object with a SOP
class, as it comes, under each profile. A refusal by the gate here means a rule left something it
should have cleaned, or the gate matches what is not an identifier (a false quarantine)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from curata.collect.deid import Deidentifier, load_profile
from curata.errors import CurataError

from .conftest import KEY
from .planting import corpus_files


@pytest.mark.parametrize("profile", ["research", "basic", "research-strict"])
def test_the_gate_refuses_no_clean_real_file(profile: str) -> None:
    deid = Deidentifier(KEY, load_profile(profile), ocr=False)
    files = corpus_files()
    by_gate: list[str] = []
    released = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            try:
                deid.deidentify_bytes(Path(path).read_bytes())
            except CurataError as exc:
                if "final gate" in str(exc):
                    by_gate.append(path.rsplit("/", 1)[-1])
                continue
            released += 1
    assert len(files) > 120
    assert by_gate == []
    assert released > len(files) // 2, (released, len(files))
