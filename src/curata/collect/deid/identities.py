"""What the site knows of its patients and of itself, sealed on site: every input's identifiers clean the
free text of every other input of the same patient, in this run and in later ones.

Two kinds of record, each AES-GCM sealed in the vault folder ``clinical/`` (``Vault``, the site key):

- ``identifiers``: one patient's identifying values (``Identifiers``' sets: name parts, IDs, phones,
  address parts, dates), keyed by the patient ID in a keyed form (HMAC-SHA256 with the site key), so
  that the vault's plain text does not even hold the ID. Written by the DICOM engine for the patient of
  every instance it releases (PatientName, other names, PatientID, other IDs, accession number, birth
  date, address, telephone) and by the clinical readers for every patient of a table or FHIR export.
- ``site``: names of the site's people other than patients (the physicians and operators of its images,
  the practitioners and related persons of its FHIR exports) and of its institutions. They identify the
  site and its patients' care wherever they stand, so every clinical text of the site is cleaned of them
  (``clinical.deid.SiteNames``).

Older vaults hold ``identifiers`` records with the patient ID itself (``patient_id``): read alike.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword

from curata.collect.deid.text import Identifiers
from curata.collect.deid.vault import Vault

FOLDER = "clinical"  # under the vault folder
_SETS = ("words", "short_names", "cjk_names", "dates", "strong")


def _tags(*keywords: str) -> frozenset[int]:
    out = set()
    for k in keywords:
        tag = tag_for_keyword(k)
        assert tag is not None, k
        out.add(int(tag))
    return frozenset(out)


# the DICOM elements whose values are remembered, by what they are
PATIENT_NAMES = _tags("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
PATIENT_IDS = _tags("PatientID", "OtherPatientIDs", "AccessionNumber")
PATIENT_BIRTH = _tags("PatientBirthDate")
PATIENT_ADDRESSES = _tags("PatientAddress")
PATIENT_PHONES = _tags("PatientTelephoneNumbers", "PatientTelecomInformation")
STAFF_NAMES = _tags(
    "ReferringPhysicianName", "ConsultingPhysicianName", "PhysiciansOfRecord", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician", "ScheduledPerformingPhysicianName",
    "VerifyingObserverName", "HumanPerformerName",
)  # fmt: skip
INSTITUTIONS = _tags("InstitutionName")
REMEMBERED_TAGS = (
    PATIENT_NAMES
    | PATIENT_IDS
    | PATIENT_BIRTH
    | PATIENT_ADDRESSES
    | PATIENT_PHONES
    | STAFF_NAMES
    | INSTITUTIONS
)


def dicom_identifiers(values: Iterable[tuple[int, str]]) -> Identifiers:
    """The patient's identifiers among (tag, value) pairs of ``REMEMBERED_TAGS``, read as the DICOM
    engine reads them (``engine._collect``)."""
    ids = Identifiers()
    for tag, text in values:
        if tag in PATIENT_NAMES:
            ids.add_strong(text)
            ids.add_name(text)
        elif tag in PATIENT_IDS:
            ids.add_strong(text)
            ids.add_word(text, min_len=2 if tag == 0x00100020 else 4)
        elif tag in PATIENT_BIRTH:
            ids.add_birth_date(text)
        elif tag in PATIENT_ADDRESSES:
            ids.add_address(text)
        elif tag in PATIENT_PHONES:
            ids.add_word(text)
    return ids


class SiteIdentities:
    """The site's sealed identities (see the module), read once per process and added to as inputs
    are de-identified. ``get(patient_id)``: that patient's identifiers; ``people``, ``institutions``:
    the site's names."""

    def __init__(self, vault_folder: Path, key: bytes) -> None:
        self._vault = Vault(Path(vault_folder) / FOLDER, key)
        self._key = key
        self.patients: dict[str, Identifiers] = {}  # keyed patient ID -> identifiers
        self.people: set[str] = set()
        self.institutions: set[str] = set()
        self._read = False
        self._written: set[Any] = set()  # what this process sealed already (one record per value set)

    def keyed(self, patient_id: str) -> str:
        """The patient ID as the records name it: keyed, telling nothing without the site key."""
        return hmac.digest(self._key, b"identities\0" + patient_id.strip().encode(), "sha256").hex()

    def recall(self) -> SiteIdentities:
        """Read every sealed record (once)."""
        if self._read:
            return self
        self._read = True
        for rec in self._vault.records():
            kind = rec.get("kind")
            if kind == "identifiers":
                who = rec.get("patient")
                if not isinstance(who, str):
                    old = rec.get("patient_id")
                    who = self.keyed(old) if isinstance(old, str) else None
                if who is None:
                    continue
                sealed = Identifiers()
                for k in _SETS:
                    getattr(sealed, k).update(str(v) for v in rec.get(k) or ())
                self.patients.setdefault(who, Identifiers()).update(sealed)
            elif kind == "site":
                self.people.update(str(v) for v in rec.get("people") or ())
                self.institutions.update(str(v) for v in rec.get("institutions") or ())
        return self

    def get(self, patient_id: str) -> Identifiers | None:
        """Every identifier the site knows for this patient ID (None: none)."""
        return self.patients.get(self.keyed(patient_id))

    def remember(
        self,
        patients: Mapping[str, Identifiers],
        *,
        people: Iterable[str] = (),
        institutions: Iterable[str] = (),
        keep: bool = True,
    ) -> None:
        """Add these patients' identifiers (patient ID -> identifiers) and site names, and seal them.
        ``keep`` False: sealed only, not kept in this process (a DICOM worker never reads them)."""
        records: list[dict[str, Any]] = []
        for pid, ids in patients.items():
            if not pid.strip():
                continue
            who = self.keyed(pid)
            if keep:
                self.patients.setdefault(who, Identifiers()).update(ids)
            rec = {"kind": "identifiers", "patient": who} | {k: sorted(getattr(ids, k)) for k in _SETS}
            records.append(rec)
        new_people = {p.strip() for p in people if p.strip()} - self.people
        new_places = {i.strip() for i in institutions if i.strip()} - self.institutions
        if new_people or new_places:
            self.people |= new_people
            self.institutions |= new_places
            records.append({"kind": "site", "people": sorted(new_people), "institutions": sorted(new_places)})
        if records:
            self._vault.append(records)

    def remember_dicom(self, patient_id: str, values: list[tuple[int, str]]) -> None:
        """What one DICOM instance said of its patient and of the site (``REMEMBERED_TAGS`` values):
        sealed once per distinct set in this process (a series repeats it in every instance)."""
        seen = (patient_id, frozenset(values))
        if seen in self._written:
            return
        if len(self._written) > 100_000:
            self._written.clear()
        self._written.add(seen)
        mine = [(t, v) for t, v in values if t not in STAFF_NAMES and t not in INSTITUTIONS]
        self.remember(
            {patient_id: dicom_identifiers(mine)} if patient_id.strip() and mine else {},
            people=[v for t, v in values if t in STAFF_NAMES],
            institutions=[v for t, v in values if t in INSTITUTIONS],
            keep=False,
        )


__all__ = ["FOLDER", "REMEMBERED_TAGS", "SiteIdentities", "dicom_identifiers"]
