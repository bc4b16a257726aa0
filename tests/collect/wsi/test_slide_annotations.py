"""Slide annotations: QuPath GeoJSON in, DICOM Bulk Simple Annotations (highdicom) and GeoJSON out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from curata.collect.deid.pseudonyms import Pseudonymizer
from curata.collect.wsi import deidentify_slide
from curata.collect.wsi import synthetic as syn
from curata.collect.wsi.annotations import from_dicom, read_geojson, to_dicom, to_geojson
from curata.errors import InputError

QUPATH = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "a1",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[10, 10], [200, 12], [190, 180], [15, 170], [10, 10]]],
            },
            "properties": {
                "objectType": "annotation",
                "name": "Okonkwo tumour",
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "MultiPoint", "coordinates": [[50, 60], [70, 80.5]]},
            "properties": {"objectType": "annotation", "classification": {"name": "Mitosis"}},
        },
    ],
}


def test_qupath_geojson_to_dicom_ann_and_back(tmp_path: Path) -> None:
    anns = read_geojson(json.dumps(QUPATH))
    assert [(a.label, a.kind, len(a.coords)) for a in anns] == [
        ("Tumor", "polygon", 4),
        ("Mitosis", "point", 1),
        ("Mitosis", "point", 1),
    ]
    src = tmp_path / "s.svs"
    syn.write_svs(src, size=512)
    res = deidentify_slide(src.read_bytes(), key=b"k" * 32, source=str(src), identity=None)
    level0 = pydicom.dcmread(io.BytesIO(res.instances[0]))
    pseudo = Pseudonymizer(b"k" * 32)
    ds = to_dicom(anns, level0, series_uid=pseudo.uid("ann-series"), sop_uid=pseudo.uid("ann-1"))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.91.1" and ds.StudyInstanceUID == level0.StudyInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert b"Okonkwo" not in buf.getvalue()  # free-text names of QuPath objects are not carried over
    back = from_dicom(pydicom.dcmread(io.BytesIO(buf.getvalue())))
    got = sorted((a.label, a.kind, a.coords.round(2).tolist()) for a in back)
    want = sorted((a.label, a.kind, a.coords.round(2).tolist()) for a in anns)
    assert got == want
    gj = to_geojson(back)
    assert read_geojson(gj)[0].coords.shape[1] == 2 and len(gj["features"]) == 3
    poly = next(f for f in gj["features"] if f["geometry"]["type"] == "Polygon")
    ring = poly["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and np.allclose(ring[:-1], anns[0].coords)


def test_bad_geojson_is_refused() -> None:
    with pytest.raises(InputError, match="not GeoJSON"):
        read_geojson('{"type": "Nope"}')
    with pytest.raises(InputError, match="unsupported GeoJSON geometry"):
        read_geojson({"type": "Feature", "geometry": {"type": "Circle", "coordinates": []}, "properties": {}})
