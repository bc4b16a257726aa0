"""The registry of export formats: what each format writes and how each of its files is fingerprinted.

A release file must match a rule of the release itself (``splits.json``, ``cases.csv``, the card) or of
one of the formats it was built with; an export fingerprints each file the way its rule says. A file no
rule claims fails loudly, in the release build and again in the export, so a new binary format can
never reach a licensee unmarked.

Adding a format is one module that calls :func:`register_format` (see ``docs/architecture.md``)::

    register_format(ExportFormat(
        "mydata", "My data layout",
        files=(FileRule("mydata/*.bin", Fingerprint.NONE, "opaque blobs, covered by the signed manifest"),),
        build=my_module.build,                     # (BuildContext) -> None, adds files to ctx
    ))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from curata.errors import ConfigError, CurataError


class Fingerprint(StrEnum):
    """How an export marks a file for its licensee (``curata.publish.fingerprint``)."""

    DICOM = "dicom"  # UIDs remapped per licensee and a private mark element
    NIFTI = "nifti"  # the mark in the NIfTI header's aux_file
    TABLE = "table"  # clinical tables: rows in an order keyed per licensee (+ the mark in Parquet metadata)
    VCF = "vcf"  # the mark as a ##curata_fingerprint header line
    NONE = "none"  # copied unchanged (text and metadata): the signed, logged manifest binds it


@dataclass(frozen=True)
class FileRule:
    pattern: str  # a glob over the release path ("*" crosses folders)
    fingerprint: Fingerprint
    what: str = ""

    def matches(self, path: str) -> bool:
        return fnmatchcase(path, self.pattern)


@dataclass
class BuildContext:
    """What a format's builder sees: the release's cases and a way to add files."""

    name: str
    version: int
    cases: Sequence[Any]
    put: Callable[[str, bytes], object]  # new bytes under a path
    link: Callable[[str, str], None]  # a path that re-uses another path's bytes (no copy)
    entries: Mapping[str, tuple[str, int]]  # path -> (sha256, size) added so far
    biases: list[str] = field(default_factory=list)  # the card's flags, for formats built after it


@dataclass(frozen=True)
class ExportFormat:
    name: str
    title: str
    files: tuple[FileRule, ...]
    build: Callable[[BuildContext], None] | None = None  # None: written case by case by the release
    requires: tuple[str, ...] = ()  # formats whose files this one re-uses
    after_card: bool = False  # built once the dataset card (and its bias flags) exists
    default: bool = True

    def rule_for(self, path: str) -> FileRule | None:
        return next((r for r in self.files if r.matches(path)), None)


class UnregisteredFileError(CurataError):
    """A release or export holds a file no registered format declares."""


_REGISTRY: dict[str, ExportFormat] = {}

# Files every release has, whatever its formats.
RELEASE_FILES: tuple[FileRule, ...] = (
    FileRule("splits.json", Fingerprint.NONE, "patient key -> split"),
    FileRule("cases.csv", Fingerprint.NONE, "one row per case"),
    FileRule("card/README.md", Fingerprint.NONE, "dataset card"),
    FileRule("card/card.html", Fingerprint.NONE, "dataset card"),
    FileRule("card/*.png", Fingerprint.NONE, "dataset card plots"),
    FileRule("card/clinical.md", Fingerprint.NONE, "clinical composition of the dataset card"),
    # clinical tables (Parquet, CSV, OMOP CDM CSVs) and per-case VCFs: part of every release whose
    # patients have them (curata.publish.formats.clinical), marked per licensee there
    FileRule("clinical/*.parquet", Fingerprint.TABLE, "clinical tables"),
    FileRule("clinical/*.csv", Fingerprint.TABLE, "clinical tables and OMOP CDM CSVs"),
    FileRule("genomics/*.vcf.gz", Fingerprint.VCF, "per-case VCFs"),
    FileRule("genomics/*.parquet", Fingerprint.TABLE, "the variant table"),
    FileRule("genomics/*.csv", Fingerprint.TABLE, "the variant table"),
    FileRule("clinical/*", Fingerprint.NONE, "clinical tables"),
    FileRule("genomics/*", Fingerprint.NONE, "per-case VCFs and the variant table"),
)


def register_format(fmt: ExportFormat) -> ExportFormat:
    if fmt.name in _REGISTRY and _REGISTRY[fmt.name] != fmt:
        raise ValueError(f"export format {fmt.name!r} is registered twice")
    _REGISTRY[fmt.name] = fmt
    return fmt


def registered() -> dict[str, ExportFormat]:
    _load_builtin()
    return dict(_REGISTRY)


def parse_formats(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The formats named (comma-separated or a list), with what they require, in registry order."""
    formats = registered()
    if value is None:
        return tuple(n for n, f in formats.items() if f.default)
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [v for v in items if v not in formats]
    if unknown or not items:
        raise ConfigError(
            f"--format: unknown format(s) {', '.join(unknown) or '(none)'}",
            hint=f"choose from {', '.join(formats)}",
        )
    for name in list(items):
        items.extend(r for r in formats[name].requires if r not in items)
    return tuple(dict.fromkeys(items))


def rule_for(path: str, formats: Iterable[str]) -> FileRule:
    """The rule that claims ``path`` among the release's own files and ``formats``; loud when none does."""
    registry = registered()
    for rule in RELEASE_FILES:
        if rule.matches(path):
            return rule
    for name in formats:
        fmt = registry.get(name)
        if fmt is None:
            raise UnregisteredFileError(f"export format {name!r} is not registered")
        claimed = fmt.rule_for(path)
        if claimed is not None:
            return claimed
    raise UnregisteredFileError(
        f"{path}: no registered export format declares this file, so it cannot be fingerprinted",
        hint="declare it in its format's FileRule list (curata/publish/formats/registry.py)",
    )


def check_files(paths: Iterable[str], formats: Iterable[str]) -> dict[str, Fingerprint]:
    """Each path's fingerprint kind; raises :class:`UnregisteredFileError` for a path no rule claims."""
    formats = tuple(formats)
    return {p: rule_for(p, formats).fingerprint for p in paths}


def _load_builtin() -> None:
    from curata.publish.formats import builtin  # noqa: F401  (registers dicom, nifti, nnunet, monai, croissant)
