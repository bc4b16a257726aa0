"""MONAI datalist (decathlon style): ``datalist.json`` at the release root, paths relative to it, so
``monai.data.load_decathlon_datalist("datalist.json", data_list_key="training")`` works unchanged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from curata.publish.formats._case import Case

KEYS = {"train": "training", "validation": "validation", "test": "test"}


def datalist(cases: Sequence[Case]) -> dict[str, Any]:
    out: dict[str, Any] = {"training": [], "validation": [], "test": []}
    for case in cases:
        if not case.image:
            continue
        item: dict[str, Any] = {"image": case.image, "case_id": case.case_id, "patient": case.patient}
        if case.label:
            item["label"] = case.label
        out[KEYS[case.split]].append(item)
    return out


def files(cases: Sequence[Case]) -> dict[str, bytes]:
    return {"datalist.json": json.dumps(datalist(cases), indent=2, sort_keys=True).encode()}
