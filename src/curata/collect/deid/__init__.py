"""De-identification at the edge: DICOM PS3.15 Annex E (Table E.1-1), keyed pseudonyms, clean pixels.

>>> from curata.collect.deid import Deidentifier, load_profile
>>> deid = Deidentifier(key=site_secret, profile=load_profile("research"))
>>> res = deid.deidentify_bytes(raw)          # raises InputError / DeidError; never an unclean file
>>> res.output_bytes, res.dataset, res.record.as_dict()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.collect.deid.engine import CODE_VERSION, Deidentifier, DeidRecord, DeidResult
    from curata.collect.deid.profile import OPTIONS, PROFILES, Profile, load_profile
    from curata.collect.deid.text import Identifiers, clean_text
    from curata.collect.deid.vault import Vault

__getattr__ = lazy_exports(
    __name__,
    {
        "CODE_VERSION": "engine",
        "Deidentifier": "engine",
        "DeidRecord": "engine",
        "DeidResult": "engine",
        "OPTIONS": "profile",
        "PROFILES": "profile",
        "Profile": "profile",
        "load_profile": "profile",
        "Vault": "vault",
        "Identifiers": "text",  # the free-text cleaner, for other stages' text (reading reports)
        "clean_text": "text",
    },
)

__all__ = [
    "CODE_VERSION",
    "OPTIONS",
    "PROFILES",
    "DeidRecord",
    "DeidResult",
    "Deidentifier",
    "Identifiers",
    "Profile",
    "Vault",
    "clean_text",
    "load_profile",
]
