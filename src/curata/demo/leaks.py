"""Leak check: search everything central (store blobs and catalog rows) for the hospitals' true identities.

The demo's manifest is the hospitals' side of the story: it knows every patient's real name, IDs, birth
date, phone, address, accession numbers, staff names and original UIDs. After ingest (which
de-identifies before anything is stored) none of these may appear in the central store or catalog,
in any encoding. Scanning 10,000 blobs against a few thousand values with ``bytes.find`` would be
slow, so both sides are cut into word tokens: a value is looked for in full only where its rarest
token occurs.

Scope: DICOM blobs are scanned up to their top-level Pixel Data element plus their last 4 KiB (where
trailing padding and signatures sit); other blobs up to 1 MiB from each end. Original study dates are
not checked (a shifted date of one patient can equal an original date of another); birth dates are.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(rb"[a-z0-9\x80-\xff]+")
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_MIN_LEN = 4


@dataclass(frozen=True)
class Needle:
    pattern: bytes  # lower-cased bytes
    value: str
    kind: str
    patient: str


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _encodings(text: str) -> set[bytes]:
    out = set()
    for variant in {text, _fold(text), text.replace("^", " ")}:
        for codec in ("utf-8", "latin-1"):
            try:
                out.add(variant.encode(codec).lower())
            except UnicodeEncodeError:
                continue
    return {o for o in out if len(o) >= _MIN_LEN}


def _date_forms(iso: str) -> list[str]:
    y, m, d = iso.split("-")
    return [f"{y}{m}{d}", iso, f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}"]


def needles_from_manifest(manifest: Any) -> list[Needle]:
    """Every identifying value the hospitals know, in every byte form it may take."""
    values: list[tuple[str, str, str]] = []
    for patient in manifest.patients:
        idt = patient.identity
        key = patient.key
        names = [idt["family"], idt["given"], idt["middle"], *idt["other_names"]]
        for name in names:
            for part in re.split(r"[\^ ]+", name):
                values.append((part, "name", key))
        values.append((f"{idt['family']}^{idt['given']}", "name", key))
        for ident in (
            idt["patient_id"],
            *idt["other_ids"],
            idt["medical_record_locator"],
            *idt["accessions"],
        ):
            values.append((ident, "id", key))
        for form in _date_forms(idt["birth_date"]):
            values.append((form, "birth_date", key))
        values.append((idt["phone"], "phone", key))
        values.append((idt["street"], "address", key))
        for staff in idt["staff"].values():
            values.append((staff.split("^")[0], "staff", key))
        for uid in (*idt["study_uids"], *idt["frame_of_reference_uids"]):
            values.append((uid, "uid", key))
    series_patient = {s.series_uid: s.patient for s in manifest.series}
    for s in manifest.series:
        values.append((s.series_uid, "uid", s.patient))
    for f in manifest.files:
        values.append((f.sop_instance_uid, "uid", series_patient.get(f.series_uid, "")))
    needles = {}
    for value, kind, key in values:
        for pattern in _encodings(value):
            needles[(pattern, kind, key)] = Needle(pattern, value, kind, key)
    return list(needles.values())


def curata_vocabulary() -> set[bytes]:
    """Words of Curata's own fixed vocabulary (option names, code meanings) as lower-case tokens.

    A name that is also one of these words ("Long", a Vietnamese given name, vs the option
    ``retain_long_modified_dates``) cannot be told apart from the vocabulary as a lone token; its
    other forms (the full name, other parts) are still looked for.
    """
    from curata.collect.deid import BASIC_CODE, OPTIONS, PROFILES

    text = " ".join([*OPTIONS, *(m for _c, _v, m in OPTIONS.values()), *PROFILES, BASIC_CODE[1]])
    return set(_TOKEN.findall(text.lower().encode()))


class Scanner:
    """Finds needles in byte strings through a token index (each needle filed under its longest token)."""

    def __init__(self, needles: list[Needle], vocabulary: set[bytes] | None = None) -> None:
        self.index: dict[bytes, list[Needle]] = defaultdict(list)
        skip = vocabulary or set()
        kept = [n for n in needles if n.pattern not in skip]
        for needle in kept:
            tokens = _TOKEN.findall(needle.pattern)
            if tokens:
                self.index[max(tokens, key=len)].append(needle)
        self.count = len(kept)
        self.skipped = len(needles) - len(kept)

    def scan(self, raw: bytes) -> list[Needle]:
        hay = raw.lower()
        hits = []
        for token in set(_TOKEN.findall(hay)):
            for needle in self.index.get(token, ()):
                if needle.pattern in hay:
                    hits.append(needle)
        return hits


def _scannable(raw: bytes) -> bytes:
    if raw[128:132] == b"DICM":
        cut = raw.rfind(_PIXEL_DATA_TAG)
        return raw[:cut] + raw[-4096:] if cut > 0 else raw
    return raw if len(raw) <= 2 << 20 else raw[: 1 << 20] + raw[-(1 << 20) :]


def scan_store_for_identities(ws: Any, manifest: Any, *, max_hits: int = 50) -> dict[str, Any]:
    """Scan every blob of ``ws``'s store and every catalog row for ``manifest``'s true identities."""
    from sqlalchemy import MetaData, select

    scanner = Scanner(needles_from_manifest(manifest), curata_vocabulary())
    hits: list[dict[str, Any]] = []
    blobs = scanned = 0
    store = ws.store
    for digest in store.digests():
        raw = store.get_bytes(digest)
        part = _scannable(raw)
        blobs += 1
        scanned += len(part)
        for needle in scanner.scan(part):
            hits.append(
                {
                    "where": f"store:{digest}",
                    "kind": needle.kind,
                    "patient": needle.patient,
                    "value": needle.value,
                }
            )
    rows = 0
    engine = ws.catalog.engine
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                rows += 1
                text = "\x00".join("" if v is None else str(v) for v in row)
                for needle in scanner.scan(text.encode("utf-8", "replace")):
                    hits.append(
                        {
                            "where": f"catalog:{table.name}",
                            "kind": needle.kind,
                            "patient": needle.patient,
                            "value": needle.value,
                        }
                    )
    by_kind: dict[str, int] = defaultdict(int)
    for hit in hits:
        by_kind[hit["kind"]] += 1
    return {
        "blobs": blobs,
        "MB_scanned": round(scanned / 1e6, 1),
        "catalog_rows": rows,
        "values_checked": scanner.count,
        "values_equal_to_curata_vocabulary": scanner.skipped,
        "hits_by_kind": dict(by_kind),
        "hits": hits[:max_hits],
        "hit_count": len(hits),
    }
