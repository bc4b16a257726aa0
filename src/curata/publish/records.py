"""The records the publish service returns (``curata.publish.service``): typed, never printed here.

They live apart from ``release.py`` and ``export.py`` so that both modules build them without
importing each other; ``curata.publish`` re-exports every one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReleaseVersionInfo:
    """One version of a release: its identity, its log entry, what it holds, how it was built."""

    ref: str
    name: str
    version: int
    created: bool
    manifest: str
    merkle_root: str
    ledger_index: int | None
    reason: str | None
    created_at: str | None
    # the build's summary (``ReleaseVersion.summary``); versions built before a key existed lack it
    cases: int = 0
    patients: int = 0
    labelled: int = 0
    files: int = 0
    bytes: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    site_patients: dict[str, int] = field(default_factory=dict)
    site_annotated_cases: dict[str, int] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clinical: dict[str, Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    card: str | None = None  # the dataset card's HTML page, copied out of the store


# the fields read from a version's stored build summary
SUMMARY_FIELDS = frozenset(
    f.name
    for f in dataclasses.fields(ReleaseVersionInfo)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
) - {"parameters", "card"}


@dataclass(frozen=True)
class WithdrawalResult(ReleaseVersionInfo):
    """The version a consent withdrawal left current; ``removed_series`` 0 where it held no such patient;
    ``withdrawn_sites`` the sites whose record of that person was withdrawn."""

    removed_series: int = 0
    # every site whose record of the person was withdrawn (a pseudonym seen at two sites is one person)
    withdrawn_sites: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReleaseRow:
    """One line of ``curata release ls``."""

    ref: str
    created: str
    patients: int | None
    cases: int | None
    files: int | None
    reason: str | None
    ledger: int | None


@dataclass(frozen=True)
class VerifyResult:
    """A version re-checked: every file in the store, the manifest, its log entry."""

    ref: str
    verified: bool
    files: int
    log_index: int | None
    problems: list[str]


@dataclass(frozen=True)
class ExportResult:
    """A licensee's fingerprinted copy, written and logged."""

    ref: str
    licensee: str
    directory: str
    files: int
    bytes: int
    manifest_sha256: str
    ledger_index: int


@dataclass(frozen=True)
class TraceMatch:
    licensee: str
    release: str
    exported_at: str | None
    ledger_index: int | None


@dataclass(frozen=True)
class TraceResult:
    """Whose export a leaked file came from, and how that was found."""

    file: str
    sha256: str
    how: str | None
    unique: bool
    matches: list[TraceMatch]
