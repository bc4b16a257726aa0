"""FHIR R4 / R4B / R5 resources (JSON Bundles and NDJSON bulk exports), validated with fhir.resources.

Patient resources give the key (the identifier the images carry as PatientID) and every identifying
value (names, telecom, addresses, identifiers, birth date) for cleaning and the gate; they are never
stored themselves. Condition, Observation, Procedure, MedicationStatement, Specimen and DiagnosticReport
become OMOP rows through the same builder as CSV rows. A refused resource is listed with its line (NDJSON)
or entry number (Bundle) and the reason, never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from curata.collect.clinical._fhir_site_elements import ELEMENTS, ELEMENTS_IN, PERSON_TYPES, PLACE_TYPES
from curata.collect.clinical._records import ClinicalBatch, RecordBuilder, RowError, as_utf8
from curata.collect.clinical.deid import ClinicalDeidentifier, KnownIdentities, PatientIdentity, SiteNames
from curata.collect.clinical.mapping import FhirMap
from curata.collect.deid.pseudonyms import DEFAULT_PREFIX
from curata.collect.deid.text import Identifiers
from curata.errors import InputError

SUPPORTED = (
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationStatement",
    "Specimen",
    "DiagnosticReport",
)


def _validate(res: dict[str, Any]) -> None:
    """R4/R4B first (R4 resources of these types read as R4B), then R5; the first error names fields only."""
    from fhir.resources import get_fhir_model_class as r5
    from fhir.resources.R4B import get_fhir_model_class as r4b
    from pydantic import ValidationError

    rtype = res.get("resourceType")
    first: ValidationError | None = None
    for getter in (r4b, r5):
        try:
            getter(rtype).model_validate(res)
            return
        except ValidationError as exc:
            first = first or exc
        except (KeyError, ValueError) as exc:
            raise RowError(f"resourceType: unknown ({type(exc).__name__})") from None
    assert first is not None
    where = "; ".join(f"{_where(e)}: {e.get('type', 'invalid')}" for e in first.errors()[:3])
    raise RowError(f"not a valid {rtype} resource ({where})")


_ELEMENT = re.compile(r"_?[a-z][A-Za-z0-9]{0,63}")


def _where(error: Any) -> str:
    """An error's place as the model's element names and list positions. An element the model does not
    define is named by the sender (``extra_forbidden``): it reads ``?``, as does anything not shaped like
    an element name, so that a key holding a name or an MRN never reaches a reason."""
    loc = list(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and loc:
        loc[-1] = "?"
    return ".".join(
        str(p) if isinstance(p, int) or (isinstance(p, str) and _ELEMENT.fullmatch(p)) else "?" for p in loc
    )


def iter_resources(raw: bytes, name: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line or entry number, resource, error) for a Bundle, a single resource or NDJSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # JSON is UTF-8 by the standard; some exports are not all the same
        text = as_utf8(raw).decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if name.lower().endswith(".ndjson") or (
        stripped.startswith("{") and "\n{" in stripped and _is_ndjson(text)
    ):
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                yield i, None, "not JSON"
                continue
            yield (
                i,
                obj if isinstance(obj, dict) else None,
                None if isinstance(obj, dict) else "not a resource",
            )
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON (line {exc.lineno})") from None
    if not isinstance(doc, dict) or "resourceType" not in doc:
        raise InputError("not a FHIR resource or Bundle (no resourceType)")
    if doc["resourceType"] == "Bundle":
        for i, entry in enumerate(doc.get("entry") or [], start=1):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):  # a string, a number, a list where the resource goes
                yield i, None, "entry without a resource"
                continue
            if isinstance(entry.get("fullUrl"), str):
                res = {**res, "_curata_full_url": entry["fullUrl"]}
            yield i, res, None
    else:
        yield 1, doc, None


def _is_ndjson(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        json.loads(first)
        return True
    except json.JSONDecodeError:
        return False


def looks_like_fhir(raw: bytes) -> bool:
    head = raw[:4096].lstrip()
    return head.startswith(b"{") and b'"resourceType"' in head


# -- patients -----------------------------------------------------------------------------------------


def _dicts(node: Any) -> list[dict[str, Any]]:
    """The objects of a repeating element (one object alone counts too): the first pass reads Patients
    before they are validated, so a string or a number where an element goes must not stop it."""
    if isinstance(node, dict):
        return [node]
    return [n for n in node if isinstance(n, dict)] if isinstance(node, list) else []


def _patient_id(res: dict[str, Any], mapping: FhirMap) -> str | None:
    idents = [
        i for i in _dicts(res.get("identifier")) if isinstance(i.get("value"), str | int) and i["value"]
    ]
    if mapping.patient_id_system:
        for i in idents:
            if i.get("system") == mapping.patient_id_system:
                return str(i["value"])
    for i in idents:
        codes = [c.get("code") for t in _dicts(i.get("type")) for c in _dicts(t.get("coding"))]
        if "MR" in codes:
            return str(i["value"])
    if idents:
        return str(idents[0]["value"])
    return str(res["id"]) if res.get("id") else None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _collect_patient(res: dict[str, Any], who: PatientIdentity, *, own: bool = True) -> None:
    """Every identifying value of a Patient, read before it is validated: a name given as a bare string
    (where HumanNames go) is a name all the same; other shapes that are no FHIR are passed over (the
    resource is refused when validated). The same for a person written as a contained resource (``own``
    False: its local id is no identifier), and for names, addresses, telecoms and identifiers given in
    extensions (``_collect_extensions``)."""
    ids = who.ids
    names = res.get("name")
    bare = [names] if isinstance(names, str) else names if isinstance(names, list) else []
    for s in bare:
        if isinstance(s, str):
            ids.add_name(s)
    for name in _dicts(names):
        _collect_name(name, ids)
    for contact in _dicts(res.get("contact")):
        for s in _strings(contact.get("name") or {}):
            ids.add_name(s)
        for s in _strings([contact.get("telecom"), contact.get("address")]):
            ids.add_word(s)
    for gp in _dicts(res.get("generalPractitioner")):  # the patient's own doctor identifies them too
        if isinstance(gp.get("display"), str):
            ids.add_name(re.sub(r"^(?:Dr|Prof)\.?\s+", "", gp["display"]))
    for t in _dicts(res.get("telecom")):
        if isinstance(t.get("value"), str):
            ids.add_word(t["value"])
    for a in _dicts(res.get("address")):
        _collect_address(a, ids)
    for i in _dicts(res.get("identifier")):
        if isinstance(i.get("value"), str | int) and i["value"]:
            ids.add_word(str(i["value"]), min_len=2)
    if own and isinstance(res.get("id"), str | int) and res["id"]:
        ids.add_word(str(res["id"]), min_len=2)
    if isinstance(res.get("birthDate"), str):
        ids.add_birth_date(res["birthDate"].replace("-", ""))
    _collect_extensions(res, ids)
    for inner in _dicts(res.get("contained")):
        _collect_contained(inner, who)


def _collect_name(name: dict[str, Any], ids: Identifiers) -> None:
    for s in _strings(
        {k: v for k, v in name.items() if k in ("family", "given", "text", "prefix", "suffix")}
    ):
        ids.add_name(s)


def _collect_address(a: dict[str, Any], ids: Identifiers) -> None:
    for k in ("line", "city", "district", "postalCode", "text"):
        for s in _strings(a.get(k)):
            if k in ("line", "text"):
                ids.add_address(s)
            else:
                ids.add_word(s)


def _collect_extensions(node: dict[str, Any], ids: Identifiers) -> None:
    """Values of a person's extensions, nested ones too, that identify them by their type (HumanName,
    Address, ContactPoint, Identifier: an emergency contact, a birthplace) or, for a string, by the
    extension's name (``patient-mothersMaidenName``, a sub-extension ``name``)."""
    for ext in _dicts(node.get("extension")) + _dicts(node.get("modifierExtension")):
        url = str(ext["url"]) if isinstance(ext.get("url"), str) else ""
        for key, value in ext.items():
            if key == "valueHumanName" and isinstance(value, dict):
                _collect_name(value, ids)
            elif key == "valueAddress" and isinstance(value, dict):
                _collect_address(value, ids)
            elif key in ("valueContactPoint", "valueIdentifier") and isinstance(value, dict):
                if isinstance(value.get("value"), str):
                    ids.add_word(value["value"], min_len=4)
            elif (
                key == "valueString"
                and isinstance(value, str)
                and url.rsplit("/", 1)[-1].lower().endswith("name")
            ):
                ids.add_name(value)
        _collect_extensions(ext, ids)


