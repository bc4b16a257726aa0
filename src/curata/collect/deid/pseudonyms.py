"""Keyed, deterministic pseudonyms: patient IDs, UIDs and per-patient date shifts (HMAC-SHA256)."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
from collections.abc import Iterable

from pydicom.uid import UID_dictionary

_DICOM_ROOT = "1.2.840.10008."
_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
DEFAULT_PREFIX = "CUR-"
# what Pseudonymizer.patient writes after the prefix: base32 of the first 10 bytes of the HMAC
_PSEUDONYM_BODY = re.compile(r"[A-Z2-7]{16}")


# a site's own prefix (a profile's ``pseudonym_prefix``) has the shape of one: up to 16 letters,
# digits, '-' or '_', ending in '-' or '_' (so that no word runs into the body)
_ANY_PREFIX_PSEUDONYM = re.compile(r"[A-Za-z0-9_-]{0,15}[-_][A-Z2-7]{16}")


def is_site_pseudonym(value: str) -> bool:
    """The shape of a pseudonym under some site's prefix that ends in '-' or '_'. A shape only: the
    prefix may hold anything of its alphabet (``MRN88421937-``), so a receiver checks the prefix
    against those it accepts with :func:`is_accepted_pseudonym` too."""
    return _ANY_PREFIX_PSEUDONYM.fullmatch(value) is not None


def accepted_prefixes(site_prefixes: Iterable[str] = ()) -> tuple[str, ...]:
    """The pseudonym prefixes a platform accepts: ``CUR-`` and its ``[deid] site_prefixes``."""
    return tuple(dict.fromkeys([DEFAULT_PREFIX, *site_prefixes]))


def is_accepted_pseudonym(value: str, prefixes: Iterable[str] = (DEFAULT_PREFIX,)) -> bool:
    """:func:`is_pseudonym` under one of ``prefixes``: ``CUR-`` and the prefixes a platform was told
    its sites use (``[deid] site_prefixes``). What a platform that receives from many sites checks:
    the shape alone took ``MRN88421937-`` + a 16-letter surname as a site's pseudonym (outside
    review 11)."""
    return any(is_pseudonym(value, prefix) for prefix in prefixes) and is_site_pseudonym(value)


_SAMPLE_NUMBER = re.compile(r"[2-9]|[1-9][0-9]+")


def sample_patient(sample: str) -> str:
    """The patient pseudonym of a VCF sample name: a patient's second, third... sample carries ``_2``,
    ``_3``... after it. A site's prefix may hold '_' itself (``HOSPA_``), so only a number after the
    last '_' of a whole pseudonym is a sample's."""
    head, sep, number = sample.rpartition("_")
    if sep and _SAMPLE_NUMBER.fullmatch(number) and is_site_pseudonym(head):
        return head
    return sample


def is_pseudonym(value: str, prefix: str = DEFAULT_PREFIX) -> bool:
    """Whether ``value`` has the exact shape of a keyed pseudonym (``prefix`` + 16 base32 characters).

    A shape check, not a proof: it cannot tell which key made it, but a patient ID, a name or a
    medical record number never has it, so a receiver refuses anything else as not pseudonymised."""
    return value.startswith(prefix) and _PSEUDONYM_BODY.fullmatch(value[len(prefix) :]) is not None


def is_standard_uid(uid: str) -> bool:
    """Well-known UIDs of the standard (SOP classes, transfer syntaxes, coding schemes...): never remapped."""
    return uid in UID_dictionary or uid.startswith(_DICOM_ROOT)


class Pseudonymizer:
    """All keyed derivations for one site secret. Same key and input -> same output, on every machine."""

    def __init__(
        self,
        key: bytes,
        *,
        uid_root: str = "2.25",
        prefix: str = DEFAULT_PREFIX,
        shift_range: tuple[int, int] = (365, 3650),
    ) -> None:
        if len(key) < 16:
            raise ValueError("the site secret must be at least 16 bytes")
        self._key = key
        self.uid_root = uid_root
        self.prefix = prefix
        self.shift_range = shift_range
        self._uid_digits = 64 - len(uid_root) - 1
        self._uid_cache: dict[str, str] = {}

    def _mac(self, domain: bytes, value: str) -> bytes:
        return hmac.digest(self._key, domain + b"\0" + value.encode("utf-8", "surrogateescape"), "sha256")

    def patient(self, patient_key: str) -> str:
        """The pseudonym that replaces both PatientID and PatientName of one patient."""
        digest = self._mac(b"patient", patient_key)
        return self.prefix + base64.b32encode(digest[:10]).decode("ascii")

    def uid(self, uid: str) -> str:
        """A ``2.25.<int>`` (or site-root) UID for a non-standard UID; standard UIDs pass unchanged."""
        uid = uid.strip("\0 ")
        if not uid or is_standard_uid(uid):
            return uid
        cached = self._uid_cache.get(uid)
        if cached is None:
            number = (
                str(int.from_bytes(self._mac(b"uid", uid)[:16], "big"))[: self._uid_digits].lstrip("0") or "1"
            )
            cached = self._uid_cache[uid] = f"{self.uid_root}.{number}"
            if len(self._uid_cache) > 100_000:
                self._uid_cache.clear()
        return cached

    def date_shift(self, patient_key: str) -> int:
        """Days (negative) added to every date of this patient; intervals between dates are kept exactly."""
        lo, hi = self.shift_range
        n = int.from_bytes(self._mac(b"dateshift", patient_key)[:8], "big")
        return -(lo + n % (hi - lo + 1))


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (YYYYMMDD); ``None`` when it is not a valid full date."""
    m = _DATE_RE.match(value.strip())
    if not m:
        return None
    try:
        day = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) + dt.timedelta(days=days)
        return f"{day.year:04d}{day.month:02d}{day.day:02d}"
    except (ValueError, OverflowError):
        return None


def shift_datetime(value: str, days: int) -> str | None:
    """Shift a DT value by whole days, keeping its time of day, fraction and offset."""
    value = value.strip()
    if len(value) < 8:
        return None
    shifted = shift_date(value[:8], days)
    return None if shifted is None else shifted + value[8:]


def age_between(birth: str, on: str) -> str | None:
    """A DICOM AS value (e.g. ``045Y``, ``011M``, ``020D``) for the age at ``on``; None if not computable."""
    mb, mo = _DATE_RE.match(birth.strip()), _DATE_RE.match(on.strip())
    if not (mb and mo):
        return None
    try:
        b = dt.date(*(int(g) for g in mb.groups()))
        o = dt.date(*(int(g) for g in mo.groups()))
    except ValueError:
        return None
    if o < b:
        return None
    years = o.year - b.year - ((o.month, o.day) < (b.month, b.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (o.year - b.year) * 12 + o.month - b.month - (o.day < b.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{(o - b).days:03d}D"


def cap_age(value: str, cap_years: int | None) -> str:
    """Ages above ``cap_years`` read as ``cap_years`` (``090Y``): very old ages identify people."""
    v = value.strip()
    if (
        cap_years is not None
        and len(v) == 4
        and v.endswith("Y")
        and v[:3].isdigit()
        and int(v[:3]) > cap_years
    ):
        return f"{cap_years:03d}Y"
    return v
