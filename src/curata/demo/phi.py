"""Planted identifiers: dress real DICOM datasets with PHI in every place it hides, then find it again.

This is the adversarial half of the de-identification story. ``plant_identifiers`` writes one
patient's identity (an :class:`Identity`) into a dataset: the obvious patient module, staff and
institution, every date and UID, free text with identifiers embedded between clinical words, private
blocks (unknown and known vendor creators), SR-like trees three levels deep, overlays, curves, icon
images, digital signatures and trailing padding. It returns a :class:`PlantedSet` that lists every
value with where it was put and what kind it is, and whose ``scan`` finds any of them in raw bytes
(every encoding a value can take) and ``scan_dataset`` in parsed elements (with the tag path).

Stable API (the demo data generator calls it on synthetic files too)::

    identity = Identity.random(rng)                       # one patient, shared by several files
    planted = plant_identifiers(ds, rng, identity=identity, study=0)
    ds.save_as(path)
    hits = planted.scan(path.read_bytes())                # [] means nothing survived

Dates are chosen so that a date shift cannot turn one planted date into another: birth dates lie in
1931-1950, a patient's first study in 1984-1991 and the second 15-19 years later, all on distinct
days, so a hit on a date means the original date survived. Times are planted but never reported
(a whole-day shift keeps them by design). Values of kind ``characteristic`` (ethnic group) are
planted with ``identifying=False`` and never reported either: Retain Patient Characteristics keeps them.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import PersonName

__all__ = [
    "Hit",
    "Identity",
    "PlantedSet",
    "PlantedValue",
    "Reference",
    "load_manifest",
    "make_planted_corpus",
    "plant_identifiers",
    "pydicom_data_files",
    "usable_test_files",
]

# Name pools: distinctive (no collision with real header words), at least 6 letters, some non-ASCII.
# The Latin-1 pools can be written under ISO_IR 100; the others need ISO_IR 192 (UTF-8).
_FAMILY_LATIN1 = [
    "Müllerhagen",
    "Østergaard",
    "Brønnimann",
    "Fernández-Ortega",
    "Grünewald",
    "Quisenberry",
    "Haverkamp",
    "Lindqvist",
    "Castellanos",
    "Abernathy",
    "Villeneuve",
    "Papadopoulou",
    "Okonkwo-Bell",
    "Kesselring",
    "Thornquist",
    "Belmonte",
    "Rautenberg",
    "Achterberg",
]
_FAMILY_UTF8 = ["Szczepański", "Łukaszewicz", "Dvořáková", "Wojciechowski", "Nakagawa-Ōta", "Ştefănescu"]
_GIVEN_LATIN1 = [
    "Zoëlle",
    "Jürgen",
    "Anaïs-Marie",
    "Sørensine",
    "Dolores",
    "Bartholomew",
    "Fionnuala",
    "Evangeline",
    "Thaddeus",
    "Ottilie",
    "Leopoldine",
    "Cosimo",
    "Wilhelmina",
    "Ignatius",
    "Rosalind",
    "Bénédicte",
]
_GIVEN_UTF8 = ["Mikołaj", "Łucja", "Radosław", "Žofie", "Kōsuke", "Mărioara"]
_MIDDLE = ["Anneliese", "Konstantin", "Maximiliane", "Theodora", "Sebastiano", "Gwendolyn", "Aurelius"]
_PREFIX = ["Dr.", "Prof.", "Mme", "Herr", "Mrs."]
_SUFFIX = ["PhD", "Jr.", "III", "MSc"]
_STAFF = [
    "Vandersloot",
    "Pemberton",
    "Marchetti",
    "Kowalczuk",
    "Haugland",
    "Trevisani",
    "Oyelaran",
    "Featherstone",
    "Lindemann",
    "Cavendish",
    "Ruiz-Tagle",
    "Stavridis",
    "Wetherell",
    "Blomqvist",
    "Achenbach",
    "Ferreira-Lobo",
]
_STAFF_GIVEN = [
    "Marguerite",
    "Henrietta",
    "Augustin",
    "Cornelius",
    "Philippa",
    "Lorenzo",
    "Ingeborg",
    "Desmond",
]
_TOWNS = ["Wolfsried", "Haldenbrück", "Kestrelmoor", "Eichenhain", "Brackwater", "Ulrichsfeld"]
_STREETS = [
    "Lindenstraße",
    "Amselweg",
    "Rosemary Lane",
    "Quai des Tanneurs",
    "Via dei Cipressi",
    "Birkenallee",
]
_RANKS = ["Oberstleutnant", "Fregattenkapitän", "Hauptfeldwebel", "Lieutenant Commander"]
_OCCUPATIONS = ["Lehrerin", "Glockengießer", "Schornsteinfeger", "Uhrmacher", "Bibliothekarin"]
_ETHNIC = ["Scandinavian", "Mediterranean", "West African"]
_CLINICAL = [
    ("Thorax", "follow-up", "nodule"),
    ("Abdomen", "contrast", "lesion"),
    ("Head", "trauma", "bleed"),
    ("Knee", "meniscus", "tear"),
    ("Pelvis", "staging", "mass"),
]

#: Tag paths that hold an identity's staff names (PN).
_STAFF_TAGS = {
    "ReferringPhysicianName": "referring",
    "PerformingPhysicianName": "performing",
    "OperatorsName": "operator",
    "NameOfPhysiciansReadingStudy": "reading",
    "PhysiciansOfRecord": "of_record",
}
_WELL_KNOWN_UIDS: frozenset[str] = frozenset()
_LEAVE_UID_TAGS = {0x00020010, 0x00020012, 0x00020002, 0x00080016}  # transfer syntax, impl. class, SOP class


def _well_known(uid: str) -> bool:
    global _WELL_KNOWN_UIDS
    if not _WELL_KNOWN_UIDS:
        from pydicom._uid_dict import UID_dictionary

        _WELL_KNOWN_UIDS = frozenset(UID_dictionary)
    # Standard UIDs (SOP classes, transfer syntaxes, coding schemes, context groups) stay as they are.
    return uid in _WELL_KNOWN_UIDS or uid.startswith("1.2.840.10008.")


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))


def _rand_date(rng: random.Random, first_year: int, last_year: int) -> date:
    start = date(first_year, 1, 1)
    return start + timedelta(days=rng.randint(0, (date(last_year, 12, 31) - start).days))


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(126) | (1 << 125)}"  # reproducible from the seed, unlike uuid4


@dataclass(frozen=True)
class Identity:
    """One patient and the people and places around them; share it across that patient's files."""

    family: str
    given: str
    middle: str
    prefix: str
    suffix: str
    patient_id: str
    issuer: str
    other_ids: tuple[str, ...]
    other_names: tuple[str, ...]
    birth_date: date
    sex: str
    phone: str
    street: str
    postal_code: str
    city: str
    institution: str
    institution_address: str
    department: str
    staff: dict[str, str]
    station_name: str
    device_serial: str
    military_rank: str
    occupation: str
    ethnic_group: str
    medical_record_locator: str
    study_dates: tuple[date, ...]
    accessions: tuple[str, ...]
    study_ids: tuple[str, ...]
    study_uids: tuple[str, ...]
    frame_of_reference_uids: tuple[str, ...]
    charset: str = "ISO_IR 192"

    @property
    def patient_name(self) -> str:
        """DICOM PN with all five components: family^given^middle^prefix^suffix."""
        return f"{self.family}^{self.given}^{self.middle}^{self.prefix}^{self.suffix}"

    @property
    def address(self) -> str:
        return f"{self.street}, {self.postal_code} {self.city}"

    @classmethod
    def random(cls, rng: random.Random, *, charset: str | None = None, n_studies: int = 2) -> Identity:
        """A fresh identity. ``charset`` is ``"ISO_IR 192"`` (UTF-8) or ``"ISO_IR 100"`` (Latin-1)."""
        charset = charset or rng.choice(["ISO_IR 192", "ISO_IR 192", "ISO_IR 100"])
        if charset not in ("ISO_IR 192", "ISO_IR 100"):
            raise ValueError(f"charset {charset!r}: use 'ISO_IR 192' or 'ISO_IR 100'")
        latin1 = charset == "ISO_IR 100"
        family = rng.choice(_FAMILY_LATIN1 if latin1 else _FAMILY_LATIN1 + _FAMILY_UTF8)
        given = rng.choice(_GIVEN_LATIN1 if latin1 else _GIVEN_LATIN1 + _GIVEN_UTF8)
        staff_family = rng.sample(_STAFF, len(_STAFF_TAGS))
        staff = {
            role: f"{fam}^{rng.choice(_STAFF_GIVEN)}^^{rng.choice(['Dr.', 'Prof.', ''])}"
            for role, fam in zip(_STAFF_TAGS.values(), staff_family, strict=True)
        }
        town = rng.choice(_TOWNS)
        first = _rand_date(rng, 1984, 1991)
        dates = [first]
        for _ in range(n_studies - 1):
            dates.append(dates[-1] + timedelta(days=rng.randint(15 * 365, 19 * 365)))
        cc, area = rng.choice([("49", "30"), ("41", "44"), ("33", "1"), ("1", "617")])
        return cls(
            family=family,
            given=given,
            middle=rng.choice(_MIDDLE),
            prefix=rng.choice(_PREFIX),
            suffix=rng.choice(_SUFFIX),
            patient_id=f"K{_digits(rng, 9)}",
            issuer=f"{town} MPI",
            other_ids=(f"OTH-{_digits(rng, 8)}", f"INS{_digits(rng, 10)}"),
            other_names=(f"{rng.choice(_FAMILY_LATIN1)}^{given}", f"{family}-{rng.choice(_STAFF)}^{given}"),
            birth_date=_rand_date(rng, 1931, 1950),
            sex=rng.choice(["F", "M", "O"]),
            phone=f"+{cc} {area} {_digits(rng, 4)} {_digits(rng, 4)}",
            street=f"{rng.choice(_STREETS)} {rng.randint(2, 199)}",
            postal_code=_digits(rng, 5),
            city=town,
            institution=f"St. {rng.choice(['Ansgar', 'Hildegard', 'Columba', 'Walburga'])} Klinikum {town}",
            institution_address=f"{rng.choice(_STREETS)} {rng.randint(200, 399)}, {town}",
            department=f"{town} Radiologie Nord",
            staff=staff,
            station_name=f"WFR{_digits(rng, 5)}",
            device_serial=f"SN{_digits(rng, 9)}",
            military_rank=rng.choice(_RANKS),
            occupation=f"{town} {rng.choice(_OCCUPATIONS)}"[:16],  # SH: the town first
            ethnic_group=rng.choice(_ETHNIC),
            medical_record_locator=f"MRL-{_digits(rng, 9)}",
            study_dates=tuple(dates),
            accessions=tuple(f"ACC{_digits(rng, 10)}" for _ in dates),
            study_ids=tuple(f"ST{_digits(rng, 7)}" for _ in dates),
            study_uids=tuple(_uid(rng) for _ in dates),
            frame_of_reference_uids=tuple(_uid(rng) for _ in dates),
            charset=charset,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["birth_date"] = self.birth_date.isoformat()
        data["study_dates"] = [d.isoformat() for d in self.study_dates]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        data = dict(data)
        data["birth_date"] = date.fromisoformat(data["birth_date"])
        data["study_dates"] = tuple(date.fromisoformat(d) for d in data["study_dates"])
        for key in (
            "other_ids",
            "other_names",
            "accessions",
            "study_ids",
            "study_uids",
            "frame_of_reference_uids",
        ):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class PlantedValue:
    """One identifier written into a dataset: the value, its kind and the tag path where it went."""

    value: str
    kind: str  # name, id, date, uid, phone, address, institution, staff, device, demographic, characteristic
    path: str
    identifying: bool = True


@dataclass(frozen=True)
class Hit:
    """A planted value found again: which value, in what form, and where (byte offset or tag path)."""

    value: str
    kind: str
    form: str
    where: str
    planted_at: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """A reference planted at ``path`` that points to another file's SOP Instance UID ``target_uid``."""

    path: str
    target_uid: str


@dataclass
class PlantedSet:
    """Every value planted into one dataset, and the means to find any of them again."""

    identity: Identity
    study: int = 0
    values: list[PlantedValue] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    sop_instance_uid: str = ""
    sop_class_uid: str = ""

    def add(self, value: str, kind: str, path: str, *, identifying: bool = True) -> None:
        if value:
            self.values.append(PlantedValue(str(value), kind, path, identifying))

    def identifying(self) -> list[PlantedValue]:
        return [v for v in self.values if v.identifying]

    def distinct(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(value, kind) -> every tag path it was planted at."""
        out: dict[tuple[str, str], list[str]] = {}
        for v in self.identifying():
            out.setdefault((v.value, v.kind), []).append(v.path)
        return {k: tuple(p) for k, p in out.items()}

    # ----- search -----------------------------------------------------------------------------
    def text_forms(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(lower-cased text form, value, kind, planted paths) for every identifying value."""
        forms: list[tuple[str, str, str, tuple[str, ...]]] = []
        for (value, kind), paths in self.distinct().items():
            for form in sorted(_forms(value, kind)):
                forms.append((form, value, kind, paths))
        return forms

    def byte_patterns(self) -> list[tuple[bytes, str, str, str, tuple[str, ...]]]:
        """(ASCII-lower-cased byte pattern, encoding label, value, kind, paths) in every encoding."""
        seen: set[tuple[bytes, str, str]] = set()
        out = []
        for form, value, kind, paths in self.text_forms():
            for variant in {form, form.upper(), form.title()}:
                for codec in ("utf-8", "latin-1", "ascii-fold"):
                    try:
                        raw = (_fold(variant) if codec == "ascii-fold" else variant).encode(
                            "ascii" if codec == "ascii-fold" else codec
                        )
                    except UnicodeEncodeError:
                        continue
                    raw = raw.lower()
                    if (raw, value, kind) not in seen and len(raw) >= 5:
                        seen.add((raw, value, kind))
                        out.append((raw, codec, value, kind, paths))
        return out

    def scan(self, raw: bytes) -> list[Hit]:
        """Every planted identifier whose any form occurs in ``raw`` (one hit per value and form)."""
        hay = _inflated(raw).lower()
        hits = []
        for pattern, codec, value, kind, paths in self.byte_patterns():
            pos = hay.find(pattern)
            if pos >= 0:
                form = f"{pattern.decode('latin-1')!r} ({codec})"
                hits.append(Hit(value, kind, form, f"byte {pos}", paths))
        return hits

    def scan_dataset(self, ds: Dataset) -> list[Hit]:
        """Planted identifiers found in parsed element values (text, person names, UIDs, bytes), by tag path."""
        forms = self.text_forms()
        hits = []
        for path, text in _element_texts(ds):
            low = text.lower()
            folded = _fold(low)
            for form, value, kind, paths in forms:
                if form in low or (len(form) >= 5 and _fold(form) in folded):
                    hits.append(Hit(value, kind, form, path, paths))
        return hits

    @staticmethod
    def leaked_values(hits: Iterable[Hit]) -> set[tuple[str, str]]:
        """The distinct (value, kind) pairs among ``hits``."""
        return {(h.value, h.kind) for h in hits}

    # ----- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity.to_dict(),
            "study": self.study,
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "values": [asdict(v) for v in self.values],
            "references": [asdict(r) for r in self.references],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlantedSet:
        return cls(
            identity=Identity.from_dict(data["identity"]),
            study=data["study"],
            values=[PlantedValue(**v) for v in data["values"]],
            references=[Reference(**r) for r in data["references"]],
            sop_instance_uid=data["sop_instance_uid"],
            sop_class_uid=data.get("sop_class_uid", ""),
        )


def _inflated(raw: bytes) -> bytes:
    """``raw`` with a Deflated Explicit VR Little Endian dataset inflated after it, so values show."""
    if b"1.2.840.10008.1.2.1.99" not in raw[:2048] or raw[128:132] != b"DICM":
        return raw
    meta_end = 144 + int.from_bytes(raw[140:144], "little")  # (0002,0000) group length
    try:
        return raw + zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw[meta_end:])
    except zlib.error:
        return raw


def _fold(text: str) -> str:
    """ASCII transliteration (Müller -> Muller, ß -> ss, Ł -> L) as a lossy de-identifier might write."""
    text = text.replace("ß", "ss").replace("ł", "l").replace("Ł", "L").replace("ø", "o").replace("Ø", "O")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _date_forms(iso: str) -> set[str]:
    d = date.fromisoformat(iso)
    return {
        d.strftime("%Y%m%d"),
        d.strftime("%Y-%m-%d"),
        d.strftime("%d.%m.%Y"),
        d.strftime("%Y/%m/%d"),
        d.strftime("%m/%d/%Y"),
        d.strftime("%d/%m/%Y"),
        d.strftime("%d %B %Y"),  # 12 March 1948 (English month names: what a report writer types)
        d.strftime("%B %d, %Y"),
        d.strftime("%d-%b-%Y"),
        d.strftime("%d %b %Y"),
    }


def _forms(value: str, kind: str) -> set[str]:
    """Every text form under which ``value`` may survive (lower-cased; at least 5 characters)."""
    if kind == "date":
        return _date_forms(value)
    forms = {value}
    if kind in ("name", "staff") and "^" in value:
        parts = [p for p in value.split("^")]
        family, given = parts[0], parts[1] if len(parts) > 1 else ""
        forms |= {value.rstrip("^"), value.replace("^", " ").strip()}
        forms |= {p for p in (family, given, *(parts[2:3])) if len(p) >= 5}
        if given:
            forms |= {f"{given} {family}", f"{family} {given}", f"{family}, {given}", f"{family}^{given}"}
        for p in (family, given):
            if "-" in p:  # a double-barrelled name survives in halves too
                forms |= {h for h in p.split("-") if len(h) >= 6}
    elif kind == "phone":
        digits = re.sub(r"\D", "", value)
        forms |= {digits, value.replace(" ", "-"), value.replace(" ", "")}
    elif kind == "id":
        forms.add(value.replace("-", ""))
    return {f.lower() for f in forms if len(f) >= 5}


_TEXT_VRS = {
    "AE",
    "AS",
    "CS",
    "DA",
    "DS",
    "DT",
    "IS",
    "LO",
    "LT",
    "PN",
    "SH",
    "ST",
    "TM",
    "UC",
    "UI",
    "UR",
    "UT",
}


def _element_texts(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(tag path, text) for every element value, at any depth, including file meta and private bytes."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and not prefix:
        yield from _element_texts(meta, "file_meta.")
    for elem in ds:
        path = f"{prefix}{_name(elem)}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _element_texts(item, f"{path}[{i}].")
            continue
        value = elem.value
        if value is None:
            continue
        if isinstance(value, bytes | bytearray):
            if elem.tag == 0x7FE00010 and prefix == "":
                continue  # the main image's pixels: the raw scan covers them
            yield path, bytes(value).decode("latin-1")
            yield path, bytes(value).decode("utf-8", errors="replace")
        elif elem.VR in _TEXT_VRS or isinstance(value, str | PersonName):
            values = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
            yield path, "\\".join(str(v) for v in values)


def _name(elem: DataElement) -> str:
    return elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"


# ----- planting ---------------------------------------------------------------------------------


def plant_identifiers(
    ds: Dataset,
    rng: random.Random,
    *,
    identity: Identity | None = None,
    study: int = 0,
    uid_map: dict[str, str] | None = None,
) -> PlantedSet:
    """Write ``identity`` (a new random one if None) into ``ds`` in place; return what went where.

    ``study`` picks which of the identity's studies this object belongs to (its date, accession,
    Study and Frame of Reference UIDs). ``uid_map`` (original UID -> planted UID) may be shared by the
    files of a corpus so that references between them keep pointing at each other.
    """
    identity = identity or Identity.random(rng)
    planted = PlantedSet(identity=identity, study=study)
    uid_map = {} if uid_map is None else uid_map
    study_date = identity.study_dates[study]
    times = {
        key: f"{rng.randint(7, 19):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}" for key in "SEACX"
    }

    _set_charset(ds, identity.charset)
    _replace_everywhere(ds, planted, identity, study_date, times["X"], uid_map, rng)
    _plant_patient(ds, planted, identity, study_date)
    _plant_study(ds, planted, identity, study, times)
    _plant_staff_and_place(ds, planted, identity)
    _plant_free_text(ds, planted, identity, rng)
    _plant_uids(ds, planted, identity, study, uid_map, rng)
    _plant_private(ds, planted, identity)
    _plant_deep_tree(ds, planted, identity, study_date, rng)
    _plant_overlays_curves_icon(ds, planted, identity)
    _plant_signature_and_padding(ds, planted, identity, study_date, rng)
    planted.sop_instance_uid = str(ds.SOPInstanceUID)
    planted.sop_class_uid = str(ds.SOPClassUID)
    return planted


def _set_charset(ds: Dataset, charset: str) -> None:
    original = ds.get("SpecificCharacterSet")
    ds.decode()  # every string to Python text under the original charset, so it re-encodes correctly
    if charset == "ISO_IR 100" and original not in (None, "", "ISO_IR 100", "ISO_IR 6"):
        charset = "ISO_IR 192"  # keep whatever the original text needs encodable
    ds.SpecificCharacterSet = charset


def _put(
    ds: Dataset, keyword: str, value: Any, planted: PlantedSet | None = None, kind: str = "", path: str = ""
) -> None:
    setattr(ds, keyword, value)
    if planted is not None:
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            planted.add(str(v), kind, path or keyword)


def _replace_everywhere(
    ds: Dataset,
    planted: PlantedSet,
    identity: Identity,
    study_date: date,
    time: str,
    uid_map: dict[str, str],
    rng: random.Random,
    prefix: str = "",
) -> None:
    """Every existing DA, DT, TM, UI and PN at any depth gets a planted value, so nothing original hides."""
    da = study_date.strftime("%Y%m%d")
    for elem in ds:
        path = f"{prefix}{_name(elem)}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                _replace_everywhere(item, planted, identity, study_date, time, uid_map, rng, f"{path}[{i}].")
            continue
        if elem.value in (None, "", b"") or elem.tag.is_private:
            continue
        n = elem.VM if elem.VM > 0 else 1
        if not prefix and elem.tag == 0x00100030:
            continue  # Patient's Birth Date comes from the identity
        if elem.VR == "DA":
            elem.value = [da] * n if n > 1 else da
            planted.add(study_date.isoformat(), "date", path)
        elif elem.VR == "DT":
            elem.value = [da + time] * n if n > 1 else da + time
            planted.add(study_date.isoformat(), "date", path)
        elif elem.VR == "TM":
            elem.value = [time] * n if n > 1 else time
            planted.add(time, "time", path, identifying=False)
        elif elem.VR == "UI" and elem.tag not in _LEAVE_UID_TAGS:
            if not prefix and elem.tag in (0x0020000D, 0x00200052):
                continue  # Study and Frame of Reference UIDs come from the identity
            olds = list(elem.value) if elem.VM > 1 else [elem.value]
            news = []
            for old in olds:
                old = str(old)
                if not old or _well_known(old):
                    news.append(old)
                    continue
                if not prefix and elem.tag == 0x00080018:
                    new = uid_map[old] = _uid(rng)  # every file is a new instance, even a reused source
                elif not prefix and elem.tag == 0x0020000E:
                    new = uid_map.setdefault(f"{old}#{study_date}", _uid(rng))  # a series lives in one study
                else:
                    new = uid_map.setdefault(old, _uid(rng))
                news.append(new)
                planted.add(new, "uid", path)
            elem.value = news if len(news) > 1 else news[0]
        elif elem.VR == "PN":
            name = identity.patient_name if "Patient" in path else identity.staff["referring"]
            elem.value = [name] * n if n > 1 else name
            planted.add(name, "name" if "Patient" in path else "staff", path)


def _plant_patient(ds: Dataset, planted: PlantedSet, idt: Identity, study_date: date) -> None:
    _put(ds, "PatientName", idt.patient_name, planted, "name")
    _put(ds, "PatientID", idt.patient_id, planted, "id")
    _put(ds, "IssuerOfPatientID", idt.issuer, planted, "institution")
    items = []
    for i, other in enumerate(idt.other_ids):
        item = Dataset()
        item.PatientID = other
        item.IssuerOfPatientID = idt.issuer
        item.TypeOfPatientID = "TEXT"
        planted.add(other, "id", f"OtherPatientIDsSequence[{i}].PatientID")
        items.append(item)
    ds.OtherPatientIDsSequence = Sequence(items)
    ds.add_new(0x00101000, "LO", list(idt.other_ids))  # Other Patient IDs (retired, still seen)
    for other in idt.other_ids:
        planted.add(other, "id", "OtherPatientIDs")
    _put(ds, "OtherPatientNames", list(idt.other_names), planted, "name")
    _put(ds, "PatientBirthDate", idt.birth_date.strftime("%Y%m%d"))
    planted.add(idt.birth_date.isoformat(), "date", "PatientBirthDate")
    ds.PatientBirthTime = "0615"
    if "PatientSex" not in ds or not ds.PatientSex:
        ds.PatientSex = idt.sex
    years = (
        study_date.year
        - idt.birth_date.year
        - ((study_date.month, study_date.day) < (idt.birth_date.month, idt.birth_date.day))
    )
    ds.PatientAge = f"{years:03d}Y"
    _put(ds, "PatientAddress", idt.address, planted, "address")
    planted.add(idt.street, "address", "PatientAddress")
    planted.add(idt.city, "address", "PatientAddress")
    _put(ds, "PatientTelephoneNumbers", idt.phone, planted, "phone")
    _put(ds, "PatientBirthName", f"{idt.other_names[0].split('^')[0]}^{idt.given}", planted, "name")
    _put(ds, "PatientMotherBirthName", f"{idt.other_names[1].split('^')[0]}^Ottilie", planted, "name")
    _put(ds, "MilitaryRank", idt.military_rank, planted, "demographic")
    _put(ds, "Occupation", idt.occupation)
    planted.add(idt.city, "address", "Occupation")
    ds.EthnicGroup = idt.ethnic_group
    planted.add(idt.ethnic_group, "characteristic", "EthnicGroup", identifying=False)
    ds.add_new(0x00101090, "LO", idt.medical_record_locator)  # Medical Record Locator (retired)
    planted.add(idt.medical_record_locator, "id", "MedicalRecordLocator")


def _plant_study(ds: Dataset, planted: PlantedSet, idt: Identity, study: int, times: dict[str, str]) -> None:
    da = idt.study_dates[study].strftime("%Y%m%d")
    iso = idt.study_dates[study].isoformat()
    for which, key in (("Study", "S"), ("Series", "E"), ("Acquisition", "A"), ("Content", "C")):
        setattr(ds, f"{which}Date", da)
        setattr(ds, f"{which}Time", times[key])
        planted.add(iso, "date", f"{which}Date")
    ds.AcquisitionDateTime = da + times["A"]
    planted.add(iso, "date", "AcquisitionDateTime")
    _put(ds, "AccessionNumber", idt.accessions[study], planted, "id")
    _put(ds, "StudyID", idt.study_ids[study], planted, "id")
    request = Dataset()
    request.RequestedProcedureID = f"RP{idt.accessions[study][3:]}"
    request.ScheduledProcedureStepID = f"SPS{idt.accessions[study][3:]}"
    request.AccessionNumber = idt.accessions[study]
    request.RequestedProcedureDescription = f"CT chest {idt.family} {idt.patient_id}"
    for kw, kind in (
        ("RequestedProcedureID", "id"),
        ("ScheduledProcedureStepID", "id"),
        ("AccessionNumber", "id"),
    ):
        planted.add(getattr(request, kw), kind, f"RequestAttributesSequence[0].{kw}")
    planted.add(idt.patient_name, "name", "RequestAttributesSequence[0].RequestedProcedureDescription")
    planted.add(idt.patient_id, "id", "RequestAttributesSequence[0].RequestedProcedureDescription")
    ds.RequestAttributesSequence = Sequence([request])
    _put(ds, "PerformedProcedureStepID", f"PPS{idt.accessions[study][3:]}", planted, "id")
    ds.PerformedProcedureStepDescription = f"Scan of {idt.given} {idt.family}"
    planted.add(f"{idt.family}^{idt.given}", "name", "PerformedProcedureStepDescription")
    ds.AdmittingDiagnosesDescription = (
        f"Mass, adm. {idt.study_dates[study]:%d/%m/%Y} {idt.institution}"  # LO: 64 characters at most
    )
    planted.add(idt.study_dates[study].isoformat(), "date", "AdmittingDiagnosesDescription")
    planted.add(idt.institution, "institution", "AdmittingDiagnosesDescription")


def _plant_staff_and_place(ds: Dataset, planted: PlantedSet, idt: Identity) -> None:
    for keyword, role in _STAFF_TAGS.items():
        _put(ds, keyword, idt.staff[role], planted, "staff")
    _put(ds, "ReferringPhysicianAddress", idt.institution_address, planted, "address")
    _put(ds, "ReferringPhysicianTelephoneNumbers", idt.phone.replace(" ", "-")[:-2] + "99", planted, "phone")
    _put(ds, "InstitutionName", idt.institution, planted, "institution")
    _put(ds, "InstitutionAddress", idt.institution_address, planted, "address")
    _put(ds, "InstitutionalDepartmentName", idt.department, planted, "institution")
    _put(ds, "StationName", idt.station_name, planted, "device")
    _put(ds, "DeviceSerialNumber", idt.device_serial, planted, "device")


def _plant_free_text(ds: Dataset, planted: PlantedSet, idt: Identity, rng: random.Random) -> None:
    """Identifiers between clinical words, in every free-text slot, in several date and name styles."""
    region, reason, finding = rng.choice(_CLINICAL)
    b = idt.birth_date
    texts = {
        "StudyDescription": (f"{region} {reason} {idt.family} {idt.patient_id}", ["family", "patient_id"]),
        "SeriesDescription": (f"Axial {region} {b:%Y-%m-%d} {idt.given}", ["birth", "given"]),
        "ProtocolName": (
            f"{region} {reason} {idt.given} {idt.family} {b:%d.%m.%Y}",
            ["given_family", "birth"],
        ),
        "RequestedProcedureDescription": (f"{region} {finding} call {idt.phone}", ["phone"]),
        "ImageComments": (
            f"{finding} unchanged. Patient {idt.family.upper()}, {idt.given} (MRN {idt.patient_id}, "
            f"DOB {b:%m/%d/%Y}) lives at {idt.address}; phone {idt.phone}. Acc {idt.accessions[0]}.",
            ["family", "patient_id", "birth", "address", "phone"],
        ),
        "AdditionalPatientHistory": (
            f"Known {finding} since {b:%Y}. Referred by {idt.staff['referring'].split('^')[0]} "
            f"from {idt.institution}; born {b:%Y%m%d}; mother's maiden name {idt.other_names[0].split('^')[0]}.",
            ["staff", "institution", "birth", "other_name"],
        ),
        "PatientComments": (
            f"{idt.given} {idt.family} prefers morning slots; reach at {idt.phone}, {idt.street}, {idt.city}. "
            f"Insurance {idt.other_ids[1]}.",
            ["given_family", "phone", "address", "other_id"],
        ),
    }
    for keyword, (text, parts) in texts.items():
        setattr(ds, keyword, text)
        for part in parts:
            for value, kind in _text_part(idt, part):
                planted.add(value, kind, keyword)


def _text_part(idt: Identity, part: str) -> list[tuple[str, str]]:
    return {
        "family": [(idt.family, "name")],
        "given": [(idt.given, "name")],
        "given_family": [(f"{idt.family}^{idt.given}", "name")],
        "patient_id": [(idt.patient_id, "id")],
        "birth": [(idt.birth_date.isoformat(), "date")],
        "phone": [(idt.phone, "phone")],
        "address": [(idt.street, "address"), (idt.city, "address")],
        "staff": [(idt.staff["referring"].split("^")[0], "staff")],
        "institution": [(idt.institution, "institution")],
        "other_name": [(idt.other_names[0].split("^")[0], "name")],
        "other_id": [(idt.other_ids[1], "id")],
    }[part]


def _plant_uids(
    ds: Dataset, planted: PlantedSet, idt: Identity, study: int, uid_map: dict[str, str], rng: random.Random
) -> None:
    _put(ds, "StudyInstanceUID", idt.study_uids[study], planted, "uid")
    if not ds.get("SeriesInstanceUID"):  # a few real files lack it; every object here has one
        _put(ds, "SeriesInstanceUID", uid_map.setdefault(f"series#{study}", _uid(rng)), planted, "uid")
    _put(ds, "FrameOfReferenceUID", idt.frame_of_reference_uids[study], planted, "uid")
    sop = str(ds.SOPInstanceUID)  # already replaced by _replace_everywhere
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    planted.add(sop, "uid", "file_meta.MediaStorageSOPInstanceUID")
    ds.file_meta.SourceApplicationEntityTitle = (
        _fold(idt.city).upper().replace(" ", "_")[:16]
    )  # the site's AE
    planted.add(idt.city, "address", "file_meta.SourceApplicationEntityTitle")
    patient_ref = Dataset()
    patient_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.1.1"  # Detached Patient Management (retired)
    patient_ref.ReferencedSOPInstanceUID = _uid(rng)
    planted.add(
        patient_ref.ReferencedSOPInstanceUID, "uid", "ReferencedPatientSequence[0].ReferencedSOPInstanceUID"
    )
    ds.ReferencedPatientSequence = Sequence([patient_ref])


UNKNOWN_CREATOR = "ACME PACS EXPORT 2.1"
VENDOR_CREATOR = "SIEMENS MR HEADER"


def _plant_private(ds: Dataset, planted: PlantedSet, idt: Identity) -> None:
    """An unknown creator in two odd groups (text VRs, bytes, a nested SQ) and a known vendor block."""
    block = ds.private_block(0x0013, UNKNOWN_CREATOR, create=True)
    block.add_new(0x10, "LO", idt.patient_name.replace("^", " ").strip())
    block.add_new(0x11, "LO", idt.patient_id)
    block.add_new(0x12, "LT", f"DOB {idt.birth_date:%d.%m.%Y}, {idt.address}")
    block.add_new(0x13, "OB", f"\x00PN={idt.family}^{idt.given}\x00".encode() + b"\x00")
    inner = Dataset()
    inner.PatientID = idt.other_ids[0]
    inner.PatientName = f"{idt.family}^{idt.given}"
    block.add_new(0x14, "SQ", Sequence([inner]))
    base = f"(0013,{block.block_start >> 8:02X}"
    for value, kind, el in (
        (idt.family, "name", "10"),
        (idt.given, "name", "10"),
        (idt.patient_id, "id", "11"),
        (idt.birth_date.isoformat(), "date", "12"),
        (idt.street, "address", "12"),
        (idt.family, "name", "13"),
        (idt.other_ids[0], "id", "14"),
        (f"{idt.family}^{idt.given}", "name", "14"),
    ):
        planted.add(value, kind, f"{UNKNOWN_CREATOR}:{base}{el})")
    block2 = ds.private_block(0x0015, UNKNOWN_CREATOR, create=True)
    block2.add_new(0x01, "SH", idt.accessions[0])
    planted.add(idt.accessions[0], "id", f"{UNKNOWN_CREATOR}:(0015,xx01)")
    vendor = ds.private_block(0x0019, VENDOR_CREATOR, create=True)
    vendor.add_new(0x08, "CS", "IMAGE NUM 4")  # harmless vendor value
    vendor.add_new(0x0B, "DS", "40")
    vendor.add_new(0x92, "LO", f"{idt.family}^{idt.given}")  # not on any safe list
    vendor.add_new(0x93, "LO", idt.patient_id)
    planted.add(f"{idt.family}^{idt.given}", "name", f"{VENDOR_CREATOR}:(0019,xx92)")
    planted.add(idt.patient_id, "id", f"{VENDOR_CREATOR}:(0019,xx93)")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _plant_deep_tree(
    ds: Dataset, planted: PlantedSet, idt: Identity, study_date: date, rng: random.Random
) -> None:
    """An SR-like content tree with PNAME, TEXT, DATE and UIDREF items three levels down."""
    pname, text, when, uidref = Dataset(), Dataset(), Dataset(), Dataset()
    for item, vtype, code in (
        (pname, "PNAME", ("121008", "DCM", "Person Observer Name")),
        (text, "TEXT", ("121071", "DCM", "Finding")),
        (when, "DATE", ("111060", "DCM", "Study Date")),
        (uidref, "UIDREF", ("121232", "DCM", "Source series for image processing operation")),
    ):
        item.RelationshipType = "CONTAINS"
        item.ValueType = vtype
        item.ConceptNameCodeSequence = Sequence([_code(*code)])
    pname.PersonName = idt.patient_name
    text.TextValue = (
        f"Nodule reviewed with {idt.given} {idt.family} (MRN {idt.patient_id}) on {study_date:%d.%m.%Y}; "
        f"callback {idt.phone}."
    )
    when.Date = study_date.strftime("%Y%m%d")
    uidref.UID = _uid(rng)
    inner = Dataset()
    inner.RelationshipType, inner.ValueType, inner.ContinuityOfContent = "CONTAINS", "CONTAINER", "SEPARATE"
    inner.ConceptNameCodeSequence = Sequence([_code("121070", "DCM", "Findings")])
    inner.ContentSequence = Sequence([pname, text, when, uidref])
    outer = Dataset()
    outer.RelationshipType, outer.ValueType, outer.ContinuityOfContent = "CONTAINS", "CONTAINER", "SEPARATE"
    outer.ConceptNameCodeSequence = Sequence([_code("121064", "DCM", "Current Procedure Descriptions")])
    outer.ContentSequence = Sequence([inner])
    if "ContentSequence" not in ds:
        ds.ContentSequence = Sequence()
    k = len(ds.ContentSequence)
    ds.ContentSequence.append(outer)
    base = f"ContentSequence[{k}].ContentSequence[0].ContentSequence"
    planted.add(idt.patient_name, "name", f"{base}[0].PersonName")
    for value, kind in ((f"{idt.family}^{idt.given}", "name"), (idt.patient_id, "id"), (idt.phone, "phone")):
        planted.add(value, kind, f"{base}[1].TextValue")
    planted.add(study_date.isoformat(), "date", f"{base}[1].TextValue")
    planted.add(study_date.isoformat(), "date", f"{base}[2].Date")
    planted.add(uidref.UID, "uid", f"{base}[3].UID")


def _plant_overlays_curves_icon(ds: Dataset, planted: PlantedSet, idt: Identity) -> None:
    for group in (0x6000, 0x6002):
        ds.add_new((group << 16) | 0x0010, "US", 8)  # Overlay Rows
        ds.add_new((group << 16) | 0x0011, "US", 8)  # Overlay Columns
        ds.add_new((group << 16) | 0x0040, "CS", "G")
        ds.add_new((group << 16) | 0x0050, "SS", [1, 1])
        ds.add_new((group << 16) | 0x0100, "US", 1)
        ds.add_new((group << 16) | 0x0102, "US", 0)
        ds.add_new((group << 16) | 0x0022, "LO", f"Marker {idt.family} {idt.given}")
        ds.add_new((group << 16) | 0x1500, "LO", f"ROI {idt.patient_id}")
        ds.add_new((group << 16) | 0x3000, "OW", b"\x00\x18\x3c\x7e\x7e\x3c\x18\x00")
        planted.add(f"{idt.family}^{idt.given}", "name", f"({group:04X},0022) OverlayDescription")
        planted.add(idt.patient_id, "id", f"({group:04X},1500) OverlayLabel")
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x50000010, "US", 2)  # Number of Points
    ds.add_new(0x50000020, "CS", "TAC")
    ds.add_new(0x50000103, "US", 0)  # Data Value Representation
    ds.add_new(0x50002500, "LO", f"{idt.family} {idt.patient_id}")  # Curve Label
    ds.add_new(0x50000022, "LO", f"Uptake curve {idt.given}")  # Curve Description
    ds.add_new(0x50003000, "OW", b"\x01\x00\x02\x00")
    planted.add(idt.family, "name", "(5000,2500) CurveLabel")
    planted.add(idt.patient_id, "id", "(5000,2500) CurveLabel")
    planted.add(idt.given, "name", "(5000,0022) CurveDescription")
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return  # an icon in an encapsulated syntax would have to be compressed too; not worth the risk
    icon = Dataset()
    icon.Rows, icon.Columns, icon.SamplesPerPixel = 8, 8, 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated, icon.BitsStored, icon.HighBit, icon.PixelRepresentation = 8, 8, 7, 0
    burned = f"{idt.family}|{idt.patient_id}".encode()[:64]  # "burned in": the bytes spell the identity
    icon.PixelData = burned + b"\x00" * (64 - len(burned))
    icon["PixelData"].VR = "OB"
    ds.IconImageSequence = Sequence([icon])
    planted.add(idt.patient_id, "id", "IconImageSequence[0].PixelData")


def _plant_signature_and_padding(
    ds: Dataset, planted: PlantedSet, idt: Identity, study_date: date, rng: random.Random
) -> None:
    sig = Dataset()
    sig.MACIDNumber = 1
    sig.DigitalSignatureUID = _uid(rng)
    sig.DigitalSignatureDateTime = study_date.strftime("%Y%m%d") + "120000"
    sig.CertificateType = "X509_1993_SIG"
    sig.CertificateOfSigner = f"CN={idt.given} {idt.family},O={idt.institution}".encode()
    sig.Signature = bytes(rng.getrandbits(8) for _ in range(32))
    ds.DigitalSignaturesSequence = Sequence([sig])
    planted.add(sig.DigitalSignatureUID, "uid", "DigitalSignaturesSequence[0].DigitalSignatureUID")
    planted.add(study_date.isoformat(), "date", "DigitalSignaturesSequence[0].DigitalSignatureDateTime")
    planted.add(f"{idt.family}^{idt.given}", "name", "DigitalSignaturesSequence[0].CertificateOfSigner")
    planted.add(idt.institution, "institution", "DigitalSignaturesSequence[0].CertificateOfSigner")
    mac = Dataset()
    mac.MACIDNumber = 1
    mac.MACCalculationTransferSyntaxUID = ExplicitVRLittleEndian
    mac.MACAlgorithm = "RIPEMD160"
    mac.DataElementsSigned = [0x00100010, 0x00100020]
    ds.MACParametersSequence = Sequence([mac])
    padding = f"{idt.patient_name}|{idt.patient_id}".encode()
    ds.DataSetTrailingPadding = padding + b"\x00" * (len(padding) % 2)
    planted.add(idt.patient_name, "name", "DataSetTrailingPadding")
    planted.add(idt.patient_id, "id", "DataSetTrailingPadding")


# ----- corpus -----------------------------------------------------------------------------------


def pydicom_data_files(pattern: str = "**/*") -> list[str]:
    """pydicom's own test files and the installed pydicom-data package's, as ``get_testdata_files``
    lists them, without its download of files missing or changed locally (offline, that waited 30 s
    for each call and found nothing)."""
    from pydicom.data import data_manager

    files = [str(p) for p in Path(data_manager.DATA_ROOT, "test_files").glob(pattern) if p.is_file()]
    # pydicom-data's files are kept only where they match its published hashes, as pydicom does (a
    # private helper: without it, on another pydicom release, every local file is kept)
    intact = getattr(data_manager, "_check_data_hash", lambda _path: True)
    for lib, source in data_manager.external_data_sources().items():
        paths = source.get_paths(pattern, data_manager.DataTypes.DATASET)
        files += [p for p in paths if lib != "pydicom-data" or intact(p)]
    return sorted({f for f in files if not f.endswith(".py")})


def usable_test_files(max_bytes: int = 2_000_000) -> list[Path]:
    """pydicom-data's real files that carry a SOP class and file meta and are small enough."""
    out = []
    for name in pydicom_data_files():
        path = Path(name)
        if not path.is_file() or path.stat().st_size > max_bytes:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        meta = getattr(ds, "file_meta", None)
        if (
            "SOPClassUID" not in ds
            or "SOPInstanceUID" not in ds
            or meta is None
            or "TransferSyntaxUID" not in meta
        ):
            continue
        out.append(path)
    return out


def _variety_order(paths: list[Path], rng: random.Random) -> list[Path]:
    """Round-robin over (modality, transfer syntax) buckets so even a small corpus is varied."""
    buckets: dict[tuple[str, str], list[Path]] = {}
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        key = (str(ds.get("Modality", "")), str(ds.file_meta.TransferSyntaxUID))
        buckets.setdefault(key, []).append(path)
    keys = sorted(buckets)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(buckets[key])
    ordered = []
    while any(buckets.values()):
        for key in keys:
            if buckets[key]:
                ordered.append(buckets[key].pop())
    return ordered


def _write(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)


def make_planted_corpus(
    out_dir: str | Path, n_files: int, seed: int, *, files_per_patient: int = 4
) -> list[tuple[Path, PlantedSet]]:
    """Write ``n_files`` planted copies of pydicom-data's real files under ``out_dir``.

    Files are grouped by patient (``files_per_patient`` each, alternating between the patient's two
    studies); every file after a study's first references the previous one (ReferencedImageSequence).
    Folders are named after the patient (family name and ID), as hospital exports are, so a tool that
    keeps input paths leaks. A ``manifest.json`` beside the files lists each path and its PlantedSet.
    """
    out = Path(out_dir)
    rng = random.Random(seed)
    sources = _variety_order(usable_test_files(), rng)
    corpus: list[tuple[Path, PlantedSet]] = []
    uid_map: dict[str, str] = {}
    identity: Identity | None = None
    last_in_study: dict[int, PlantedSet] = {}
    index = 0
    while len(corpus) < n_files:
        if index >= len(sources):
            index = 0  # more files than sources: reuse them under new identities
        source = sources[index]
        index += 1
        if identity is None or len(corpus) % files_per_patient == 0:
            identity = Identity.random(rng)
            last_in_study = {}
            uid_map = {}
        study = len(corpus) % files_per_patient % 2
        try:
            ds = pydicom.dcmread(source)
            planted = plant_identifiers(ds, rng, identity=identity, study=study, uid_map=uid_map)
            previous = last_in_study.get(study)
            if previous is not None:
                _add_reference(ds, planted, previous, rng)
            folder = f"{_fold(identity.family).replace(' ', '_')}_{identity.patient_id}"
            path = out / folder / identity.accessions[study] / f"{len(corpus):05d}.dcm"
            _write(ds, path)
            pydicom.dcmread(path)  # must read back
        except Exception:
            uid_map.clear()
            continue  # pydicom cannot write this one back with the additions: skip it
        last_in_study[study] = planted
        corpus.append((path, planted))
    manifest = [{"path": str(p.relative_to(out)), "planted": s.to_dict()} for p, s in corpus]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return corpus


def _add_reference(ds: Dataset, planted: PlantedSet, target: PlantedSet, rng: random.Random) -> None:
    item = Dataset()
    item.ReferencedSOPClassUID = target.sop_class_uid
    item.ReferencedSOPInstanceUID = target.sop_instance_uid
    if "ReferencedImageSequence" not in ds:
        ds.ReferencedImageSequence = Sequence()
    k = len(ds.ReferencedImageSequence)
    ds.ReferencedImageSequence.append(item)
    path = f"ReferencedImageSequence[{k}].ReferencedSOPInstanceUID"
    planted.references.append(Reference(path, target.sop_instance_uid))
    planted.add(target.sop_instance_uid, "uid", path)


def load_manifest(corpus_dir: str | Path) -> list[tuple[Path, PlantedSet]]:
    """The (path, PlantedSet) list that ``make_planted_corpus`` wrote into ``corpus_dir``."""
    root = Path(corpus_dir)
    data = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    return [(root / row["path"], PlantedSet.from_dict(row["planted"])) for row in data]
