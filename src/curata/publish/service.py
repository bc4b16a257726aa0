"""The publish service, the stage's public typed API: build, show, verify, withdraw and export releases,
and trace a leaked file. Every function takes a workspace and returns a record (``records.py``); none
prints. The CLI, the server and the demo call these.

The work itself lives in ``release.py`` (building versions) and ``export.py`` (licensees' copies).
"""

from __future__ import annotations

from curata.publish.export import export_release, trace_file
from curata.publish.records import (
    ExportResult,
    ReleaseRow,
    ReleaseVersionInfo,
    TraceMatch,
    TraceResult,
    VerifyResult,
    WithdrawalResult,
)
from curata.publish.release import (
    ReleaseError,
    create_release,
    list_releases,
    show_release,
    verify_version,
    withdraw_patient,
)

__all__ = [
    "ExportResult",
    "ReleaseError",
    "ReleaseRow",
    "ReleaseVersionInfo",
    "TraceMatch",
    "TraceResult",
    "VerifyResult",
    "WithdrawalResult",
    "create_release",
    "export_release",
    "list_releases",
    "show_release",
    "trace_file",
    "verify_version",
    "withdraw_patient",
]
