"""Profiles: which PS3.15 Table E.1-1 options are on, plus a site's own overrides from TOML."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword

from curata._defaults import DEFAULT_DEID_PROFILE
from curata.collect.deid.pixels import DEFAULT_REGIONS, Region
from curata.errors import ConfigError


class DeidOption(StrEnum):
    """The PS3.15 Annex E options a profile can turn on. A member equals its string, so TOML keys and
    ``profile.has("...")`` keep working, and a misspelt name raises instead of reading as "off"."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONG_FULL_DATES = "retain_long_full_dates"
    RETAIN_LONG_MODIFIED_DATES = "retain_long_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"
    CLEAN_PIXEL_DATA = "clean_pixel_data"


def deid_option(name: str, where: str = "") -> DeidOption:
    """``name`` as a :class:`DeidOption`; an unknown name is a ConfigError listing the valid ones."""
    try:
        return DeidOption(name)
    except ValueError:
        raise ConfigError(
            f"unknown de-identification option {name!r}{f' in {where}' if where else ''}",
            hint=f"options: {', '.join(DeidOption)}",
        ) from None


# Option -> (Table E.1-1 column, CID 7050 code value, code meaning); one row per DeidOption
OPTIONS: dict[DeidOption, tuple[str | None, str, str]] = {
    DeidOption.RETAIN_SAFE_PRIVATE: ("rtnSafePrivOpt", "113111", "Retain Safe Private Option"),
    DeidOption.RETAIN_UIDS: ("rtnUIDsOpt", "113110", "Retain UIDs Option"),
    DeidOption.RETAIN_DEVICE_IDENTITY: ("rtnDevIdOpt", "113109", "Retain Device Identity Option"),
    DeidOption.RETAIN_INSTITUTION_IDENTITY: ("rtnInstIdOpt", "113112", "Retain Institution Identity Option"),
    DeidOption.RETAIN_PATIENT_CHARACTERISTICS: (
        "rtnPatCharsOpt",
        "113108",
        "Retain Patient Characteristics Option",
    ),
    DeidOption.RETAIN_LONG_FULL_DATES: (
        "rtnLongFullDatesOpt",
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    DeidOption.RETAIN_LONG_MODIFIED_DATES: (
        "rtnLongModifDatesOpt",
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    DeidOption.CLEAN_DESCRIPTORS: ("cleanDescOpt", "113105", "Clean Descriptors Option"),
    DeidOption.CLEAN_STRUCTURED_CONTENT: ("cleanStructContOpt", "113104", "Clean Structured Content Option"),
    DeidOption.CLEAN_GRAPHICS: ("cleanGraphOpt", "113103", "Clean Graphics Option"),
    DeidOption.CLEAN_PIXEL_DATA: (None, "113101", "Clean Pixel Data Option"),
}
BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")

PROFILES: dict[str, frozenset[DeidOption]] = {
    "basic": frozenset(),
    "research": frozenset(
        {
            DeidOption.RETAIN_LONG_MODIFIED_DATES,
            DeidOption.RETAIN_PATIENT_CHARACTERISTICS,
            DeidOption.RETAIN_DEVICE_IDENTITY,
            DeidOption.CLEAN_DESCRIPTORS,
            DeidOption.CLEAN_STRUCTURED_CONTENT,
            DeidOption.CLEAN_GRAPHICS,
            DeidOption.RETAIN_SAFE_PRIVATE,
            DeidOption.CLEAN_PIXEL_DATA,
        }
    ),
}
# research-strict: the allow-list practice of TCIA and CTP. For each IOD only the attributes it
# defines survive (cleaned by the table as under research); anything else, every private element,
# overlays and curves go. Unknown IODs are refused.
PROFILES["research-strict"] = PROFILES["research"] - {"retain_safe_private", "clean_graphics"}
ALLOW_LIST_PROFILES = frozenset({"research-strict"})
DEFAULT_PROFILE = DEFAULT_DEID_PROFILE  # declared once, beside the settings ([deid] profile)
ACTIONS = {"D", "Z", "X", "K", "C", "U"}
_TAG_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")
_UID_ROOT_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class Profile:
    """What the engine does: a named option set plus per-attribute overrides."""

    name: str = DEFAULT_PROFILE
    options: frozenset[DeidOption] = PROFILES[DEFAULT_PROFILE]
    overrides: tuple[tuple[int, str], ...] = ()  # (tag, action): wins over the table
    uid_root: str = "2.25"
    pseudonym_prefix: str = "CUR-"
    cap_age_years: int | None = 90  # ages above this read as this (HIPAA safe harbour); None keeps them
    date_shift_days: tuple[int, int] = (365, 3650)  # each patient's dates move back within this range
    vault_uids: bool = False  # also write the UID map into the vault
    # Objects that may carry burned-in text: "template" (mask the first matching region template,
    # review when none matches and OCR found nothing) or "review" (every such object is reviewed
    # unless OCR found and masked text).
    burned_in_policy: str = "template"
    regions: tuple[Region, ...] = DEFAULT_REGIONS
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def allow_list(self) -> bool:
        """Only the attributes the object's IOD defines survive."""
        return self.name in ALLOW_LIST_PROFILES

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", frozenset(deid_option(o) for o in self.options))

    def has(self, option: DeidOption | str) -> bool:
        """Whether the option is on; a misspelt option name raises rather than reading as off."""
        return deid_option(option) in self.options

    @property
    def override_map(self) -> dict[int, str]:
        return dict(self.overrides)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": sorted(self.options),
            "overrides": {f"({t >> 16:04X},{t & 0xFFFF:04X})": a for t, a in self.overrides},
            "uid_root": self.uid_root,
            "pseudonym_prefix": self.pseudonym_prefix,
            "cap_age_years": self.cap_age_years,
            "date_shift_days": list(self.date_shift_days),
            "burned_in_policy": self.burned_in_policy,
            "regions": [_region_dict(r) for r in self.regions],
        }

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of everything that changes the output (for caching and provenance); computed
        once (the profile is frozen), since every released file's record carries it."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _region_dict(r: Region) -> dict[str, Any]:
    return {
        "name": r.name,
        "modalities": list(r.modalities),
        "sop_classes": list(r.sop_classes),
        "manufacturer": r.manufacturer,
        "top": r.top,
        "bottom": r.bottom,
        "boxes": [list(b) for b in r.boxes],
    }


def parse_tag(text: str) -> int:
    """A tag from ``(0010,0010)``, ``00100010``, ``0010,0010`` or a keyword such as ``PatientName``."""
    text = text.strip()
    m = _TAG_RE.match(text)
    if m:
        return int(m.group(1) + m.group(2), 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise ConfigError(f"unknown attribute {text!r}", hint="use a DICOM keyword or a tag like (0010,0010)")
    return tag


def load_profile(name: str | None = DEFAULT_PROFILE, config: Path | None = None) -> Profile:
    """The named profile (``basic`` or ``research``), then the TOML ``config`` applied on top.

    TOML keys (all optional): ``profile = "basic"``; ``[options]`` ``retain_uids = true`` ...;
    ``[actions]`` ``StudyDescription = "K"`` or ``"(0008,1030)" = "X"``; ``keep = [...]``,
    ``remove = [...]``; ``uid_root``; ``pseudonym_prefix``; ``cap_age_years``; ``vault_uids``.
    """
    data: dict[str, Any] = {}
    if config is not None:
        try:
            data = tomllib.loads(Path(config).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {config} not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config} is not valid TOML: {exc}") from exc
        data = data.get("deid", data)
    name = name or data.get("profile") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}", hint=f"choose one of: {', '.join(PROFILES)}")
    options = set(PROFILES[name])
    for opt, on in (data.get("options") or {}).items():
        (options.add if on else options.discard)(deid_option(opt, str(config)))
    if {"retain_long_full_dates", "retain_long_modified_dates"} <= options:
        raise ConfigError("retain_long_full_dates and retain_long_modified_dates exclude each other")
    overrides: dict[int, str] = {}
    for key, action in (data.get("actions") or {}).items():
        action = str(action).upper()
        if action not in ACTIONS:
            raise ConfigError(f"action {action!r} for {key} is not one of {sorted(ACTIONS)}")
        overrides[parse_tag(key)] = action
    for key in data.get("keep", []):
        overrides[parse_tag(key)] = "K"
    for key in data.get("remove", []):
        overrides[parse_tag(key)] = "X"
    uid_root = str(data.get("uid_root", "2.25")).rstrip(".")
    if not _UID_ROOT_RE.match(uid_root) or len(uid_root) > 30:
        raise ConfigError(f"uid_root {uid_root!r} is not a UID root of at most 30 characters")
    prefix = str(data.get("pseudonym_prefix", "CUR-"))
    if len(prefix) > 16 or not re.fullmatch(r"[A-Za-z0-9_-]*", prefix):
        raise ConfigError(f"pseudonym_prefix {prefix!r}: at most 16 letters, digits, '-' or '_'")
    cap = data.get("cap_age_years", 90)
    policy, regions = _pixel_policy(data.get("pixels") or {}, config)
    return Profile(
        name=name,
        options=frozenset(options),
        overrides=tuple(sorted(overrides.items())),
        uid_root=uid_root,
        pseudonym_prefix=prefix,
        cap_age_years=None if cap in (None, False, 0) else int(cap),
        vault_uids=bool(data.get("vault_uids", False)),
        burned_in_policy=policy,
        regions=regions,
    )


def _pixel_policy(data: dict[str, Any], config: Path | None) -> tuple[str, tuple[Region, ...]]:
    """``[pixels]``: ``policy = "template" | "review"``, ``default_regions = true``, and
    ``[[pixels.regions]]`` with ``name``, ``modalities``, ``sop_classes``, ``manufacturer``, ``top``,
    ``bottom`` (fractions of the height) and ``boxes`` ([x0, y0, x1, y1] fractions). Site regions
    are tried before the defaults."""
    policy = str(data.get("policy", "template"))
    if policy not in ("template", "review"):
        raise ConfigError(f"pixels.policy {policy!r} in {config}", hint='use "template" or "review"')
    regions = []
    for i, r in enumerate(data.get("regions") or []):
        try:
            region = Region(
                name=str(r.get("name", f"site region {i + 1}")),
                modalities=tuple(str(m).upper() for m in r.get("modalities", [])),
                sop_classes=tuple(str(u) for u in r.get("sop_classes", [])),
                manufacturer=str(r.get("manufacturer", "")),
                top=float(r.get("top", 0.0)),
                bottom=float(r.get("bottom", 0.0)),
                boxes=tuple(tuple(float(v) for v in b) for b in r.get("boxes", [])),  # type: ignore[misc]
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"pixels.regions[{i}] in {config} is malformed ({exc})") from exc
        fractions = [region.top, region.bottom, *(v for b in region.boxes for v in b)]
        if any(not 0.0 <= v <= 1.0 for v in fractions) or any(len(b) != 4 for b in region.boxes):
            raise ConfigError(f"pixels.regions[{i}] in {config}: fractions must lie in [0, 1], boxes have 4")
        regions.append(region)
    if data.get("default_regions", True):
        regions += DEFAULT_REGIONS
    return policy, tuple(regions)
