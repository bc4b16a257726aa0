"""Writes src/curata/annotate/_standard/surfel_normals.json from DeepMind's `surface-distance`
(Apache-2.0): the surface-element normals of the 256 2x2x2 neighbour codes (marching-cubes cases).
Run once with the package installed; the shipped file is data, not code."""

import json
from pathlib import Path

from surface_distance import lookup_tables

out = Path(__file__).resolve().parents[1] / "src/curata/annotate/_standard/surfel_normals.json"
normals = [[[float(v) for v in n] for n in code] for code in lookup_tables._NEIGHBOUR_CODE_TO_NORMALS]
assert len(normals) == 256
out.write_text(
    json.dumps({"source": "deepmind/surface-distance lookup_tables.py (Apache-2.0)", "normals": normals})
)
print(out)
