"""Regenerate ``attribute_types.json`` from highdicom's copy of the standard's IOD/module tables.

Run: ``python src/curata/collect/deid/_standard/build_attribute_types.py``. Not imported at run time.

For every attribute of Table E.1-1 whose Basic Profile action depends on the attribute's type
(X/Z, X/D, X/Z/D, Z/D, X/Z/U*), records its strictest type (1 < 2 < 3) in each IOD, at any nesting
depth: ``top`` for the data set's top level, ``nested`` the strictest type found inside any sequence
(the strictest keeps every nested place conformant), and the SOP class -> IOD map.
"""

from __future__ import annotations

import json
from pathlib import Path

from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map
from pydicom.datadict import keyword_for_tag

HERE = Path(__file__).parent


def main() -> None:
    rows = json.loads((HERE / "ps3.15-table-E.1-1.json").read_text())
    combos = {}
    for row in rows:
        if "/" in row["basicProfile"] and "X" not in row["tag"].upper()[1:5]:
            tag = int(row["tag"][1:5] + row["tag"][6:10], 16)
            combos[keyword_for_tag(tag)] = f"{tag:08X}"
    modules = get_module_attribute_map()
    iods: dict[str, dict[str, dict[str, str]]] = {}
    for iod, mods in get_iod_module_map().items():
        top: dict[str, str] = {}
        nested: dict[str, str] = {}
        for mod in mods:
            for attr in modules.get(mod["key"], []):
                kw = attr["keyword"]
                if kw in combos:
                    where = nested if attr["path"] else top
                    key = combos[kw]
                    where[key] = min(where.get(key, "3"), attr["type"][0])
        iods[iod] = {"top": dict(sorted(top.items())), "nested": dict(sorted(nested.items()))}
    out = {"sop_class_iod": get_sop_class_iod_map(), "iod_attribute_types": iods}
    (HERE / "attribute_types.json").write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
