"""Export formats of a release. Each module turns the release's cases into files (path -> bytes).

``dicom`` and ``nifti`` are the data; ``nnunet``, ``monai`` and ``croissant`` describe or re-arrange it
(nnU-Net's files are the same bytes as the NIfTI ones, so the store keeps them once).
"""

from __future__ import annotations

FORMATS = ("dicom", "nifti", "nnunet", "monai", "croissant", "fhir")  # fhir: a Bundle per patient
DEFAULT_FORMATS = ("dicom", "nifti", "nnunet", "monai", "croissant")
