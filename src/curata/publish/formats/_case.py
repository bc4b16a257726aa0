"""A case: one image series of one patient, with its split and, where annotated, a label map."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Case:
    case_id: str
    patient: str  # site-qualified pseudonym key
    split: str
    series_uid: str
    modality: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    dicom: list[str] = field(default_factory=list)  # release paths
    image: str | None = None  # release path of the NIfTI volume
    label: str | None = None  # release path of the NIfTI label map
    label_names: dict[int, str] = field(default_factory=dict)
    label_voxels: dict[int, int] = field(default_factory=dict)
    voxel_ml: float = 0.0
    tiles: list[str] = field(default_factory=list)  # release paths of a slide's tile set and tissue mask
