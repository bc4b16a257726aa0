"""Publishing: immutable, versioned releases with patient-level splits, export formats (DICOM, NIfTI,
nnU-Net, MONAI, Croissant), dataset cards, fingerprinted exports for licensees, and loaders.

    from curata.publish import create_release, export_release
    release = create_release(ws, "lung-ct", cohort="lung", split="70,15,15", stratify="sex,site")
    export_release(ws, release.ref, "out/acme", licensee="ACME AI")

The service (``service.py``) returns records: ``ReleaseVersionInfo`` (create, show), ``WithdrawalResult``,
``ReleaseRow`` (ls), ``VerifyResult``, ``ExportResult`` and ``TraceResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.publish.consent import (
        Superseded,
        check_may_hand_out,
        exported_to,
        superseded,
        superseded_in,
        superseded_versions,
    )
    from curata.publish.models import Release, ReleaseMember, ReleaseVersion
    from curata.publish.service import (
        ExportResult,
        ReleaseError,
        ReleaseRow,
        ReleaseVersionInfo,
        TraceMatch,
        TraceResult,
        VerifyResult,
        WithdrawalResult,
        create_release,
        export_release,
        list_releases,
        show_release,
        trace_file,
        verify_version,
        withdraw_patient,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "Release": "models",
        "ReleaseMember": "models",
        "ReleaseVersion": "models",
        "ExportResult": "service",
        "ReleaseError": "service",
        "ReleaseRow": "service",
        "ReleaseVersionInfo": "service",
        "TraceMatch": "service",
        "TraceResult": "service",
        "VerifyResult": "service",
        "WithdrawalResult": "service",
        "create_release": "service",
        "export_release": "service",
        "list_releases": "service",
        "show_release": "service",
        "trace_file": "service",
        "verify_version": "service",
        "withdraw_patient": "service",
        "Superseded": "consent",
        "check_may_hand_out": "consent",
        "exported_to": "consent",
        "superseded": "consent",
        "superseded_in": "consent",
        "superseded_versions": "consent",
    },
)

__all__ = [
    "ExportResult",
    "Release",
    "ReleaseError",
    "ReleaseMember",
    "ReleaseRow",
    "ReleaseVersion",
    "ReleaseVersionInfo",
    "Superseded",
    "TraceMatch",
    "TraceResult",
    "VerifyResult",
    "WithdrawalResult",
    "check_may_hand_out",
    "create_release",
    "export_release",
    "exported_to",
    "list_releases",
    "show_release",
    "superseded",
    "superseded_in",
    "superseded_versions",
    "trace_file",
    "verify_version",
    "withdraw_patient",
]
