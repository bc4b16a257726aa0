"""Malformed FHIR where a resource or an element should be: a string, a number, a list, null. Each such
resource (or Bundle entry) is refused alone with its line and a reason that names no value; the other
resources of the export are filed."""

from __future__ import annotations

import copy
import json
from typing import Any

from curata.collect.clinical import clinical_rows
from curata.collect.clinical.fhir import deidentify_fhir
from curata.collect.clinical.mapping import FhirMap
from curata.collect.ingest import Ingestor
from tests.collect.clinical._fixtures import fhir_resources, folded_survivors

BAD = ["Müller Jürgen", 5, None, [], {}, ["Müller Jürgen"], [5], [None], {"x": "Müller"}, True, [[1]]]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        out += [q for k, v in node.items() for q in _paths(v, (*path, k))]
    elif isinstance(node, list):
        out += [q for i, v in enumerate(node) for q in _paths(v, (*path, i))]
    return out


def test_a_malformed_value_at_any_element_is_refused_alone() -> None:
    base = fhir_resources("p1")
    tried = 0
    for r_i, res in enumerate(base):
        for path in _paths(res):
            for bad in BAD:
                resources = copy.deepcopy(base)
                node = resources[r_i]
                for k in path[:-1]:
                    node = node[k]
                node[path[-1]] = bad
                raw = "\n".join(json.dumps(r) for r in resources).encode()
                batches, failed = deidentify_fhir([("x.ndjson", raw, "0" * 64)], FhirMap(), b"k" * 32)
                assert not failed and len(batches) == 1
                assert len(batches[0].quarantined) <= len(base)
                assert not any("Müller" in why or "Jürgen" in why for _, why in batches[0].quarantined)
                tried += 1
    assert tried > 1000


def test_a_bundle_entry_that_is_no_resource_is_refused_and_the_rest_filed(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = fhir_resources("p1")
    broken = copy.deepcopy(fhir_resources("p2"))
    broken[0]["name"] = "Müller Jürgen"  # a Patient whose name is no list of HumanNames
    broken[0]["identifier"][0]["type"] = "MR"
    entries: list[Any] = [{"resource": r} for r in good]
    entries += [{"resource": "Müller Jürgen"}, 5, {"fullUrl": ["x"]}, *({"resource": r} for r in broken)]
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "b.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    )
    summary, problems = Ingestor(workspace, workers=1).ingest_paths([folder])
    assert summary.counts["ingested"] == 1, problems
    with workspace.catalog.session() as s:
        # both patients' Conditions (the same MRN): the malformed Patient resource alone is refused
        assert len(clinical_rows(s, workspace.store, "condition_occurrence")) == 2
    reasons = " ".join(p.reason or "" for p in problems)
    assert "entry without a resource" in reasons and "not a valid Patient resource" in reasons
    assert folded_survivors(workspace, ["Müller", "Jürgen"]) == []
