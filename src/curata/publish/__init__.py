"""Publishing: immutable, versioned releases with patient-level splits, export formats (DICOM, NIfTI,
nnU-Net, MONAI, Croissant), dataset cards, fingerprinted exports for licensees, and loaders.

    from curata.publish import create_release, export_release
    release = create_release(ws, "lung-ct", cohort="lung", split="70,15,15", stratify="sex,site")
    export_release(ws, release["ref"], "out/acme", licensee="ACME AI")
"""

from curata.publish.export import export_release, trace_file
from curata.publish.release import (
    ReleaseError,
    create_release,
    list_releases,
    show_release,
    verify_version,
    withdraw_patient,
)

__all__ = [
    "ReleaseError",
    "create_release",
    "export_release",
    "list_releases",
    "show_release",
    "trace_file",
    "verify_version",
    "withdraw_patient",
]
