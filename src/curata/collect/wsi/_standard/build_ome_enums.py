"""Build ``ome_enums.json`` from the OME 2016-06 XML schema: for every attribute whose type is an
enumeration, the values the schema allows (the union over the elements that carry it).

Run: ``python build_ome_enums.py path/to/ome-2016-06.xsd`` (the schema ships with ``ome-types``).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

XS = "{http://www.w3.org/2001/XMLSchema}"


def enums(xsd: Path) -> dict[str, list[str]]:
    root = ET.parse(xsd).getroot()
    types: dict[str, set[str]] = {}
    for simple in root.iter(f"{XS}simpleType"):
        values = {e.get("value", "") for e in simple.iter(f"{XS}enumeration")}
        if simple.get("name") and values:
            types[simple.get("name", "")] = values
    out: dict[str, set[str]] = {}
    for attr in root.iter(f"{XS}attribute"):
        name = attr.get("name")
        if not name:
            continue
        values = set(types.get((attr.get("type") or "").split(":")[-1], set()))
        values |= {e.get("value", "") for e in attr.iter(f"{XS}enumeration")}
        if values:
            out.setdefault(name, set()).update(values)
    return {k: sorted(v) for k, v in sorted(out.items())}


if __name__ == "__main__":
    data = enums(Path(sys.argv[1]))
    target = Path(__file__).with_name("ome_enums.json")
    target.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"{len(data)} attributes -> {target}")
