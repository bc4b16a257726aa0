"""Slide annotations: polygons and points as GeoJSON and as DICOM Microscopy Bulk Simple Annotations.

Coordinates are (x, y) = (column, row) in the slide's full-resolution pixel matrix, as QuPath writes
them and as DICOM's 2D annotation coordinate type expects them. QuPath GeoJSON (a FeatureCollection,
a list of features, or one feature; ``properties.classification.name`` as the class) is imported;
names and other free text in the properties are not carried over (only the class label).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from curata.errors import InputError


@dataclass
class SlideAnnotation:
    label: str
    kind: str  # "polygon" or "point"
    coords: np.ndarray  # N x 2 (x, y) pixels; a polygon is not closed (first point not repeated)


def _rings(geom: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    kind = geom.get("type")
    coords: Any = geom.get("coordinates")
    known = ("Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString")
    if kind in known and (not isinstance(coords, list) or not coords):
        raise InputError(f"GeoJSON geometry {kind!r} has no coordinates")
    if kind == "Polygon":
        return [("polygon", coords[0])]
    if kind == "MultiPolygon":
        return [("polygon", poly[0]) for poly in coords]
    if kind == "Point":
        return [("point", [coords])]
    if kind == "MultiPoint":
        return [("point", [c]) for c in coords]
    if kind == "LineString":
        return [("polyline", coords)]
    raise InputError(
        f"unsupported GeoJSON geometry {kind!r}", hint="Polygon, MultiPolygon, Point, MultiPoint, LineString"
    )


def read_geojson(data: str | bytes | dict[str, Any] | list[Any]) -> list[SlideAnnotation]:
    """QuPath (or any) GeoJSON -> annotations."""
    obj = json.loads(data) if isinstance(data, str | bytes) else data
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features", [])
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, list):
        features = obj
    else:
        raise InputError("not GeoJSON: expected a FeatureCollection, a Feature or a list of features")
    out = []
    for f in features:
        props = f.get("properties") or {}
        cls = props.get("classification") or {}
        label = str(
            cls.get("name") if isinstance(cls, dict) else cls or props.get("objectType") or "annotation"
        )
        for kind, ring in _rings(f.get("geometry") or {}):
            arr = np.asarray(ring, dtype=np.float32).reshape(-1, 2)
            if kind == "polygon" and len(arr) > 1 and np.array_equal(arr[0], arr[-1]):
                arr = arr[:-1]
            out.append(SlideAnnotation(label, kind, arr))
    return out


def to_geojson(annotations: list[SlideAnnotation]) -> dict[str, Any]:
    features = []
    for a in annotations:
        pts = a.coords.tolist()
        if a.kind == "polygon":
            geom = {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}
        elif a.kind == "point":
            geom = {"type": "Point", "coordinates": pts[0]}
        else:
            geom = {"type": "LineString", "coordinates": pts}
        features.append(
            {
                "type": "Feature",
                "geometry": geom,
                "properties": {"objectType": "annotation", "classification": {"name": a.label}},
            }
        )
    return {"type": "FeatureCollection", "features": features}


_GRAPHIC = {"polygon": "POLYGON", "point": "POINT", "polyline": "POLYLINE"}


def to_dicom(
    annotations: list[SlideAnnotation], source: Dataset, *, series_uid: str, sop_uid: str
) -> Dataset:
    """DICOM Microscopy Bulk Simple Annotations over a DICOM-WSI level (one group per label and shape)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    groups = defaultdict(list)
    for a in annotations:
        groups[(a.label, a.kind)].append(a.coords.astype(np.float32))
    hd_groups = []
    for n, ((label, kind), data) in enumerate(sorted(groups.items()), start=1):
        hd_groups.append(
            hd.ann.AnnotationGroup(
                number=n,
                uid=hd.UID(),
                label=label[:64],
                annotated_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                annotated_property_type=codes.SCT.Neoplasm,
                graphic_type=_GRAPHIC[kind],
                graphic_data=data,
                algorithm_type="MANUAL",
            )
        )
    return hd.ann.MicroscopyBulkSimpleAnnotations(
        source_images=[source],
        annotation_coordinate_type="2D",
        annotation_groups=hd_groups,
        series_instance_uid=series_uid,
        series_number=900,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="Curata",
        manufacturer_model_name="curata",
        software_versions="curata",
        device_serial_number="UNKNOWN",
    )


def from_dicom(ds: Dataset) -> list[SlideAnnotation]:
    """Annotations back from a Bulk Simple Annotations instance."""
    import highdicom as hd

    ann = hd.ann.MicroscopyBulkSimpleAnnotations.from_dataset(ds)
    out = []
    kinds = {v: k for k, v in _GRAPHIC.items()}
    for group in ann.get_annotation_groups():
        kind = kinds.get(group.graphic_type.value, "polygon")
        for coords in group.get_graphic_data(coordinate_type="2D"):
            out.append(SlideAnnotation(group.label, kind, np.asarray(coords, np.float32).reshape(-1, 2)))
    return out
