"""MLCommons Croissant 1.0 JSON-LD (``croissant.json``) with the Responsible-AI fields that apply.

The record set ``cases`` reads ``cases.csv`` (one row per case: split, demographics, image and label
paths); the NIfTI and DICOM files are described as file sets. Validated in the tests with mlcroissant.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from curata.publish.formats._case import Case

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

COLUMNS = ("case_id", "split", "sex", "age_band", "site", "country", "modality", "vendor", "image", "label")


def cases_csv(cases: Sequence[Case]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for c in cases:
        a = c.attributes
        writer.writerow(
            [
                c.case_id,
                c.split,
                a.get("sex") or "",
                a.get("age") or "",
                a.get("site") or "",
                a.get("country") or "",
                c.modality or "",
                a.get("vendor") or "",
                c.image or "",
                c.label or "",
            ]
        )
    return buf.getvalue().encode()


def _field(name: str, description: str, dtype: str = "sc:Text") -> dict[str, Any]:
    return {
        "@type": "cr:Field",
        "@id": f"cases/{name}",
        "name": name,
        "description": description,
        "dataType": dtype,
        "source": {"fileObject": {"@id": "cases.csv"}, "extract": {"column": name}},
    }


def metadata(
    *,
    name: str,
    version: int,
    description: str,
    cases: Sequence[Case],
    files: Mapping[str, tuple[str, int]],
    biases: Sequence[str],
    licence: str = "https://curata.example/licences/research-only",
    date_published: str | None = None,
) -> dict[str, Any]:
    """The JSON-LD document. ``files``: release path -> (sha256, size) of cases.csv and the others."""
    digest, size = files["cases.csv"]
    distribution: list[dict[str, Any]] = [
        {
            "@type": "cr:FileObject",
            "@id": "cases.csv",
            "name": "cases.csv",
            "description": "One row per case: split, demographics and the paths of its files.",
            "contentUrl": "cases.csv",
            "contentSize": f"{size} B",
            "encodingFormat": "text/csv",
            "sha256": digest,
        }
    ]
    if any(c.image for c in cases):
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": "nifti-files",
                "name": "nifti-files",
                "description": "NIfTI-1 volumes and label maps (gzip).",
                "encodingFormat": "application/gzip",
                "includes": "nifti/**/*.nii.gz",
            }
        )
    if any(c.dicom for c in cases):
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": "dicom-files",
                "name": "dicom-files",
                "description": "De-identified DICOM Part-10 instances.",
                "encodingFormat": "application/dicom",
                "includes": "dicom/**/*.dcm",
            }
        )
    fields = [
        _field("case_id", "Case identifier (patient pseudonym and series)."),
        _field("split", "train, validation or test; patient-level."),
        _field("sex", "DICOM Patient's Sex (F, M, O or empty)."),
        _field("age_band", "Age band at the study."),
        _field("site", "Contributing site."),
        _field("country", "Country of the contributing site."),
        _field("modality", "DICOM modality."),
        _field("vendor", "Scanner manufacturer."),
        _field("image", "Release path of the NIfTI volume."),
        _field("label", "Release path of the NIfTI label map (empty when not annotated)."),
    ]
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": name,
        "description": description,
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "version": f"{version}.0.0",
        "license": licence,
        "url": f"curata:release/{name}@{version}",
        "citeAs": f"{name}@{version} (Curata release)",
        "keywords": ["medical imaging", "de-identified", "DICOM", "NIfTI"],
        "distribution": distribution,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "cases",
                "name": "cases",
                "description": "The cases of the release.",
                "key": {"@id": "cases/case_id"},
                "field": fields,
            }
        ],
        "rai:dataCollection": (
            "Routine clinical imaging contributed by hospitals, de-identified at each site before it left "
            "(DICOM PS3.15 Annex E profile, keyed pseudonyms, per-patient date shift)."
        ),
        "rai:dataCollectionType": ["Secondary Data Analysis"],
        "rai:personalSensitiveInformation": [
            "Health data (medical images). Direct identifiers removed; sex and age band kept for fairness analysis.",
        ],
        "rai:dataBiases": list(biases) or ["No group fell below the under-representation threshold."],
        "rai:dataLimitations": [
            "Composition follows the contributing sites' patient populations; see the dataset card.",
        ],
        "rai:dataUseCases": ["Training and evaluation of medical-imaging models (research use)."],
        "rai:dataPreprocessingProtocol": [
            "DICOM to NIfTI conversion with ITK (no resampling); label maps from DICOM-SEG on the image grid.",
        ],
        "rai:dataReleaseMaintenancePlan": (
            "Versions are immutable; a consent withdrawal produces a new version without the patient, "
            "logged in the Curata transparency log."
        ),
    }
    if date_published:
        doc["datePublished"] = date_published
    return doc


def to_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()
