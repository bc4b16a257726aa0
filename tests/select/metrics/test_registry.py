"""The metric registry is the one list: every measured output is declared, every declared metric is
measured, header_problems speaks only the registry's words, and the QC version moves with the definitions."""

from __future__ import annotations

import dataclasses

from curata.select.metrics.ct_mr import images_of, measure
from curata.select.metrics.geometry import SliceHeader, header_problems
from curata.select.metrics.registry import (
    EXTRA_OUTPUTS,
    HEADER_PROBLEMS,
    METRICS,
    QC_VERSION,
    VERSION_DIGESTS,
    definitions_digest,
)
from curata.select.phantoms import build, clean_specs
from curata.select.service import qc_code_version

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def test_the_qc_version_moves_with_the_definitions() -> None:
    assert VERSION_DIGESTS.get(QC_VERSION) == definitions_digest(), (
        "a metric definition or header check changed: bump QC_VERSION in select/metrics/registry.py "
        f"and record VERSION_DIGESTS[{QC_VERSION + 1}] = {definitions_digest()!r}"
    )
    assert qc_code_version().endswith(f"qc/{QC_VERSION}")
    assert max(VERSION_DIGESTS) == QC_VERSION


def test_every_output_is_declared_and_every_metric_is_measured() -> None:
    seen: dict[str, set[str]] = {}
    for spec in clean_specs(rows=64, slices=8, count=6, seed=11):
        metrics, _thumb = measure(images_of(build(spec)))
        seen.setdefault(metrics["modality"], set()).update(metrics)
    assert set(seen) == {"CT", "MR"}
    for modality, keys in seen.items():
        assert keys - set(METRICS) == set(EXTRA_OUTPUTS), modality
        wanted = {n for n, m in METRICS.items() if modality in m.modalities}
        assert wanted <= keys, (modality, sorted(wanted - keys))


def test_header_problems_speak_only_the_registry_words() -> None:
    good = SliceHeader(
        position=(0.0, 0.0, 0.0), orientation=AXIAL, rows=8, columns=8, pixel_spacing=(1.0, 1.0)
    )
    broken = [
        dataclasses.replace(good, pixel_spacing=None),
        dataclasses.replace(good, pixel_spacing=(0.0, 1.0)),
        dataclasses.replace(good, orientation=None),
        dataclasses.replace(good, orientation=(1.0, 0.0, 0.0, 1.0, 0.0, 0.0)),
        dataclasses.replace(good, position=None),
        dataclasses.replace(good, rows=0),
    ]
    assert header_problems([good]) == []
    found = [p for h in broken for p in header_problems([h])]
    assert set(found) <= set(HEADER_PROBLEMS)
    assert set(found) == set(HEADER_PROBLEMS)  # each check is reachable, each word is used
