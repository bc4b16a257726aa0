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
    from curata.collect.deid.identities import SiteIdentities
    from curata.collect.deid.profile import BASIC_CODE, OPTIONS, PROFILES, DeidOption, Profile, load_profile
    from curata.collect.deid.pseudonyms import Pseudonymizer
    from curata.collect.deid.text import Identifiers, clean_text
    from curata.collect.deid.vault import Vault
    from curata.collect.deid.verify import check_deidentified

__getattr__ = lazy_exports(
    __name__,
    {
        "CODE_VERSION": "engine",
        "Deidentifier": "engine",
        "DeidRecord": "engine",
        "DeidResult": "engine",
        "BASIC_CODE": "profile",
        "DeidOption": "profile",
        "OPTIONS": "profile",
        "PROFILES": "profile",
        "Profile": "profile",
        "load_profile": "profile",
        "Vault": "vault",
        "Pseudonymizer": "pseudonyms",
        "check_deidentified": "verify",
        "Identifiers": "text",  # the free-text cleaner, for other stages' text (reading reports)
        "clean_text": "text",
        "SiteIdentities": "identities",  # every identity a site sealed (reading reports are checked with them)
    },
)

__all__ = [
    "BASIC_CODE",
    "CODE_VERSION",
    "OPTIONS",
    "PROFILES",
    "DeidOption",
    "DeidRecord",
    "DeidResult",
    "Deidentifier",
    "Identifiers",
    "Profile",
    "Pseudonymizer",
    "SiteIdentities",
    "Vault",
    "check_deidentified",
    "clean_text",
    "load_profile",
]
