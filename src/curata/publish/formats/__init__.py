"""Export formats of a release, each registered with the files it writes and how they are fingerprinted.

``dicom`` and ``nifti`` are the data; ``nnunet``, ``monai`` and ``croissant`` describe or re-arrange it
(nnU-Net's files are the same bytes as the NIfTI ones, so the store keeps them once). The registry
(:mod:`curata.publish.formats.registry`) is the one list; ``builtin`` registers these five.
"""

from __future__ import annotations

from curata.publish.formats._case import Case
from curata.publish.formats.registry import (
    BuildContext,
    ExportFormat,
    FileRule,
    Fingerprint,
    UnregisteredFileError,
    check_files,
    parse_formats,
    register_format,
    registered,
    rule_for,
)

FORMATS: tuple[str, ...] = tuple(registered())
DEFAULT_FORMATS: tuple[str, ...] = parse_formats(None)

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "BuildContext",
    "Case",
    "ExportFormat",
    "FileRule",
    "Fingerprint",
    "UnregisteredFileError",
    "check_files",
    "parse_formats",
    "register_format",
    "registered",
    "rule_for",
]
