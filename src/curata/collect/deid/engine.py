"""The de-identification engine: one DICOM instance in, one clean instance (or an error) out."""

from __future__ import annotations

import hashlib
import html
import io
import re
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import cache, lru_cache
from typing import Any, NoReturn, cast

import pydicom
import pydicom.config
import pydicom.filereader
from pydicom.charset import encode_string
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from curata import __version__
from curata.collect.deid import _located, _native, _rawpath, _reader, _writer, codestream, pixels
from curata.collect.deid.identities import REMEMBERED_TAGS, SiteIdentities
from curata.collect.deid.profile import BASIC_CODE, OPTIONS, Profile, load_profile
from curata.collect.deid.pseudonyms import (
    Pseudonymizer,
    age_between,
    cap_age,
    is_standard_uid,
    shift_date,
    shift_datetime,
)
from curata.collect.deid.table import action_maps, descriptor_tags, iod_allowed_tags, rules
from curata.collect.deid.text import (
    _SEP_BYTES,
    Identifiers,
    Matcher,
    ProbeGroups,
    clean_text,
    digit_keys,
    find_bounded,
    find_date,
    find_grouped_number,
    folded_bytes,
    group_by_part,
    identity_spans,
    key_runs,
    normalise,
    other_readings,
)
from curata.collect.deid.vault import Vault
from curata.errors import DeidError, InputError

CODE_VERSION = f"curata-deid {__version__}"
IMPLEMENTATION_CLASS_UID = "2.25.199402385611389430434395361398461927417"
IMPLEMENTATION_VERSION = f"CURATA_{__version__}"[:16]
DUMMY_TEXT = "REMOVED"
DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "CS": "REMOVED",
    "AE": "REMOVED",
    "UR": "",
    "PN": "REMOVED",
}
# Text that may hold free words. CS (coded strings: enumerated terms) and AE are not scrubbed but the
# final gate still scans them.
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})
NUMERIC_BINARY_VRS = frozenset(
    {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT", "OB", "OW", "OF", "OD", "OL", "OV", "UN"}
)
SAFE_PRIVATE_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "DS", "IS"})
# UI attributes that name a class or syntax rather than an instance: kept when standard, else remapped
# (a private SOP class keeps working through the same mapping everywhere it is named).
CLASS_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ReferencedSOPClassUIDInFile",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "SOPClassesInStudy",
        "ImplementationClassUID",
    }
)
# UI attributes naming a terminology: kept when standard or registered under HL7's OID root, else remapped.
SCHEME_UID_KEYWORDS = frozenset(
    {
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "ContextGroupExtensionCreatorUID",
        "TemplateExtensionCreatorUID",
    }
)
_HL7_ROOT = "2.16.840.1.113883."
# Coded strings whose values the standard enumerates: such a value is a term, never an identifier,
# even when a placeholder name happens to spell it (SR: PatientName "Last Name^First Name", ValueType
# PNAME). Any other CS or AE value that holds one of the patient's own identifiers becomes a dummy.
# fmt: off
ENUMERATED_CS: dict[str, frozenset[str]] = {
    "ValueType": frozenset(
        {"TEXT", "NUM", "CODE", "DATETIME", "DATE", "TIME", "UIDREF", "PNAME", "COMPOSITE", "IMAGE",
         "WAVEFORM", "SCOORD", "SCOORD3D", "TCOORD", "CONTAINER", "TABLE"}
    ),
    "RelationshipType": frozenset(
        {"CONTAINS", "HAS PROPERTIES", "HAS OBS CONTEXT", "HAS ACQ CONTEXT", "INFERRED FROM",
         "SELECTED FROM", "HAS CONCEPT MOD", "R-INFERRED FROM"}
    ),
    "ContinuityOfContent": frozenset({"SEPARATE", "CONTINUOUS"}),
    "CompletionFlag": frozenset({"PARTIAL", "COMPLETE"}),
    "VerificationFlag": frozenset({"UNVERIFIED", "VERIFIED"}),
    "PreliminaryFlag": frozenset({"PRELIMINARY", "FINAL"}),
    "PatientSex": frozenset({"M", "F", "O"}),
    "GraphicType": frozenset({"POINT", "MULTIPOINT", "POLYLINE", "CIRCLE", "ELLIPSE"}),
    "TemporalRangeType": frozenset({"POINT", "MULTIPOINT", "SEGMENT", "MULTISEGMENT", "BEGIN", "END"}),
}
# fmt: on
_ENUM_NORM = normalise(" ".join(" ".join(v) for v in ENUMERATED_CS.values()))
# PN and ID attributes naming the patient: their values are the patient's own identifiers, checked
# in every element, coded strings included, and never exempt from the gate.
_STRONG_TAGS = frozenset({0x00100010, 0x00100020, 0x00101000, 0x00101001, 0x00101002, 0x00101005,
                          0x00101060, 0x00080050, 0x00100030})  # fmt: skip
_BURNED_IN = 0x00280301
_PATIENT_ID, _PATIENT_NAME, _BIRTH_DATE, _AGE = 0x00100020, 0x00100010, 0x00100030, 0x00101010
_ICC_PROFILE = 0x00282000  # kept for its colour transform, at any depth (OpticalPathSequence of a slide)
# Not rows of Table E.1-1 but meaningless once signatures go (E.1-1 removes them): MAC Parameters Sequence.
_ALWAYS_REMOVE = frozenset({0x4FFE0001})
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_AGE_DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


@dataclass
class DeidRecord:
    """What the ledger appends for one file. Pseudonymous values only: nothing here identifies anyone."""

    input_sha256: str
    output_sha256: str
    profile: str
    options: list[str]
    profile_fingerprint: str
    code_version: str
    sop_class_uid: str
    patient_pseudonym: str
    study_uid: str
    series_uid: str
    sop_uid: str
    transfer_syntax: str
    # "kept" (the coded image bit for bit; codestream comments and application segments zeroed),
    # "cleaned" (masked and re-encoded, or what lies outside the image cleared), "none"
    pixels: str
    # who cleared pixels that may carry burned-in text: "ocr", "template", "ocr+template", "review",
    # "review+mask"; then "unused-bits" when bits outside Bits Stored held data, "trailing-bytes"
    # when Pixel Data went on after the last frame, "offset-table", "fragments", "re-encoded" (RLE)
    # for what compressed data held beside its frames (pixels.clear_outside_image);
    # "" when the class does not carry burned-in text
    pixels_cleared_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        # ``asdict`` without its generic deep copy (the one list is copied): a record per file
        out = {name: getattr(self, name) for name in _RECORD_FIELDS}
        out["options"] = list(self.options)
        return out


_RECORD_FIELDS = tuple(f.name for f in fields(DeidRecord))


@dataclass
class DeidResult:
    output_bytes: bytes
    dataset: Dataset
    record: DeidRecord
    reid: list[dict[str, Any]] = field(default_factory=list)  # for the vault only, never for OUTPUT

    @property
    def relative_path(self) -> str:
        """``<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm`` from pseudonymous values only."""
        r = self.record
        return safe_relative_path(r.patient_pseudonym, r.study_uid, r.series_uid, r.sop_uid)


class _ReadBack(DeidResult):
    """A result whose data set is read from its output bytes when first asked for (the raw lane
    builds only the few elements it changed)."""

    _read: Dataset | None = None

    @property
    def dataset(self) -> Dataset:
        if self._read is None:
            ds = _reader.read(self.output_bytes)
            self._read = ds if ds is not None else pydicom.dcmread(io.BytesIO(self.output_bytes))
        return self._read

    @dataset.setter
    def dataset(self, value: Dataset | None) -> None:
        self._read = value


_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_PSEUDONYM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def safe_relative_path(patient: str, study: str, series: str, sop: str) -> str:
    """A relative file path built from data, validated: every part a well-formed UID (or pseudonym),
    so no value can climb out of the folder (``..``), name an absolute path or hide a separator."""
    if not _PSEUDONYM_RE.fullmatch(patient):
        raise DeidError("the patient pseudonym cannot name a folder")
    for label, uid in (("Study", study), ("Series", series), ("SOP", sop)):
        if len(uid) > 64 or not _UID_RE.fullmatch(uid):
            raise DeidError(
                f"the {label} Instance UID is not a well-formed UID, so it cannot name a file",
                hint="with retain_uids the input's own UIDs name the files: fix them at the source",
            )
    return f"{patient}/{study}/{series}/{sop}.dcm"


