"""Publishing: immutable, versioned releases with patient-level splits, export formats (DICOM, NIfTI,
nnU-Net, MONAI, Croissant), dataset cards, fingerprinted exports for licensees, and loaders.

    from curata.publish import create_release, export_release
    release = create_release(ws, "lung-ct", cohort="lung", split="70,15,15", stratify="sex,site")
    export_release(ws, release["ref"], "out/acme", licensee="ACME AI")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.publish.export import export_release, trace_file
    from curata.publish.models import Release, ReleaseMember, ReleaseVersion
    from curata.publish.release import (
        ReleaseError,
        create_release,
        list_releases,
        show_release,
        verify_version,
        withdraw_patient,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "Release": "models",
        "ReleaseMember": "models",
        "ReleaseVersion": "models",
        "export_release": "export",
        "trace_file": "export",
        "ReleaseError": "release",
        "create_release": "release",
        "list_releases": "release",
        "show_release": "release",
        "verify_version": "release",
        "withdraw_patient": "release",
    },
)

__all__ = [
    "Release",
    "ReleaseError",
    "ReleaseMember",
    "ReleaseVersion",
    "create_release",
    "export_release",
    "list_releases",
    "show_release",
    "trace_file",
    "verify_version",
    "withdraw_patient",
]
