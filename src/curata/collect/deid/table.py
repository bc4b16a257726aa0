"""PS3.15 Table E.1-1 as data: every row's Basic Profile action and option actions, resolved per profile.

Action codes: D (dummy), Z (zero length), X (remove), K (keep), C (clean), U (new UID). Combinations
(X/Z, X/D, X/Z/D, Z/D, X/Z/U*) depend on the attribute's type in the object's IOD; where the IOD is
unknown we take the choice that leaks nothing and keeps any IOD conformant (D or Z). X/Z/U* always
resolves to U: remapped references leak nothing and keep SEG/SR/RT and derived objects pointing home.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from curata.collect.deid.profile import OPTIONS, Profile

PRIVATE = -1  # pseudo tag for the "(GGGG,EEEE) where GGGG is odd" row
CURVE_GROUP = 0x50000000  # (50xx,xxxx): whole repeating group
OVERLAY_DATA = 0x60003000  # (60xx,3000)
OVERLAY_COMMENTS = 0x60004000  # (60xx,4000)


@dataclass(frozen=True)
class Rule:
    tag: int
    name: str
    basic: str
    options: tuple[tuple[str, str], ...]  # (option name, action)


def _load_json(name: str) -> Any:
    return json.loads(resources.files("curata.collect.deid._standard").joinpath(name).read_text())


# Rows Curata adds to its copy of the table (a January 2025 snapshot): attributes of the Patient Module
# that identify the patient as much as a row's attribute does and that the snapshot does not list. All
# three go (X): Patient's Birth Date in Alternative Calendar (S36.02.03, 25040203, 1339/11/14) is the
# birth date; without a row it was kept as ordinary text, in every profile. The calendar's name is
# required only beside those dates (type 1C), so it goes with them.
SUPPLEMENT = {
    0x00100033: "Patient's Birth Date in Alternative Calendar",
    0x00100034: "Patient's Death Date in Alternative Calendar",
    0x00100035: "Patient's Alternative Calendar",
}


@cache
def rules() -> dict[int, Rule]:
    """All 621 rows keyed by tag (repeating groups keyed by their 50xx/60xx base tag), and Curata's
    ``SUPPLEMENT``."""
    column_to_option = {col: opt for opt, (col, _, _) in OPTIONS.items() if col}
    out: dict[int, Rule] = {}
    for row in _load_json("ps3.15-table-E.1-1.json"):
        text = row["tag"].upper()
        if text.startswith("(GGGG"):
            tag = PRIVATE
        else:
            tag = int((text[1:5] + text[6:10]).replace("X", "0"), 16)
        opts = tuple(sorted((column_to_option[k], v) for k, v in row.items() if k in column_to_option))
        out[tag] = Rule(tag, row["name"].split("\n")[0].strip(), row["basicProfile"], opts)
    for tag, name in SUPPLEMENT.items():
        out.setdefault(tag, Rule(tag, name, "X", ()))  # a later edition's own row wins
    return out


@cache
def _types() -> dict[str, Any]:
    return _load_json("attribute_types.json")


def iod_for(sop_class_uid: str) -> str | None:
    return _types()["sop_class_iod"].get(str(sop_class_uid))


def option_action(rule: Rule, profile: Profile) -> str:
    """The rule's action under the profile's options, before type-dependent resolution.

    An option that says K wins over one that says C (the least restrictive applicable option).
    """
    chosen = None
    for opt, action in rule.options:
        if profile.has(opt) and (chosen is None or action == "K"):
            chosen = action
    return chosen or rule.basic


def resolve(code: str, attr_type: str | None) -> str:
    """Resolve a combination code by the attribute's type (1, 2, 3 or None when unknown)."""
    if "/" not in code:
        return code
    parts = code.split("/")
    if "U*" in parts:
        # X/Z/U* (Referenced Image, Source Image sequences): replacing the UIDs inside leaks nothing and
        # keeps references valid (SEG, SR, RT and derived images), so we always take U, whatever the type.
        return "U"
    if attr_type is None:  # unknown IOD: leak nothing, keep any IOD valid
        return "U" if "U*" in parts else ("D" if "D" in parts else "Z")
    if attr_type == "1":
        return "U" if "U*" in parts else "D"
    if attr_type == "2" and "Z" in parts:
        return "Z"
    if attr_type == "2":  # Z/D style code without Z cannot happen; D keeps it valid
        return "D"
    return "X" if "X" in parts else "Z"


@cache
def action_maps(profile: Profile, sop_class_uid: str) -> tuple[dict[int, str], dict[int, str]]:
    """tag -> final action for the top level and for nested data sets of one SOP class."""
    iod = iod_for(sop_class_uid)
    types = _types()["iod_attribute_types"].get(iod) if iod else None
    top: dict[int, str] = {}
    nested: dict[int, str] = {}
    for tag, rule in rules().items():
        code = option_action(rule, profile)
        key = f"{tag:08X}"
        if types is None:
            top[tag] = nested[tag] = resolve(code, None)
        else:
            top[tag] = resolve(code, types["top"].get(key, "3") if "/" in code else None)
            nested[tag] = resolve(code, types["nested"].get(key, "3") if "/" in code else None)
    for tag, action in profile.overrides:
        top[tag] = nested[tag] = action
    return top, nested


def descriptor_tags() -> frozenset[int]:
    """Rows the Clean Descriptors Option covers: free text, not identifiers in themselves."""
    return _descriptor_tags()


@cache
def _descriptor_tags() -> frozenset[int]:
    return frozenset(t for t, r in rules().items() if any(o == "clean_descriptors" for o, _ in r.options))


@cache
def iod_allowed_tags(sop_class_uid: str) -> frozenset[int] | None:
    """Every attribute the SOP class's IOD defines, at any depth (its modules and their macros), from
    highdicom's copy of the standard: the allow-list of ``research-strict``. None: unknown IOD."""
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map
    from pydicom.datadict import tag_for_keyword

    iod = iod_for(sop_class_uid)
    modules = get_iod_module_map().get(iod) if iod else None
    if not modules:
        return None
    attributes = get_module_attribute_map()
    tags = set()
    for module in modules:
        for attr in attributes.get(module["key"], []):
            tag = tag_for_keyword(attr["keyword"])
            if tag is not None:
                tags.add(tag)
    if 0x7FE00010 in tags:
        # how many frames the pixel data holds: an object that has them keeps saying so, even where its
        # IOD does not define the attribute (a multi-frame Secondary Capture sent as single-frame SC),
        # or every frame after the first would be kept outside the image it declares
        tags.add(0x00280008)
    return frozenset(tags)