# pydicom's validation modes are one global of the process; de-identifications run in several threads
# at once (the gateway's receivers, the server): the first to start saves them, the last to end puts
# them back. Each saving and restoring on its own left them off for the whole process (a thread saved
# the modes another had switched off, and restored that after it).
_QUIET_LOCK = threading.Lock()
_quiet: list[Any] = [0, None]  # threads inside, the modes found by the first


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom's per-value validation off while we work (a third of the time on small files): input
    values are not ours to judge, and the values we write are generated valid. Restored afterwards."""
    settings = pydicom.config.settings
    with _QUIET_LOCK:
        if _quiet[0] == 0:
            _quiet[1] = settings._reading_validation_mode, settings._writing_validation_mode
            settings.reading_validation_mode = settings.writing_validation_mode = pydicom.config.IGNORE
        _quiet[0] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet[0] -= 1
            if _quiet[0] == 0:
                settings._reading_validation_mode, settings._writing_validation_mode = _quiet[1]


@cache
def _vr_of(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


@cache
def _identifier_sources(profile: Profile) -> frozenset[int]:
    """Table rows whose values identify (not descriptors) and which the profile does not keep."""
    top, _ = action_maps(profile, "")
    descriptors = descriptor_tags()
    out = set()
    for tag in rules():
        if tag < 0 or tag in descriptors or top.get(tag) == "K":
            continue
        if _vr_of(tag) in {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "DA", "DT"}:
            out.add(tag)
    return frozenset(out)


@cache
def _address_tags() -> frozenset[int]:
    return frozenset(
        t
        for t, r in rules().items()
        if t > 0 and ("Address" in r.name or "Telecom" in r.name or "Telephone" in r.name)
    )


# A person's address (the patient's, a Person Identification's) also counts by its street as notes name
# it (``Identifiers.add_address``: Odeku St for 12 Adeola Odeku St, 建国路88号 for 北京市朝阳区建国路88号),
# as the clinical readers count a patient's address; other addresses and telecoms count as whole values.
_PERSON_ADDRESSES = frozenset({0x00101040, 0x00401102})  # PatientAddress, PersonAddress
# Every element the standard defines as a person's name: read as one (its parts looked for on their
# own) whatever VR the file gives it. PatientName sent as LO or UT is still the patient's name.
_NAME_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "PN")


@cache
def _safe_private() -> frozenset[tuple[str, int, int]]:
    from curata.collect.deid.table import _load_json

    return frozenset(
        (e["creator"].strip().upper(), int(e["group"], 16), int(e["element"], 16))
        for e in _load_json("safe_private.json")["entries"]
    )


class _Ctx:
    """Per-instance state of one de-identification."""

    def __init__(self, profile: Profile, pseudo: Pseudonymizer, sop_class: str) -> None:
        self.profile = profile
        self.pseudo = pseudo
        self.top, self.nested = action_maps(profile, sop_class)
        self.ids = Identifiers()
        self.remembered: list[tuple[int, str]] = []  # values the site keeps (deid.identities), sealed
        self.patient_id = ""
        self.patient_name = ""
        self.pseudonym = ""
        self.shift = 0
        self.full_dates = profile.has("retain_long_full_dates")
        self.mod_dates = profile.has("retain_long_modified_dates")
        self.clean_desc = profile.has("clean_descriptors")
        self.clean_struct = profile.has("clean_structured_content")
        self.retain_uids = profile.has("retain_uids")
        self.allowed: frozenset[int] | None = None  # research-strict: the IOD's attributes
        self.uid_map: dict[str, str] = {}
        self.coded: set[str] = set()  # CS values of the input: coded terms, not identifiers
        self.later: list[tuple[Dataset, int, bool]] = []  # text to clean once all identifiers are known
        self.encodings: list[str] = []
        self.codestream_kept: list[tuple[int, int]] = []  # metadata the codestream keeps (gate scans it)
        self._probe: tuple[Matcher, ProbeGroups, ProbeGroups] | None = None
        self._held: dict[tuple[bytes, bool], bool] = {}  # answers of holds_identifier for this matcher

    def holds_identifier(self, data: bytes, *, binary: bool = False) -> bool:
        """Whether raw bytes may hold one of the input's identifiers (any encoding, any spacing); an
        over-approximation used to skip decoding values that certainly hold none."""
        matcher = self.ids.matcher()
        if self._probe is None or self._probe[0] is not matcher:
            # the patient's groups are worked out once per identity; this file's UIDs are added
            subs, plain = matcher.probe_groups(tuple(self.encodings))
            uids = group_by_part({u.encode("ascii", "ignore") for u in self.ids.uids})
            if uids:
                plain = tuple(sorted((*plain, *uids), key=lambda group: group[0]))
            self._probe = (matcher, subs, plain)
            self._held.clear()
        key = (data, binary)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = self._holds(data, binary, matcher)
        return held

    def _holds(self, data: bytes, binary: bool, matcher: Matcher) -> bool:
        assert self._probe is not None
        _, subs, plain = self._probe
        if not subs and not plain and not matcher.cjk and not matcher.dates:
            return False
        if not binary and (not data.isascii() or data.find(b"\x1b") >= 0):
            # case folding beyond ASCII needs the decoded text, and ISO 2022 text (7-bit bytes after
            # its escapes: ヤマダ for the header's やまだ) is no ASCII text: look properly
            return True
        low = data.lower()
        size = len(low)
        # bytes.find rather than `in` on this module's hot paths: CPython 3.11 reads `needle in data`
        # as an integer test first, and builds and drops a TypeError (its message formatted) for
        # every bytes needle, about 2,000 instructions a test (2.7 % of a small file's command)
        for shortest, part, group in plain:
            if shortest > size:
                break
            if low.find(part) >= 0 and any(low.find(n) >= 0 for n in group):
                return True
        if matcher.dates and _held_date(low, matcher):
            return True
        norm = low.translate(None, _SEP_BYTES)
        size = len(norm)
        for shortest, part, group in subs:
            if shortest > size:
                break
            if norm.find(part) >= 0 and any(norm.find(n) >= 0 for n in group):
                return True
        return False


def _held_date(low: bytes, matcher: Matcher) -> bool:
    """Whether a written form of one of the input's dates may be in ``low`` (lower-cased bytes)."""
    dates = matcher.date_needles()
    runs = key_runs(low, marks=dates.marks)
    if not runs:
        return False
    keys = digit_keys(runs)
    for date in dates:
        if not keys.isdisjoint(date.byte_keys) and any(low.find(n) >= 0 for n in date.data_for(keys)):
            return True
    return False


