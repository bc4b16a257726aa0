"""nnU-Net v2 raw layout: ``nnunet/DatasetXXX_NAME/{imagesTr,labelsTr,imagesTs}`` and ``dataset.json``.

Training and validation cases with a label map go to imagesTr/labelsTr, test cases to imagesTs. Our own
patient-level train/validation split is given as ``splits_final.json`` (one fold), which nnU-Net reads
from its preprocessed folder in place of its random five folds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from curata.publish.formats._case import Case


def dataset_folder(name: str, dataset_id: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9]+", "", name.title()) or "Curata"
    return f"Dataset{dataset_id:03d}_{safe}"


def dataset_id_for(name: str) -> int:
    """A stable id in 500-999 (nnU-Net reserves lower ids for its own benchmark sets)."""
    import hashlib

    return 500 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 500


def layout(cases: Sequence[Case], name: str, nifti: dict[str, str]) -> dict[str, str]:
    """nnU-Net path -> the release path of the NIfTI file with the same bytes."""
    root = f"nnunet/{dataset_folder(name, dataset_id_for(name))}"
    out: dict[str, str] = {}
    for case in cases:
        if not case.image:
            continue
        modality_suffix = "_0000.nii.gz"
        if case.split == "test":
            out[f"{root}/imagesTs/{case.case_id}{modality_suffix}"] = nifti[case.image]
        elif case.label:
            out[f"{root}/imagesTr/{case.case_id}{modality_suffix}"] = nifti[case.image]
            out[f"{root}/labelsTr/{case.case_id}.nii.gz"] = nifti[case.label]
    return out


def files(cases: Sequence[Case], name: str) -> dict[str, bytes]:
    root = f"nnunet/{dataset_folder(name, dataset_id_for(name))}"
    labels: dict[str, int] = {"background": 0}
    for case in cases:
        for value, label in sorted(case.label_names.items()):
            labels.setdefault(label, value)
    modalities = sorted({c.modality or "CT" for c in cases if c.image})
    train = [c for c in cases if c.image and c.label and c.split != "test"]
    dataset: dict[str, Any] = {
        "channel_names": {"0": modalities[0] if len(modalities) == 1 else "CT"},
        "labels": labels,
        "numTraining": len(train),
        "file_ending": ".nii.gz",
        "name": name,
        "description": "Exported by Curata; patient-level splits in splits_final.json",
    }
    splits = [
        {
            "train": sorted(c.case_id for c in train if c.split == "train"),
            "val": sorted(c.case_id for c in train if c.split == "validation"),
        }
    ]
    return {
        f"{root}/dataset.json": json.dumps(dataset, indent=2).encode(),
        f"{root}/splits_final.json": json.dumps(splits, indent=2).encode(),
    }
