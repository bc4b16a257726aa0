"""The mutation fuzzer, on a small budget (``CURATA_FUZZ_BUDGET`` raises it; bench/fuzz.py runs long)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.reliability.conftest import TABLE
from tests.reliability.fuzzing import run


def test_mutants_of_real_dicom_and_zip_inputs_never_crash_a_batch(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    budget = int(os.environ.get("CURATA_FUZZ_BUDGET", "80"))
    result = run(workspace, tmp_path / "fuzz", budget, seed=int(os.environ.get("CURATA_FUZZ_SEED", "1")))
    for cls, n in result.tried.items():
        TABLE.add(cls, ok=True, n=result.held[cls])
        if n - result.held[cls]:
            TABLE.add(cls, ok=False, n=n - result.held[cls])
    assert sum(result.tried.values()) == budget
    assert not result.failures, result.failures[:5]
    # the campaign reached the interesting outcomes, not only "refused"
    assert result.statuses["ingested"] > 0 and result.statuses["quarantined"] > 0, result.statuses