class Deidentifier:
    """De-identifies DICOM instances with one site secret and one profile.

    All per-instance state lives in a per-call context, so one instance may serve many calls and
    threads (the gateway's associations); worker processes each build their own.
    """

    def __init__(
        self,
        key: bytes,
        profile: Profile | None = None,
        vault: Vault | None = None,
        *,
        ocr: bool = True,
        identities: SiteIdentities | None = None,
    ) -> None:
        self.profile = profile or load_profile()
        self.pseudo = Pseudonymizer(
            key,
            uid_root=self.profile.uid_root,
            prefix=self.profile.pseudonym_prefix,
            shift_range=self.profile.date_shift_days,
        )
        self.vault = vault
        # where the patient's identifiers and the site's names each released instance names are sealed
        # (the clinical inputs of the site are cleaned of them)
        self.identities = identities
        self.ocr = ocr
        self._sources = _identifier_sources(self.profile)
        # plain little-endian files are read by the lean reader (the same data set as dcmread's);
        # False reads every file with dcmread (the differential tests compare the two)
        self.fast_read = True
        # the raw lane (_rawpath): most elements copied from the input's bytes; False runs the whole
        # engine on every file (the differential tests compare the two)
        self.raw_lane = True
        # the native lane (_native): the common file from its bytes alone, no data set; False leaves
        # it to the raw lane
        self.native_lane = True
        self._plans: dict[str, Any] = {}  # SOP class -> _rawpath's compiled decisions

    # ------------------------------------------------------------------ public API
    def deidentify_bytes(
        self,
        raw: bytes,
        source: str = "",
        *,
        pixel_decision: str | None = None,
        input_sha256: str | None = None,
    ) -> DeidResult:
        """De-identify one Part-10 file (or a bare data set) given as bytes.

        ``pixel_decision`` is a reviewer's answer for an object that needed review (``accept`` or
        ``mask``), from ``curata deid-review``. ``input_sha256``: the hex SHA-256 of ``raw`` where
        the caller has computed it already (the batch names quarantined inputs by it).
        """
        if pixel_decision not in (None, "accept", "mask"):
            raise ValueError(f"pixel_decision {pixel_decision!r}")
        with _quiet_pydicom():
            return self._deidentify_bytes(raw, source, pixel_decision, input_sha256)

    def _deidentify_bytes(
        self, raw: bytes, source: str, decision: str | None = None, input_sha: str | None = None
    ) -> DeidResult:
        input_sha = input_sha or hashlib.sha256(raw).hexdigest()
        if self.raw_lane and self.fast_read and decision is None:
            done = _native.deidentify(self, raw, input_sha) if self.native_lane else None
            if done is None:
                done = _rawpath.deidentify(self, raw, input_sha)
            if done is not None:
                return done
        fast = _reader.read(raw) if self.fast_read else None
        if fast is not None:  # a plain file: the same data set dcmread builds, built by a struct walk
            return self._run(fast, input_sha, source, decision)
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), force=False)
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(io.BytesIO(raw), force=True)
            except Exception as exc:
                raise InputError(f"not a DICOM file ({type(exc).__name__})", path=source or None) from exc
            if "SOPClassUID" not in ds:
                raise InputError(
                    "not a DICOM file (no DICM prefix and no SOP Class UID)", path=source or None
                ) from None
        except Exception as exc:
            raise InputError(f"unreadable DICOM ({type(exc).__name__}: {exc})", path=source or None) from exc
        repeated = _repeated_tag(raw, ds)
        if repeated is not None:
            # pydicom keeps the last of two values: a real name followed by another would never
            # be looked for in the rest of the file (the lanes and the lean reader decline such files)
            raise InputError(
                # named by its keyword only: an unknown tag's digits may be the bytes of a value
                f"{keyword_for_tag(repeated) or 'an element'} appears twice in the data set: which "
                "value is the patient's cannot be told",
                path=source or None,
                hint="export the object again from the source system",
            )
        return self._run(ds, input_sha, source, decision)

    def deidentify_dataset(self, ds: Dataset) -> DeidResult:
        """De-identify an in-memory data set (the network gateway); ``ds`` itself is not modified."""
        buf = io.BytesIO()
        if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            ds = ds.copy()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        try:
            ds.save_as(buf, enforce_file_format=True)
        except Exception as exc:
            raise InputError(f"data set cannot be encoded ({type(exc).__name__}: {exc})") from exc
        return self.deidentify_bytes(buf.getvalue())

    # ------------------------------------------------------------------ the work
    def _run(self, ds: Dataset, input_sha: str, source: str, decision: str | None = None) -> DeidResult:
        where = source or None
        try:
            self._check_readable(ds)
            missing = [k for k in _REQUIRED if not str(ds.get(k, "") or "").strip()]
            if missing and _is_media_directory(ds):
                raise InputError(
                    "a media directory (DICOMDIR), not an instance: its records index the files beside it",
                    path=where,
                    hint="give the folder the DICOMDIR sits in: the files it lists are de-identified one by one",
                )
            if missing:
                raise InputError(f"missing required attribute(s): {', '.join(missing)}", path=where)
            sop_class = str(ds.SOPClassUID)
            ctx = _Ctx(self.profile, self.pseudo, sop_class)
            if self.profile.allow_list:
                ctx.allowed = iod_allowed_tags(sop_class)
                if ctx.allowed is None:
                    raise DeidError(
                        f"{self.profile.name}: no IOD definition for this SOP class, so no allow-list",
                        hint="use the research profile for it, or add the class to the site's workflow",
                    )
            ctx.encodings = _encodings(ds)
            _refuse_encapsulated_documents(ds)
            # collected first, while the names are still the input's bytes: reading PatientName for the
            # pseudonym converts it, and its bytes in another character set would no longer be read
            self._collect(ds, ctx, top=True)
            self._patient(ds, ctx)
            age = self._age_before(ds, ctx)
            pixel_state, cleared_by = self._pixels(ds, ctx, decision)
            if pixel_state in ("kept", "cleaned"):  # "cleaned" may be an emptied offset table alone:
                # the frames are then the input's, comments and all (pixels re-encoded have none)
                self._redact_codestream(ds, ctx)
            self._clean(ds, ctx, top=True, structured=False)
            for target, tag, generic in ctx.later:
                self._clean_text_elem(target, tag, ctx, generic=generic)
        except (DeidError, InputError):
            raise
        except Exception as exc:  # pydicom meets truncated or corrupt bytes lazily, while values are read
            raise InputError(
                f"truncated, corrupt or unsupported data set ({type(exc).__name__}: {exc})", path=where
            ) from exc
        if age is not None:
            ds.PatientAge = age
        self._file_meta(ds, ctx)
        self._mark(ds, ctx)
        try:
            output = _writer.encode(ds)
        except Exception as exc:
            raise DeidError(
                f"cannot encode the de-identified data set ({type(exc).__name__}: {exc})"
            ) from exc
        self._gate(output, ds, ctx, pixel_state in ("kept", "cleaned"))
        return self._result(output, ds, ctx, input_sha, sop_class, pixel_state, cleared_by)

    def _result(
        self,
        output: bytes,
        ds: Dataset | None,
        ctx: _Ctx,
        input_sha: str,
        sop_class: str,
        pixel_state: str,
        cleared_by: str,
        *,
        whole: bool = True,
        names: tuple[str, str, str, str] | None = None,
    ) -> DeidResult:
        """The record, the vault rows and the result of a released output. ``whole``: ``ds`` is the
        whole output data set; else (the raw lane's few elements) the result reads the output back
        on first use of its ``dataset``. ``names``: the study, series and SOP instance UIDs and the
        transfer syntax written, where there is no data set (the native lane's)."""
        if names is None:
            assert ds is not None
            names = (
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID),
                str(ds.file_meta.TransferSyntaxUID),
            )
        record = DeidRecord(
            input_sha256=input_sha,
            output_sha256=hashlib.sha256(output).hexdigest(),
            profile=self.profile.name,
            options=sorted(self.profile.options),
            profile_fingerprint=self.profile.fingerprint,
            code_version=CODE_VERSION,
            # the class the output names: a private input class is remapped there, and its digits
            # (a site's root, a date) must not reach the catalog or the ledger by the record
            sop_class_uid=sop_class if ctx.retain_uids else self.pseudo.uid(sop_class),
            patient_pseudonym=ctx.pseudonym,
            study_uid=names[0],
            series_uid=names[1],
            sop_uid=names[2],
            transfer_syntax=names[3],
            pixels=pixel_state,
            pixels_cleared_by=cleared_by,
        )
        reid = [
            {
                "kind": "patient",
                "pseudonym": ctx.pseudonym,
                "patient_id": ctx.patient_id,
                "patient_name": ctx.patient_name,
            }
        ]
        if self.profile.vault_uids:
            reid += [
                {"kind": "uid", "pseudonym": ctx.pseudonym, "original": o, "new": n}
                for o, n in ctx.uid_map.items()
            ]
        if whole and ds is not None:
            result = DeidResult(output_bytes=output, dataset=ds, record=record, reid=reid)
        else:
            unread = cast(Dataset, None)  # read from the output on first use
            result = _ReadBack(output_bytes=output, dataset=unread, record=record, reid=reid)
        _ = result.relative_path  # validated before anything is written anywhere
        if self.vault is not None:
            self.vault.append(reid)
        if self.identities is not None and ctx.remembered:
            self.identities.remember_dicom(ctx.patient_id, ctx.remembered)
        return result

    @staticmethod
    def _check_readable(ds: Dataset) -> None:
        """Top-level values shorter than their declared length mean a truncated file."""
        for tag, raw in ds._dict.items():  # raw items, not elements: reading must not convert values yet
            length = getattr(raw, "length", None)
            value = getattr(raw, "value", None)
            if isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length:
                # named only where the standard knows the tag: after a cut, the bytes read as a
                # tag may be the text that followed (5551,5849 is "QUIX")
                where = f"element {tag}" if keyword_for_tag(tag) else "an element"
                raise InputError(f"truncated: {where} declares {length} bytes, {len(value)} present")

    def _patient(self, ds: Dataset, ctx: _Ctx) -> None:
        pid = str(ds.get("PatientID", "") or "").strip()
        name = str(ds.get("PatientName", "") or "").strip()
        issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
        if pid:
            key = f"id:{issuer}|{pid}"
        elif name:
            key = f"name:{name}|{str(ds.get('PatientBirthDate', '') or '').strip()}"
        else:
            key = f"study:{ds.StudyInstanceUID}"
        ctx.patient_id, ctx.patient_name = pid, name
        ctx.pseudonym = self.pseudo.patient(key)
        ctx.shift = self.pseudo.date_shift(key)

    def _collect(self, ds: Dataset, ctx: _Ctx, top: bool) -> None:
        """First pass: every identifying value of the input, for free-text cleaning and the final gate."""
        ids, sources, addresses = ctx.ids, self._sources, _address_tags()
        for btag, raw in list(ds._dict.items()):  # items as read: no value is converted here
            tag = int(btag)  # a plain int: BaseTag compares in Python
            vr = raw.VR if raw.VR and raw.VR != "UN" else _vr_of(tag)
            if vr == "SQ":
                for item in ds[tag].value or ():
                    self._collect(item, ctx, top=False)
                continue
            # coded terms (TEXT, CONTAINER, HEAD...) are never a person's identifier; an element the
            # standard defines as an identifier (PatientName, PatientID) sent as CS still is one
            if vr == "CS" and tag not in sources and tag not in _NAME_TAGS:
                value = raw.value
                if isinstance(value, bytes):  # still raw: read it without converting the element
                    ctx.coded.update(v.strip(" \0").upper() for v in value.decode("latin-1").split("\\"))
                elif value:
                    ctx.coded.update(
                        str(v).upper() for v in (value if isinstance(value, MultiValue) else [value])
                    )
                continue
            if tag not in sources and vr != "PN" and tag not in _NAME_TAGS:
                continue
            if tag == _TIMEZONE_OFFSET:  # "+HHMM" names a clock, not a person, and every DT repeats it
                continue
            rawval = raw.value if isinstance(raw, RawDataElement) else None
            value = ds[tag].value
            if value is None or value == "":
                continue
            values = value if isinstance(value, MultiValue | list) else [value]
            if isinstance(rawval, bytes) and not rawval.isascii() and rawval.find(b"\x1b") < 0:
                # Text in a character set other than the declared one (Latin-1 bytes in a UTF-8
                # file): the value is matched in every plausible decoding, and as its own bytes.
                ids.add_raw(rawval)
                values = [*values, *(v for alt in other_readings(rawval) for v in alt.split("\\"))]
            for v in values:
                text = str(v).strip(" \0")
                if not text:
                    continue
                if tag in REMEMBERED_TAGS:
                    ctx.remembered.append((tag, text))
                if tag in _STRONG_TAGS:
                    ids.add_strong(text)
                if vr == "PN" or tag in _NAME_TAGS:
                    ids.add_name(text)
                elif vr in ("DA", "DT"):
                    if not ctx.full_dates or tag == _BIRTH_DATE:
                        ids.add_date(text)
                elif tag in _PERSON_ADDRESSES:
                    ids.add_address(text)
                elif tag in addresses:
                    ids.add_word(text)
                else:
                    ids.add_value(text)
        if top:
            for d in (*_AGE_DATES, "PatientBirthDate"):
                if not ctx.full_dates:
                    ids.add_date(str(ds.get(d, "") or ""))

    def _age_before(self, ds: Dataset, ctx: _Ctx) -> str | None:
        """The age to write, computed before the birth date goes (Retain Patient Characteristics)."""
        if not self.profile.has("retain_patient_characteristics") or ctx.top.get(_AGE) != "K":
            return None
        current = str(ds.get("PatientAge", "") or "").strip()
        if current:
            return cap_age(current, self.profile.cap_age_years)
        birth = str(ds.get("PatientBirthDate", "") or "")
        for key in _AGE_DATES:
            on = str(ds.get(key, "") or "")
            if birth and on:
                age = age_between(birth, on)
                if age:
                    return cap_age(age, self.profile.cap_age_years)
        return None

    # ------------------------------------------------------------------ element actions
    def _clean(self, ds: Dataset, ctx: _Ctx, *, top: bool, structured: bool) -> None:
        actions = ctx.top if top else ctx.nested
        private: list[int] = []
        overlay_groups: set[int] = set()
        for btag, raw in list(ds._dict.items()):  # a snapshot: each step changes only its own tag
            tag = int(btag)  # a plain int: BaseTag compares in Python
            group = tag >> 16
            if group & 1:
                private.append(tag)
                continue
            if top and 0x6000 <= group <= 0x60FF:
                overlay_groups.add(group)
                continue
            if 0x5000 <= group <= 0x50FF:
                self._curve(ds, tag, ctx)
                continue
            if group == 0x0002 or tag in _ALWAYS_REMOVE:  # file meta inside the data set: never valid there
                del ds[tag]
                continue
            if ctx.allowed is not None and tag not in ctx.allowed and tag not in (_PATIENT_ID, _PATIENT_NAME):
                del ds[tag]  # research-strict: not an attribute of this IOD
                continue
            action = actions.get(tag)
            vr = raw.VR
            if not vr or vr == "UN":  # implicit VR, or a standard attribute sent as UN: act on its real VR
                vr = _vr_of(tag) or "UN"
            if action is None:
                action = self._unlisted_action(tag, vr, ctx, structured)
                if vr == "UN" or _vr_of(tag) is None:
                    # not in the data dictionary (a vendor's misuse, or a corrupted tag that may be
                    # PatientName one bit away): nothing says what it holds, so it goes
                    action = "X"
            if tag in (_PATIENT_ID, _PATIENT_NAME):
                self._patient_value(ds, tag, ctx, top)
                continue
            self._apply(ds, tag, vr, action, ctx, top=top, structured=structured)
        if private:
            self._private(ds, private, ctx)
        if overlay_groups:
            self._overlays(ds, overlay_groups, ctx)

    def _unlisted_action(self, tag: int, vr: str, ctx: _Ctx, structured: bool) -> str:
        """Attributes the table does not list are kept, with safety nets for what could still identify."""
        if vr == "SQ":
            return "K"
        if vr == "UI":
            keyword = keyword_for_tag(tag)
            if ctx.retain_uids:
                return "K"
            return "S" if keyword in SCHEME_UID_KEYWORDS or keyword in CLASS_UID_KEYWORDS else "U"
        if vr == "PN":
            return "D"
        if vr in ("DA", "DT"):
            return "K" if ctx.full_dates else ("C" if ctx.mod_dates else "D")
        if structured and vr in FREE_TEXT_VRS:
            return "C" if ctx.clean_struct else "D"
        return "K"

    def _apply(
        self, ds: Dataset, tag: int, vr: str, action: str, ctx: _Ctx, *, top: bool, structured: bool
    ) -> None:
        if action == "X":
            del ds[tag]
            return
        if vr == "SQ":
            if action == "Z":
                ds[tag].value = Sequence()
                return
            inner_structured = structured or action in ("C", "D")
            for item in ds[tag].value or ():
                self._clean(item, ctx, top=False, structured=inner_structured)
            return
        if action == "Z":
            if vr in NUMERIC_BINARY_VRS:
                ds[tag].value = b"" if vr in ("OB", "OW", "UN") else None
            else:
                ds[tag].value = ""
            return
        if action == "S":  # terminology UID: well-known ones stay, anything else is treated as an identifier
            value = str(ds[tag].value or "")
            if not (is_standard_uid(value) or value.startswith(_HL7_ROOT)):
                self._remap_uids(ds[tag], ctx)
            return
        if action == "U" or (vr == "UI" and action in ("D", "C")):
            if not ctx.retain_uids:
                self._remap_uids(ds[tag], ctx)
            return
        if action == "D":
            self._dummy(ds[tag], vr)
            return
        if action == "C":
            if vr == "DA" or vr == "DT":
                self._shift(ds[tag], vr, ctx)
            elif vr in TEXT_VRS and vr != "PN":
                ctx.later.append((ds, tag, True))
            elif vr == "PN":
                self._dummy(ds[tag], vr)
            elif vr in ("CS", "AE", "UR"):  # cleaned at least as a kept one is (below): a value that
                ctx.later.append((ds, tag, False))  # holds an identifier becomes a dummy
            return
        # K: the value stays, but a kept date equal to one of the input's identifying dates (the birth
        # date planted in a device calibration date) is shifted like the others,
        if vr in ("DA", "DT") and not ctx.full_dates:
            value = str(ds[tag].value or "")
            if any(v.strip()[:8] in ctx.ids.dates for v in value.split("\\")):
                self._shift(ds[tag], vr, ctx)
            return
        # an ICC profile keeps its colour data and loses its text (descriptions, copyright, dates,
        # private and unknown elements: ``codestream.icc_text_spans``), lengths and offsets kept
        if tag == _ICC_PROFILE and isinstance(ds[tag].value, bytes | bytearray):
            self._clean_icc(ds[tag])
            return
        # and a kept text value still loses the patient's own identifiers
        # (coded strings and AE titles too: a CS or AE value holding one becomes a dummy).
        if vr in TEXT_VRS or vr in ("CS", "AE", "UR"):
            ctx.later.append((ds, tag, False))

    @staticmethod
    def _clean_icc(elem: DataElement) -> None:
        value = bytearray(elem.value)
        for a, b in codestream.icc_text_spans(bytes(value)):
            value[a:b] = bytes(b - a)
        if value != elem.value:
            elem.value = bytes(value)

    def _patient_value(self, ds: Dataset, tag: int, ctx: _Ctx, top: bool) -> None:
        elem = ds[tag]
        value = str(elem.value or "").strip()
        if top or value in (ctx.patient_id, ctx.patient_name):
            elem.value = ctx.pseudonym
        elif value:
            elem.value = self.pseudo.patient(f"id:|{value}") if tag == _PATIENT_ID else DUMMY_TEXT

    def _remap_uids(self, elem: DataElement, ctx: _Ctx) -> None:
        value = elem.value
        if not value:
            return
        many = isinstance(value, MultiValue | list)
        out = []
        for v in value if many else [value]:
            old = str(v).strip("\0 ")
            new = ctx.pseudo.uid(old)
            if new != old:
                ctx.uid_map[old] = new
                ctx.ids.add_uid(old)
            out.append(UID(new))
        elem.value = out if many else out[0]

    def _dummy(self, elem: DataElement, vr: str) -> None:
        if vr in ("LO", "SH", "ST", "LT", "UT", "UC"):
            elem.value = DUMMY_TEXT
        elif vr in DUMMY_BY_VR:
            elem.value = DUMMY_BY_VR[vr]
        elif vr in ("OB", "OW", "UN"):
            elem.value = b"\0\0"
        elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
            elem.value = 0
        else:
            elem.value = ""

    def _shift(self, elem: DataElement, vr: str, ctx: _Ctx) -> None:
        value = elem.value
        if not value:
            return
        many = isinstance(value, MultiValue | list)
        out: list[str] = []
        fn = shift_date if vr == "DA" else shift_datetime
        for v in value if many else [value]:
            text = str(v).strip()
            if not text:
                out.append(text)
                continue
            shifted = fn(text, ctx.shift)
            out.append(shifted if shifted is not None else DUMMY_BY_VR[vr])
        elem.value = out if many else out[0]

    def _clean_text_elem(self, ds: Dataset, tag: int, ctx: _Ctx, *, generic: bool) -> None:
        if tag not in ds:
            return
        if not generic:
            # Kept text only loses the patient's own identifiers: when its raw bytes hold none of them
            # (in any encoding), leave the element unconverted so it is copied as it came.
            raw = ds.get_item(tag)
            if (
                isinstance(raw, RawDataElement)
                and isinstance(raw.value, bytes)
                and not ctx.holds_identifier(raw.value)
            ):
                return
        elem = ds[tag]
        value = elem.value
        if value is None or value == "" or isinstance(value, bytes):
            return
        vr = elem.VR
        many = isinstance(value, MultiValue | list)
        out = []
        coded = vr in ("CS", "AE", "UR")
        terms = ENUMERATED_CS.get(keyword_for_tag(tag) or "", frozenset()) if coded else frozenset()
        for v in value if many else [value]:
            text = str(v)
            if coded:
                strong = ctx.ids.matcher(strong=True)
                cleaned = text if text.strip() in terms or not identity_spans(strong, text) else "*"
            else:
                cleaned = clean_text(text, ctx.ids, generic=generic)
            if vr in ("CS", "AE", "UR") and cleaned != text:
                cleaned = DUMMY_TEXT if vr in ("CS", "AE") else ""
            out.append(cleaned)
        if many and not coded and not "".join(out).isascii():
            # a CJK name sent in Shift-JIS or Big5 without its character set is split where a second
            # byte is 5C (許 is B3 5C): its pieces are read together too
            joined = "\\".join(out)
            again = clean_text(joined, ctx.ids, generic=False)
            if again != joined:
                out = again.split("\\")
        if out != (list(value) if many else [value]):
            elem.value = out if many else out[0]

    # ------------------------------------------------------------------ special groups
    def _private(self, ds: Dataset, tags: list[int], ctx: _Ctx) -> None:
        """Private elements go, except numeric ones on the safe list under Retain Safe Private."""
        keep: set[int] = {t for t, a in self.profile.overrides if a == "K"}
        if self.profile.has("retain_safe_private"):
            safe = _safe_private()
            creators: dict[int, str] = {}
            for tag in tags:
                group, elem = tag >> 16, tag & 0xFFFF
                if elem < 0x1000:
                    continue
                creator_tag = (group << 16) | (elem >> 8)
                creator = creators.get(creator_tag)
                if creator is None:
                    raw = ds.get_item(creator_tag) if creator_tag in ds else None
                    value = getattr(raw, "value", None) or b""
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    creator = creators[creator_tag] = text.strip(" \0").upper()
                if (creator, group, elem & 0xFF) not in safe:
                    continue
                vr = ds.get_item(tag).VR or ds[tag].VR  # implicit VR: the private dictionary knows it
                if vr in SAFE_PRIVATE_VRS:
                    keep.add(tag)
                    keep.add(creator_tag)
        _drop(ds, [t for t in tags if t not in keep])

    def _overlays(self, ds: Dataset, groups: set[int], ctx: _Ctx) -> None:
        """Overlay planes: removed, or under Clean Graphics kept only when OCR finds no text in them."""
        for group in sorted(groups):
            keep = False
            data_tag = group << 16 | 0x3000
            if self.profile.has("clean_graphics") and data_tag in ds:
                # kept only when proven free of text: no identifier in its bytes, and OCR reads none
                data = ds.get_item(data_tag).value
                keep = (
                    self.ocr
                    and isinstance(data, bytes)
                    and not ctx.holds_identifier(data, binary=True)
                    and pixels.overlay_is_clean(ds, group)
                )
            tags = ds.keys()
            for tag in [t for t in tags if t >> 16 == group]:
                if not keep:
                    del ds[tag]
                elif _vr_of(tag & 0xFF00FFFF) in TEXT_VRS:
                    ctx.later.append((ds, tag, True))

    def _curve(self, ds: Dataset, tag: int, ctx: _Ctx) -> None:
        """Curves (retired 50xx groups): removed, or under Clean Graphics kept with their text cleaned."""
        if not self.profile.has("clean_graphics"):
            del ds[tag]
            return
        raw = ds.get_item(tag)
        vr = raw.VR or _vr_of(tag & 0xFF00FFFF)
        if vr in TEXT_VRS:
            ctx.later.append((ds, tag, True))
        elif isinstance(raw.value, bytes) and ctx.holds_identifier(raw.value, binary=True):
            del ds[tag]  # curve data that spells an identifier is not a curve

    def _pixels(self, ds: Dataset, ctx: _Ctx, decision: str | None) -> tuple[str, str]:
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            return "none", ""
        cleared = pixels.clear_outside_image(ds)  # an embedded overlay, bytes after the last frame
        state, by = self._burned_in(ds, decision)
        if cleared:
            return "cleaned", "+".join(b for b in (by, *cleared) if b)
        return state, by

    def _burned_in(self, ds: Dataset, decision: str | None) -> tuple[str, str]:
        if not pixels.may_carry_burned_in_text(ds):
            return "kept", ""
        if not self.profile.has("clean_pixel_data"):
            if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
                raise DeidError("burned-in annotation present and the profile has no Clean Pixel Data option")
            return "kept", ""
        return pixels.clean_burned_in(
            ds,
            ocr=self.ocr,
            regions=self.profile.regions,
            policy=self.profile.burned_in_policy,
            decision=decision,
        )

    def _redact_codestream(self, ds: Dataset, ctx: _Ctx) -> None:
        """Zero the comment and application segments of kept compressed frames (``codestream``)."""
        if "PixelData" not in ds:
            return
        ts = str(ds.file_meta.TransferSyntaxUID)
        value = ds.PixelData
        if not codestream.is_compressed(ts) or not isinstance(value, bytes | bytearray):
            return
        try:
            redacted, done = codestream.redact(value, ts)
        except codestream.CodestreamError as exc:
            raise DeidError(f"pixel data: {exc}; not released") from exc
        if redacted is not value:
            elem = ds["PixelData"]
            elem.value = bytes(redacted)
        ctx.codestream_kept = done.kept

    # ------------------------------------------------------------------ marking and file meta
    def _mark(self, ds: Dataset, ctx: _Ctx) -> None:
        """PatientIdentityRemoved, DeidentificationMethod(CodeSequence), LongitudinalTemporal...Modified."""
        if ctx.full_dates:
            temporal = "UNMODIFIED"
        elif ctx.mod_dates:
            temporal = "MODIFIED"
        else:
            temporal = "REMOVED"
        ts = UID(ds.file_meta.TransferSyntaxUID)
        if ts.is_little_endian:  # pre-encoded once per profile; pydicom decodes them on access
            for raw in _marking_raw(self.profile, temporal, ts.is_implicit_VR):
                ds[raw.tag] = raw
            return
        for elem in _marking_elements(self.profile, temporal):
            ds.add(elem)

    def _file_meta(self, ds: Dataset, ctx: _Ctx) -> None:
        old = getattr(ds, "file_meta", None) or FileMetaDataset()
        ts: str | None = old.get("TransferSyntaxUID")
        if ts is None:
            implicit, little = ds.original_encoding
            if implicit:
                ts = pydicom.uid.ImplicitVRLittleEndian
            else:
                ts = (
                    pydicom.uid.ExplicitVRLittleEndian
                    if little in (True, None)
                    else pydicom.uid.ExplicitVRBigEndian
                )
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = UID(ts)
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds.file_meta = meta
        ds.preamble = b"\0" * 128

    def _gate(self, output: bytes, ds: Dataset, ctx: _Ctx, pixel_kept: bool) -> None:
        """Refuse the output if any identifying value of the input appears anywhere in its bytes.

        Pixel data is image, not text, and is skipped (its bytes match short words by chance): it is
        either the input's own bytes, untouched, or was checked for burned-in text by OCR.
        """
        matcher = self._gate_matcher(ctx)
        hit = _decoded_hit(ds, matcher, ctx)
        if hit:
            raise DeidError(f"final gate: an identifying value of the input survived in {hit}; not released")
        plan = matcher.gate_plan(tuple(ctx.encodings))
        if not (plan.subs or plan.plain or plan.uids or matcher.dates):
            return
        output = _inflated(output, ds)
        px = ds.get("PixelData") if pixel_kept else None
        self._scan_bytes(output, matcher, ctx, _header_spans(output, px, ctx.codestream_kept))

    def _byte_gate(self, output: bytes, ctx: _Ctx, spans: list[tuple[int, int]]) -> bool:
        """The gate's byte scan alone (a plain little-endian output): True when nothing survived."""
        try:
            self._scan_bytes(output, self._gate_matcher(ctx), ctx, spans)
        except DeidError:
            return False
        return True

    def _gate_matcher(self, ctx: _Ctx) -> Matcher:
        """The input's identifiers as the gate looks for them (engine words and coded terms exempt)."""
        ids = ctx.ids
        exempt, demote = _exemptions(
            self.profile, frozenset(ids.words), frozenset(ids.strong), frozenset(ctx.coded)
        )
        return Matcher(ids, exempt, demote) if exempt or demote else ids.matcher()

    @staticmethod
    def _scan_bytes(output: bytes, matcher: Matcher, ctx: _Ctx, spans: list[tuple[int, int]]) -> None:
        if ctx.retain_uids:
            _refuse_retained_uids(output, ctx, spans)
        plan = matcher.gate_plan(tuple(ctx.encodings))
        dates = matcher.date_needles()
        for start, end in spans:
            if end <= start:
                continue  # nothing there (the context bytes alone hold no needle: see find_bounded)
            # one span at a time, lower-cased with a byte of context on each side for the boundary test
            lo = max(0, start - 1)
            hay = output[lo : end + 1].lower()
            # a needle is looked for only where a part of it occurs (needle_part: a name's spellings
            # share their first letters, an ID its digits), each part once per span
            if plan.subs:
                squeezed = hay.translate(None, _SEP_BYTES)
                for part, group in plan.subs:
                    if squeezed.find(part) >= 0:
                        for needle in group:
                            pos = squeezed.find(needle)
                            if pos >= 0:
                                _refuse(output, _unsqueezed(hay, pos) + lo, "sub")
            for part, pairs in plan.plain:
                if hay.find(part) >= 0:
                    for needle, kind in pairs:
                        if hay.find(needle) >= 0:
                            pos = find_bounded(hay, needle, kind, start - lo, end - lo)
                            # an ID of digits inside another number of a numeric value (-1024, the
                            # rescale intercept, where the ID is 1024) is that number, not the ID
                            while pos >= 0 and kind == "num" and _other_number(output, pos + lo, needle):
                                pos = find_bounded(hay, needle, kind, pos + 1, end - lo)
                            if pos >= 0:
                                _refuse(output, pos + lo, kind)
            if plan.numbers and find_grouped_number(hay, plan.numbers):
                _refuse(output, start, "num", lambda h: find_grouped_number(h, plan.numbers))
            for uid in plan.uids:
                if hay.find(uid) >= 0:
                    pos = find_bounded(hay, uid, "uid", start - lo, end - lo)
                    if pos >= 0:
                        _refuse(output, pos + lo, "uid")
            if dates:
                pos = find_date(hay, dates, start - lo, end - lo)
                if pos >= 0:
                    _refuse(output, pos + lo, "date")
            if _ESCAPE.search(hay):
                unescaped = _unescaped(hay)
                if unescaped is not None and identity_spans(matcher, unescaped):
                    _refuse(output, start, "escaped", lambda h: _escaped_hit(matcher, h))