# Resources that describe a person: written contained in a resource about the patient (a relative, the
# patient again, a clinician), their names, addresses and telecoms identify the patient's record.
_PEOPLE = ("Patient", "RelatedPerson", "Person", "Practitioner")


def _collect_contained(res: dict[str, Any], who: PatientIdentity) -> None:
    if res.get("resourceType") in _PEOPLE:
        _collect_patient(res, who, own=False)


# Resources about the site's people and places: their names are the site's (``deid.identities``), every
# text of the site is cleaned of them, whichever patient it is about.
_SITE_PEOPLE = ("Practitioner", "RelatedPerson", "Person", "PractitionerRole")
_SITE_PLACES = ("Organization", "Location", "HealthcareService")
_SUBJECT_KEYS = frozenset({"subject", "patient", "beneficiary"})


def _human_names(node: Any) -> Iterator[str]:
    """A person's names as written in full: ``text``, or the given names then the family name."""
    if isinstance(node, str):
        yield node
        return
    for name in _dicts(node):
        if isinstance(name.get("text"), str):
            yield name["text"]
        given = [g for g in _dicts_or_strings(name.get("given")) if isinstance(g, str)]
        family = str(name["family"]) if isinstance(name.get("family"), str) else ""
        if given or family:
            yield " ".join([*given, family]).strip()