# Text escaped for a URL or for HTML (M%C3%9CLLER, M&#220;LLER, M&Uuml;LLER): the gate reads it
# unescaped too, in a span that holds an escape (the bytes are lower case here)
_ESCAPE = re.compile(rb"%[0-9a-f]{2}|&(?:#[0-9]{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});")


def _escaped_hit(matcher: Matcher, hay: bytes) -> bool:
    """The gate's escaped rule on one span (``_scan_bytes``)."""
    if not _ESCAPE.search(hay):
        return False
    unescaped = _unescaped(hay)
    return unescaped is not None and bool(identity_spans(matcher, unescaped))


def _unsqueezed(hay: bytes, pos: int) -> int:
    """The offset in ``hay`` of byte ``pos`` of ``hay`` without its separators (``_SEP_BYTES``)."""
    seen = -1
    for i, byte in enumerate(hay):
        if byte not in _SEP_SET:
            seen += 1
            if seen == pos:
                return i
    return 0


_SEP_SET = frozenset(_SEP_BYTES)


def _unescaped(hay: bytes) -> str | None:
    """``hay`` (lower-cased bytes) as text with its URL and HTML escapes undone, in either order;
    None where that changes nothing."""
    text = hay.decode("utf-8", "replace")
    once = html.unescape(urllib.parse.unquote(text, errors="replace"))
    out = html.unescape(urllib.parse.unquote(once, errors="replace"))  # %26%23220%3B, &#37;C3...
    return None if out == text else out


_NUMBER_CHARS = frozenset(b"0123456789+-.eE \\")  # of DS and IS values


def _other_number(data: bytes, at: int, needle: bytes) -> bool:
    """Whether ``needle`` (an identifier of digits) at ``data[at:]`` is part of another number: a
    number of a DS or IS value that is valid and differs from the identifier's (``-1024``, the rescale
    intercept, where the ID is 1024; ``1099.31005``). The element's header must be right before the
    value (explicit VR, or implicit VR and the dictionary's VR), with a length that ends the value
    among a number's characters. An equal number (``1024``, ``1024.0``) is not told apart from the
    identifier, and is not exempt."""
    a = at
    while a > 0 and data[a - 1] in _NUMBER_CHARS:
        a -= 1
    b = at + len(needle)
    while b < len(data) and data[b] in _NUMBER_CHARS:
        b += 1
    for v in range(max(a, 8), at + 1):  # where the value may begin: right after its header
        length = -1
        if data[v - 4 : v - 2] in (b"DS", b"IS"):  # explicit VR: tag, VR, 2-byte length
            length = int.from_bytes(data[v - 2 : v], "little")
        else:  # implicit VR: tag, 4-byte length
            group = int.from_bytes(data[v - 8 : v - 6], "little")
            elem = int.from_bytes(data[v - 6 : v - 4], "little")
            try:
                vr = dictionary_VR((group << 16) | elem)
            except KeyError:
                vr = ""
            if vr in ("DS", "IS"):
                length = int.from_bytes(data[v - 4 : v], "little")
        if at + len(needle) <= v + length <= b:
            begin = data.rfind(b"\\", v, at) + 1 or v
            stop = data.find(b"\\", at, v + length)
            try:
                return float(data[begin : v + length if stop < 0 else stop].strip()) != float(needle)
            except ValueError:
                return False
    return False