def _collect_site(
    res: dict[str, Any], deid: ClinicalDeidentifier, urls: Mapping[str, str] | None = None
) -> None:
    """The names of the site's people and places that one resource gives: a Practitioner's, a
    RelatedPerson's, an Organization's, and every name the resource writes of someone other than the
    patient (``_site_names``). ``urls``: the resource type of each Bundle entry's ``fullUrl``."""
    people: list[str] = []
    places: list[str] = []
    _site_names(res, people, places, urls or {})
    deid.learn_site(people, places)


def _site_names(res: dict[str, Any], people: list[str], places: list[str], urls: Mapping[str, str]) -> None:
    """Walks one resource, and the resources it contains, for the site's names: a person resource's
    names, a place's name and aliases, the display of a Reference that names a person or a place
    (``_names``: an Observation's performer, a note's ``authorReference``, an extension's
    ``valueReference`` to a Practitioner), an Annotation's ``authorString``, a HumanName and a
    ContactDetail's name. The display of a reference to anything else (a ``reasonReference``, a
    ``specimen``, a ``focus``, a ``medicationReference``, a Device) is what the resource is about, and a
    Coding's display what a code means: neither is a name. In a Patient, only its references (its
    doctor, its organisation): its own names are the patient's (``_collect_patient``)."""
    rt = res.get("resourceType")
    if rt in _SITE_PEOPLE:
        people += _human_names(res.get("name"))
    elif rt in _SITE_PLACES:
        places += [v for v in (res.get("name"), *_dicts_or_strings(res.get("alias"))) if isinstance(v, str)]
    patient = rt == "Patient"
    # a local reference (``#id``) points to a resource this one contains, ``#`` to this one
    local = {f"#{c['id']}": c.get("resourceType") for c in _dicts(res.get("contained")) if c.get("id")}
    targets = {**urls, **{k: v for k, v in {"#": rt, **local}.items() if isinstance(v, str)}}
    own = ELEMENTS_IN.get(rt, {}) if isinstance(rt, str) else {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            named = _names(node, key, own, targets)
            if named == "person":
                people.append(node["display"])
            elif named == "place":
                places.append(node["display"])
            elif not patient and _is_human_name(node, key):
                people.extend(_human_names(node))
            elif not patient and _is_contact_detail(node):
                people.append(node["name"])
            if isinstance(node.get("authorString"), str):
                people.append(node["authorString"])
            for k, v in node.items():
                if k == "contained":
                    for inner in _dicts(v):
                        _site_names(inner, people, places, targets)
                elif k == "reference" and isinstance(v, dict):
                    walk(v, key)  # an R5 CodeableReference's reference: the element is the parent's
                elif k not in _SUBJECT_KEYS:
                    walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(res, "")


def _dicts_or_strings(node: Any) -> list[Any]:
    return node if isinstance(node, list) else [node]


def _own_keys(node: dict[str, Any]) -> set[str]:
    """A node's element names, a primitive's extension (``_display``) counted as the element."""
    return {k[1:] if k.startswith("_") else k for k in node}


_HUMAN_NAME_ELEMENTS = frozenset(
    {"use", "text", "family", "given", "prefix", "suffix", "period", "id", "extension"}
)
_CONTACT_DETAIL_ELEMENTS = frozenset({"name", "telecom", "id", "extension"})
_HUMAN_NAME_KEYS = frozenset(
    {"name", "valueHumanName", "defaultValueHumanName", "fixedHumanName", "patternHumanName"}
)
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def _names(node: dict[str, Any], key: str, own: Mapping[str, str], targets: Mapping[str, str]) -> str | None:
    """'person' or 'place' where ``node`` is a Reference whose display names one of the site's people
    or places, else None. A reference that says what it points to (its ``type``; ``Practitioner/7``, an
    absolute URL; a contained ``#id`` or a Bundle entry's ``urn:uuid:``) names someone where that is a
    person or a place (``PERSON_TYPES``, ``PLACE_TYPES``: not a Device, not a Condition). One that says
    nothing of its target (a display alone, an identifier) names someone only under an element that FHIR
    types as a reference to people and places (``ELEMENTS``: ``author``, ``authorReference``,
    ``asserter``, ``actor``...; ``ELEMENTS_IN``: an Observation's ``performer``); under any other
    (``reasonReference``, ``focus``, ``specimen``, ``evidence.detail``, an extension's
    ``valueReference``) its display is what the resource is about."""
    if key in _SUBJECT_KEYS or not isinstance(node.get("display"), str):
        return None
    if "code" in node or "system" in node:
        return None  # a Coding: what a code means
    target = _target_type(node, targets)
    if target is not None:
        return "person" if target in PERSON_TYPES else "place" if target in PLACE_TYPES else None
    return own.get(key) or ELEMENTS.get(key)


def _target_type(node: dict[str, Any], targets: Mapping[str, str]) -> str | None:
    """The resource type a Reference says it points to (its ``type``, or a relative or absolute
    ``reference``: ``Condition/c1``, ``https://h/fhir/Condition/c1/_history/2``, a contained ``#id``
    or a Bundle entry's ``urn:uuid:`` found in ``targets``); None where it says none (a display alone,
    an identifier, a reference that resolves to nothing)."""
    kind = node.get("type")
    if isinstance(kind, str) and kind:
        name = kind.rstrip("/").rsplit("/", 1)[-1]
        if _RESOURCE_TYPE.fullmatch(name):
            return name
    ref = node.get("reference")
    if not isinstance(ref, str):
        return None
    if ref in targets:
        return targets[ref]
    if ref.startswith(("#", "urn:")):
        return None
    parts = [p for p in ref.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and _RESOURCE_TYPE.fullmatch(parts[-2]):
        return parts[-2]
    return None


def _is_human_name(node: dict[str, Any], key: str) -> bool:
    """A HumanName: its elements only, with a given or family name (or, where the element is a
    HumanName, a text: a CodeableConcept of a text alone is no name)."""
    if not node or not _own_keys(node) <= _HUMAN_NAME_ELEMENTS:
        return False
    return (
        "given" in node or "family" in node or (key in _HUMAN_NAME_KEYS and isinstance(node.get("text"), str))
    )


def _is_contact_detail(node: dict[str, Any]) -> bool:
    return isinstance(node.get("name"), str) and _own_keys(node) <= _CONTACT_DETAIL_ELEMENTS


def _reference(res: dict[str, Any]) -> str | None:
    """The reference of a resource's subject (or patient), whatever shape the sender gave it."""
    for key in ("subject", "patient"):
        node = res.get(key)
        if isinstance(node, dict) and isinstance(node.get("reference"), str):
            return str(node["reference"])
    return None


# -- resources -----------------------------------------------------------------------------------------


def _concept(cc: Any) -> tuple[str | None, str | None, str | None]:
    """(code, system, display) of a CodeableConcept (or an R5 CodeableReference's concept)."""
    if not isinstance(cc, dict):
        return None, None, None
    if "concept" in cc:
        cc = cc["concept"] or {}
    for c in cc.get("coding") or []:
        if isinstance(c, dict) and c.get("code"):
            return str(c["code"]), c.get("system"), c.get("display") or cc.get("text")
    return None, None, cc.get("text")


def _when(res: dict[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = res.get(k)
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict) and isinstance(v.get("start"), str):
            return v["start"]
    return None


def _notes(res: dict[str, Any], *extra: str) -> str | None:
    parts = [str(n["text"]) for n in res.get("note") or [] if isinstance(n, dict) and n.get("text")]
    parts += [str(res[k]) for k in extra if isinstance(res.get(k), str)]
    return " | ".join(parts) if parts else None


def _stage(res: dict[str, Any]) -> str | None:
    for st in res.get("stage") or []:
        code, _system, display = _concept((st or {}).get("summary"))
        for v in (display, code):
            if v:
                return v
    return None


def _subject(res: dict[str, Any]) -> str | None:
    ref = (res.get("subject") or res.get("patient") or {}).get("reference")
    return str(ref) if ref else None


def _event(builder: RecordBuilder, res: dict[str, Any], who: PatientIdentity, line: int) -> None:
    rt = res["resourceType"]
    if rt == "Condition":
        code, system, display = _concept(res.get("code"))
        builder.event(
            "condition_occurrence",
            who,
            line,
            date=_when(res, "onsetDateTime", "onsetPeriod", "recordedDate"),
            end_date=_when(res, "abatementDateTime"),
            code=code,
            system=system,
            display=display,
            stage=_stage(res),
            note=_notes(res),
        )
    elif rt in ("Observation", "DiagnosticReport"):
        code, system, display = _concept(res.get("code"))
        value: Any = None
        unit = None
        if isinstance(res.get("valueQuantity"), dict):
            value = res["valueQuantity"].get("value")
            unit = res["valueQuantity"].get("code") or res["valueQuantity"].get("unit")
        elif isinstance(res.get("valueString"), str):
            value = res["valueString"]
        elif isinstance(res.get("valueCodeableConcept"), dict):
            v_code, _s, v_disp = _concept(res["valueCodeableConcept"])
            value = v_disp or v_code
        table = "measurement" if res.get("valueQuantity") else "observation"
        builder.event(
            table,
            who,
            line,
            date=_when(res, "effectiveDateTime", "effectivePeriod", "issued"),
            code=code,
            system=system,
            display=display,
            value=value,
            unit=unit,
            note=_notes(res, "conclusion"),
        )
    elif rt == "Procedure":
        code, system, display = _concept(res.get("code"))
        builder.event(
            "procedure_occurrence",
            who,
            line,
            date=_when(res, "performedDateTime", "performedPeriod", "occurrenceDateTime", "occurrencePeriod"),
            code=code,
            system=system,
            display=display,
            note=_notes(res),
        )
    elif rt == "MedicationStatement":
        med = res.get("medicationCodeableConcept") or res.get("medication")
        code, system, display = _concept(med)
        period = res.get("effectivePeriod") or {}
        builder.event(
            "drug_exposure",
            who,
            line,
            date=_when(res, "effectiveDateTime", "effectivePeriod", "dateAsserted"),
            end_date=period.get("end") if isinstance(period, dict) else None,
            code=code,
            system=system,
            display=display,
            note=_notes(res),
        )
    elif rt == "Specimen":
        code, system, _display = _concept(res.get("type"))
        coll = res.get("collection") or {}
        ident = next(
            (i.get("value") for i in res.get("identifier") or [] if isinstance(i, dict) and i.get("value")),
            None,
        ) or (res.get("accessionIdentifier") or {}).get("value")
        slide = None
        for c in res.get("container") or []:
            for i in (c or {}).get("identifier") or []:
                slide = slide or (i or {}).get("value")
        body = coll.get("bodySite") if isinstance(coll, dict) else None
        _bc, _bs, body_disp = _concept(body)
        builder.event(
            "specimen",
            who,
            line,
            date=_when(coll, "collectedDateTime", "collectedPeriod") or _when(res, "receivedTime"),
            code=code,
            system=system,
            source_id=ident,
            slide=slide,
            anatomic_site=body_disp or _bc,
            note=_notes(res),
        )


def deidentify_fhir(
    files: list[tuple[str, bytes, str]],
    mapping: FhirMap,
    key: bytes,
    *,
    known: KnownIdentities | None = None,
    site: SiteNames | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[list[ClinicalBatch], list[tuple[str, str]]]:
    """De-identify FHIR inputs together: Patients of any file resolve references of every file.

    ``files`` are (name, raw bytes, sha256). Returns one batch per readable file and (digest, reason)
    for files that are not FHIR at all. ``known``, ``site``: what the site knows of its patients and
    its people and institutions from other inputs (``deid.identities``); every text is cleaned of them,
    and of the site's people and places this export names (Practitioner, RelatedPerson, Organization
    resources, references' displays). ``prefix``: the site's ``pseudonym_prefix``.
    """
    deid = ClinicalDeidentifier(key, issuer=mapping.issuer, known=known, site=site, prefix=prefix)
    refs: dict[str, PatientIdentity] = {}
    parsed: list[tuple[str, list[tuple[int, dict[str, Any] | None, str | None]]]] = []
    failed: list[tuple[str, str]] = []
    for name, raw, digest in files:
        try:
            items = list(iter_resources(raw, name))
        except InputError as exc:
            failed.append((digest, exc.reason))
            continue
        except RecursionError:  # JSON nested deeper than the parser goes: no FHIR export is
            failed.append((digest, "not readable FHIR JSON: nested too deeply"))
            continue
        parsed.append((digest, items))
        for _line, res, _err in items:
            if res and res.get("resourceType") == "Patient":
                pid = _patient_id(res, mapping)
                if not pid:
                    continue
                who = deid.patient(pid)
                _collect_patient(res, who)
                for ref in (f"Patient/{res.get('id')}", res.get("_curata_full_url")):
                    if ref and ref != "Patient/None":
                        refs[str(ref)] = who
    urls = {  # what each Bundle entry's fullUrl is: a urn:uuid: reference says its target through it
        str(res["_curata_full_url"]): res["resourceType"]
        for _digest, items in parsed
        for _line, res, _err in items
        if res and isinstance(res.get("resourceType"), str) and res.get("_curata_full_url")
    }
    for _digest, items in parsed:  # people written contained in a resource about a patient of the export
        for _line, res, _err in items:
            if res:
                _collect_site(res, deid, urls)
            if res and res.get("resourceType") != "Patient" and res.get("contained"):
                found = refs.get(_reference(res) or "")
                if found is not None:
                    for inner in _dicts(res.get("contained")):
                        _collect_contained(inner, found)
    batches = []
    for digest, items in parsed:
        batch = ClinicalBatch(kind="fhir", input_digest=digest)
        builder = RecordBuilder(deid, batch, local_systems=mapping.local_systems)
        builder.know_identifiers(deid._patients.values())
        for line, res, err in items:
            batch.rows += 1
            if res is None:
                batch.quarantined.append((line, err or "not a resource"))
                continue
            res = {k: v for k, v in res.items() if k != "_curata_full_url"}
            rt = res.get("resourceType")
            if rt not in SUPPORTED:
                batch.quarantined.append((line, "resourceType: not one Curata collects"))
                continue
            try:
                _validate(res)
                if rt == "Patient":
                    pid = _patient_id(res, mapping)
                    if not pid:
                        raise RowError("identifier: the Patient has no identifier")
                    who = deid.patient(pid)
                    builder.person(who, sex=res.get("gender"), birth=res.get("birthDate"))
                    if isinstance(res.get("deceasedDateTime"), str):
                        builder.event(
                            "observation",
                            who,
                            line,
                            date=res["deceasedDateTime"],
                            code="419099009",
                            system="SNOMED",
                            display="Dead",
                            value="deceased",
                        )
                    continue
                subject = _subject(res)
                found = refs.get(subject or "")
                if found is None:
                    raise RowError("subject: no Patient resource with this reference in the export")
                who = found
                mark = {t: len(v) for t, v in batch.events.items()}
                try:
                    _event(builder, res, who, line)
                except RowError:
                    for t, n in mark.items():
                        del batch.events[t][n:]
                    raise
            except RowError as exc:
                batch.quarantined.append((line, f"{rt}: {exc}"))
        batches.append(batch)
    if batches:
        batches[0].identities = dict(deid._patients)
        batches[0].people, batches[0].institutions = set(deid.people), set(deid.institutions)
    return batches, failed