_UID_BYTES = frozenset(b"0123456789.")
_DIGIT_BYTES = frozenset(b"0123456789")


def _uid_numbers(ctx: _Ctx) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The patient's own numbers as a UID would hold them: (anywhere in a component, a whole
    component). Anywhere: each run of 6 digits or more of the patient's IDs, accession number and
    birth date (``Identifiers.strong``: 88421937 of QF88421937), and the birth date day or month
    first (19031947, 03191947). A whole component: the birth date in six digits (470319, 190347,
    031947), which a component's timestamp holds by chance (19:03:47)."""
    anywhere: set[bytes] = set()
    whole: set[bytes] = set()
    for form in ctx.ids.strong:
        for run in re.findall(r"[0-9]{6,}", form):
            anywhere.add(run.encode())
            y, m, d = run[:4], run[4:6], run[6:]
            if len(run) == 8 and "01" <= m <= "12" and "01" <= d <= "31":  # a birth date
                anywhere.update({(d + m + y).encode(), (m + d + y).encode()})
                whole.update(f.encode() for f in (y[2:] + m + d, d + m + y[2:], m + d + y[2:]))
    return tuple(anywhere), tuple(whole - anywhere)


def _refuse_retained_uids(output: bytes, ctx: _Ctx, spans: list[tuple[int, int]]) -> None:
    """Retain UIDs keeps the input's own UIDs, which the gate does not look inside (a number after a
    dot is a UID's component): refuse the output where one of them holds one of the patient's own
    numbers (``_uid_numbers``). A UID here: a run of digits and dots with two dots or more."""
    anywhere, whole = _uid_numbers(ctx)
    for needles, alone in ((anywhere, False), (whole, True)):
        for needle in needles:
            pos = output.find(needle)
            while pos >= 0:
                end = pos + len(needle)
                a, b = pos, end
                while a > 0 and output[a - 1] in _UID_BYTES:
                    a -= 1
                while b < len(output) and output[b] in _UID_BYTES:
                    b += 1
                in_uid = output.count(b".", a, b) >= 2
                if alone:  # the component is the number: a dot or the UID's edge on each side
                    in_uid = in_uid and (pos == a or output[pos - 1] not in _DIGIT_BYTES)
                    in_uid = in_uid and (end == b or output[end] not in _DIGIT_BYTES)
                if in_uid and any(start <= pos < stop for start, stop in spans):
                    where = _located.element_at(output, pos)
                    raise DeidError(
                        f"final gate: a UID kept by the Retain UIDs option holds one of the patient's "
                        f"own numbers (an ID, the accession number or the birth date) "
                        f"{f'in {where}' if where else f'near byte {pos} of the output'}; not released",
                        hint="retain_uids keeps the input's UIDs as they are: de-identify these objects "
                        "without it (their UIDs are then remapped), or have the source stop building "
                        "UIDs from patient data",
                    )
                pos = output.find(needle, pos + 1)


def _refuse(output: bytes, pos: int, kind: str, test: Callable[[bytes], bool] | None = None) -> NoReturn:
    """Refuse the output: an identifier of ``kind`` lies at ``pos``, or (``test``: a rule that knows no
    offset) in the first element whose value passes ``test``. The reason names the element by its
    tag and keyword (nested, the path of tags; never its value); the offset only where no element
    is found."""
    where = (test and _located.element_where(output, test)) or _located.element_at(output, pos)
    place = f"in {where}" if where else f"near byte {pos} of the output"
    raise DeidError(
        f"final gate: an identifying value of the input survived {place} ({_KIND_TEXT[kind]}); not released"
    )


_TIMEZONE_OFFSET = 0x00080201
_GATE_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR"})
_MARKING_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})


def _decoded_hit(ds: Dataset, matcher: Matcher, ctx: _Ctx, path: str = "") -> str:
    """The first text element (any depth) whose decoded value holds an identifier, as a path of
    keywords (no value); "" when none. Sees what the byte scan cannot: single CJK family names and
    text in any character set the data set declares."""
    for btag, raw in list(ds._dict.items()):
        tag = int(btag)  # a plain int: BaseTag compares in Python
        if tag in _MARKING_TAGS or tag >> 16 == 0x0002:
            continue
        vr = raw.VR
        if not vr or vr == "UN":
            vr = _vr_of(tag) or "UN"
        if vr == "SQ":
            for n, item in enumerate(ds[tag].value or ()):
                where = _decoded_hit(item, matcher, ctx, f"{path}{_located.label(tag)}[{n}] > ")
                if where:
                    return where
            continue
        if vr not in _GATE_TEXT_VRS:
            continue
        data = raw.value if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes) else None
        other = data is not None and _read_otherwise(data)
        if data is not None and not other and not ctx.holds_identifier(data):
            continue  # plain ASCII with none of the identifiers' bytes: the byte scan says the same
        value = ds[tag].value
        if not value:
            continue
        values = [str(v) for v in value] if isinstance(value, MultiValue | list) else [str(value)]
        if len(values) > 1 and vr != "CS" and not "".join(values).isascii():
            values.append("\\".join(values))  # as cleaning reads them: a character may hold a 5C byte
        if data is None and not all(v.isascii() and "\x1b" not in v for v in values):
            data = _as_written(values, ctx)  # a value converted and written again: its bytes as written
            other = data is not None and _read_otherwise(data)
        if other:
            assert data is not None
            values += other_readings(data)  # written in another character set than the declared one
        if _text_hit(matcher, ctx, tag, vr, values):
            return f"{path}{_located.label(tag)}"
    return ""


def _as_written(values: list[str], ctx: _Ctx) -> bytes | None:
    """A converted text value's bytes as the writer writes them in the data set's character set."""
    try:
        return encode_string("\\".join(values), ctx.encodings or ["iso8859"])
    except (UnicodeError, LookupError, ValueError):
        return None


def _read_otherwise(data: bytes) -> bool:
    """Whether a text value's bytes may read otherwise than in the declared character set: bytes
    beyond ASCII, or ISO 2022 escapes (text written in another character set than the declared one:
    the gate reads it in its ``other_readings`` too)."""
    return not data.isascii() or data.find(b"\x1b") >= 0


def _text_hit(matcher: Matcher, ctx: _Ctx, tag: int, vr: str, values: list[str]) -> bool:
    """The gate's decoded rule for one text element's values as read: whether one holds an
    identifier (in another script, or with letters unread, too); the pseudonym, the dummy and a
    coded string's defined terms are exempt. The native lane applies it to what it writes."""
    terms = ENUMERATED_CS.get(keyword_for_tag(tag) or "", frozenset()) if vr == "CS" else frozenset()
    for text in values:
        if text in (ctx.pseudonym, DUMMY_TEXT) or text.strip() in terms:
            continue
        if identity_spans(matcher, text):
            return True
        if not text.isascii() and _grouped_otherwise(matcher, ctx, text):
            return True
    return False


def _grouped_otherwise(matcher: Matcher, ctx: _Ctx, text: str) -> bool:
    """An ID of digits written in groups in the digits of another script (٤٤١-٧٧٠٢, ۰۲۱ ۸۸۷۷ ۶۶۵۵),
    which the byte scan reads as ASCII only (``find_grouped_number``): read as folded."""
    plain = folded_bytes(text.encode("utf-8"))
    if plain is None:
        return False
    numbers = matcher.gate_plan(tuple(ctx.encodings)).numbers
    return bool(numbers) and find_grouped_number(plain.lower(), numbers)


def _drop(ds: Dataset, tags: list[int]) -> None:
    """Private elements deleted at once: what ``del ds[tag]`` does for them (no pixel keyword is
    private), without its per-call tag conversion."""
    if not tags:
        return
    items = ds._dict
    for tag in tags:
        del items[BaseTag(tag)]
    ds._private_blocks = {}  # a creator may have gone: rebuilt on next access


# Encapsulated documents whose text layer cannot be cleaned here (PDF text is usually compressed,
# CDA is a structured XML record): the object is refused, not released with the text.
_DOCUMENT_MIME = ("application/pdf", "text/xml", "application/xml", "text/plain", "text/html", "text/rtf")


def _refuse_encapsulated_documents(ds: Dataset) -> None:
    if 0x00420011 not in ds:  # Encapsulated Document
        return
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip().lower()
    if (
        not mime
        or mime.startswith(_DOCUMENT_MIME)
        or str(ds.get("SOPClassUID", ""))
        in (
            "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
            "1.2.840.10008.5.1.4.1.1.104.2",  # Encapsulated CDA
        )
    ):
        raise DeidError(
            "encapsulated document: its text layer cannot be cleaned here; not released",
            hint="release the report through a text de-identification workflow instead",
        )


def _encodings(ds: Dataset) -> list[str]:
    charset = ds.get("SpecificCharacterSet")
    if not charset:
        return []
    try:
        return list(
            pydicom.charset.convert_encodings(list(charset) if isinstance(charset, MultiValue) else [charset])
        )
    except Exception:
        return []


def _repeated_tag(raw: bytes, ds: Dataset) -> int | None:
    """A tag that occurs twice at the top level of ``raw``'s data set (after its file meta), as
    pydicom walks it; None where none does, or where the walk fails (``dcmread`` read it: the
    engine's own reading then reports what is wrong)."""
    pos = 0
    if raw[128:132] == b"DICM":
        pos = 132
    # the file meta: explicit VR little endian, group 0002 (PS3.10 7.1)
    while pos + 8 <= len(raw) and raw[pos : pos + 2] == b"\x02\x00":
        vr = raw[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"):
            pos += 12 + int.from_bytes(raw[pos + 8 : pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(raw[pos + 6 : pos + 8], "little")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    body = raw[pos:]
    try:
        if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
            body = zlib.decompress(body, -zlib.MAX_WBITS)
        implicit, little = ds.original_encoding  # as dcmread read the data set
        if implicit is None or little is None:
            return None
        seen: set[int] = set()
        walk = pydicom.filereader.data_element_generator(io.BytesIO(body), implicit, little, defer_size=256)
        for elem in walk:
            tag = int(elem.tag)
            if tag in seen:
                return tag
            seen.add(tag)
    except Exception:
        return None
    return None


def _inflated(output: bytes, ds: Dataset) -> bytes:
    """A deflated output as the gate must see it: file meta, then the data set inflated."""
    if ds.file_meta.TransferSyntaxUID != pydicom.uid.DeflatedExplicitVRLittleEndian:
        return output
    meta_end = 144 + int.from_bytes(output[140:144], "little")  # (0002,0000) group length value
    try:
        return output[:meta_end] + zlib.decompress(output[meta_end:], -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise DeidError("final gate: the deflated output does not inflate; not released") from exc


_WORD = re.compile(r"[A-Z0-9]+")
_KIND_TEXT = {
    "uid": "an original UID",
    "date": "a date",
    "num": "an identifier of digits",
    "word": "a short name, ID or text value",
    "sub": "a name, ID or text value, any spacing",
    "escaped": "a name, ID or date written with URL or HTML escapes",
}


def _marking_elements(profile: Profile, temporal: str) -> list[DataElement]:
    codes = [BASIC_CODE] + [(OPTIONS[o][1], OPTIONS[o][2]) for o in sorted(profile.options)]
    method = [f"Curata {__version__} {profile.name} profile", "DICOM PS3.15 E.1-1 Basic Profile"]
    if profile.overrides:
        method.append(f"site overrides {profile.fingerprint}")
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning[:64]
        item.is_undefined_length_sequence_item = False
        items.append(item)
    seq = DataElement(0x00120064, "SQ", Sequence(items))
    seq.is_undefined_length = False
    return [
        DataElement(0x00120062, "CS", "YES"),  # Patient Identity Removed
        DataElement(0x00120063, "LO", method),  # De-identification Method
        seq,  # De-identification Method Code Sequence
        DataElement(0x00280303, "CS", temporal),  # Longitudinal Temporal Information Modified
    ]


@cache
def _marking_raw(profile: Profile, temporal: str, implicit: bool) -> tuple[RawDataElement, ...]:
    """The marking elements encoded once (little endian) as raw elements: immutable, shared safely."""
    out = []
    for elem in _marking_elements(profile, temporal):
        if elem.VR == "SQ":
            parts: list[bytes] = []
            _writer.sequence(elem.tag, elem, parts, implicit, "iso8859")
            data = b"".join(parts)
        else:
            data = _writer.element(elem, implicit, "iso8859")
        if implicit:  # tag, 4-byte length
            start, length = 8, int.from_bytes(data[4:8], "little")
        elif elem.VR == "SQ":  # tag, VR, 2 reserved, 4-byte length
            start, length = 12, int.from_bytes(data[8:12], "little")
        else:  # tag, VR, 2-byte length
            start, length = 8, int.from_bytes(data[6:8], "little")
        value = data[start:]
        assert length == len(value), "marking elements must have defined lengths"
        out.append(
            RawDataElement(BaseTag(elem.tag), None if implicit else elem.VR, length, value, 0, implicit, True)
        )
    return tuple(out)


def _is_media_directory(ds: Dataset) -> bool:
    """A DICOMDIR (Media Storage Directory Storage): patient, study and series records, no instance."""
    meta = getattr(ds, "file_meta", None)
    media = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    return media == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds


def _header_spans(
    output: bytes, px: object, kept_meta: list[tuple[int, int]] | None = None
) -> list[tuple[int, int]]:
    """Byte ranges of the output the gate scans: all of it, less the pixel data value ``px``, but with
    the metadata segments its codestreams keep (``kept_meta``: offsets in the value, see codestream.py)."""
    if not isinstance(px, bytes | bytearray | memoryview) or len(px) < 1024:
        return [(0, len(output))]
    for tail in (0, 8):  # encapsulated pixel data ends with an 8-byte sequence delimiter
        start = len(output) - tail - len(px)
        if (
            start > 0
            and output[start : start + 64] == px[:64]
            and output[start + len(px) - 64 : start + len(px)] == px[-64:]
        ):
            meta = [(start + a, start + b) for a, b in kept_meta or ()]
            return [(0, start), *meta, (start + len(px), len(output))]
    return [(0, len(output))]


# A patient's words and an object's coded terms recur in every file of a series: the gate's
# exemptions are worked out once per combination.
@lru_cache(maxsize=1024)
def _exemptions(
    profile: Profile, words: frozenset[str], strong: frozenset[str], coded_terms: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """(exempt, demote) of ``Deidentifier._gate_matcher``: see there."""
    exempt, demote = set(), set()
    coded = {normalise(c) for c in coded_terms}
    own_norm, own_tokens = _own_text(profile)
    for w in words:
        norm, verdict = _own_word(own_norm, own_tokens, w)
        if not norm:
            continue  # nothing to look for (a value of separators alone: "----")
        if norm not in strong and norm in coded:
            exempt.add(norm)  # a staff or place word that is also a coded term of this object
        elif verdict == "exempt":
            exempt.add(norm)
        elif verdict == "demote":
            demote.add(w)
    return frozenset(exempt), frozenset(demote)


@lru_cache(maxsize=8192)
def _own_word(own_norm: str, own_tokens: frozenset[str], w: str) -> tuple[str, str]:
    """(normalised ``w``, what the gate does with it whatever the object: "demote" for a word that is
    also an enumerated value or that the engine writes itself (``_own_text``), "exempt" when every
    token of it is one of the engine's own words, "" otherwise), once per word for the process."""
    norm = normalise(w)
    if not norm:
        return norm, ""
    if norm in _ENUM_NORM:
        return norm, "demote"
    if norm in own_norm:
        # a word the engine writes itself (REMOVED, Basic, Profile...): its presence says nothing
        # about the input, so it is looked for only where it stands alone, and not at all when
        # every token of it is one of the engine's own words
        return norm, "exempt" if set(_WORD.findall(w.upper())) <= own_tokens else "demote"
    return norm, ""


@cache
def _own_text(profile: Profile) -> tuple[str, frozenset[str]]:
    """Every string the engine itself writes (upper case) and its words: input words found there are
    not scanned for, since their presence in the output says nothing about the input."""
    parts = [
        DUMMY_TEXT,
        *map(str, DUMMY_BY_VR.values()),
        BASIC_CODE[1],
        CODE_VERSION,
        IMPLEMENTATION_VERSION,
        f"Curata {__version__} {profile.name} profile",
        "DICOM PS3.15 E.1-1 Basic Profile",
        "YES NO MODIFIED UNMODIFIED REMOVED DCM",
        "site overrides",
    ]
    parts += [meaning for _, _, meaning in OPTIONS.values()]
    text = "\n".join(parts).upper()
    return normalise(text), frozenset(_WORD.findall(text))
