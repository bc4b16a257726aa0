"""Export formats are registered with their files: every file of a release is declared and marked the
way its format says, and a file nobody declared fails the build and the export, loudly."""

from __future__ import annotations

import pytest

from curata.errors import ConfigError
from curata.publish import create_release
from curata.publish.export import _fingerprint_kinds
from curata.publish.formats import (
    FORMATS,
    BuildContext,
    ExportFormat,
    FileRule,
    Fingerprint,
    UnregisteredFileError,
    check_files,
    parse_formats,
    register_format,
)
from curata.publish.formats import registry as formats_registry
from curata.publish.manifest import Manifest
from curata.publish.release import get_version


def test_every_file_of_a_release_is_declared(released) -> None:  # type: ignore[no-untyped-def]
    ws, release, _export = released
    with ws.catalog.session() as s:
        manifest = Manifest.from_bytes(ws.store.get_bytes(get_version(s, release.ref).manifest_digest))
    kinds = check_files([f.path for f in manifest.files], FORMATS)
    by_kind = {k: [p for p, v in kinds.items() if v is k] for k in Fingerprint}
    assert by_kind[Fingerprint.DICOM] and all(p.endswith(".dcm") for p in by_kind[Fingerprint.DICOM])
    assert by_kind[Fingerprint.NIFTI] and all(p.endswith(".nii.gz") for p in by_kind[Fingerprint.NIFTI])
    # nothing binary goes out unmarked
    assert not [p for p in by_kind[Fingerprint.NONE] if p.endswith((".dcm", ".nii.gz", ".nii"))]


def test_a_file_no_format_declares_fails_the_export() -> None:
    with pytest.raises(UnregisteredFileError, match=r"weights\.bin"):
        _fingerprint_kinds({"ab" * 32: ["nifti/images/c.nii.gz"], "cd" * 32: ["model/weights.bin"]})


def test_a_format_that_writes_an_undeclared_file_fails_the_release(released) -> None:  # type: ignore[no-untyped-def]
    ws, _release, _export = released

    def build(ctx: BuildContext) -> None:
        ctx.put("extra/declared.txt", b"fine")
        ctx.put("extra/sneaky.bin", b"\x00binary")

    register_format(
        ExportFormat(
            "test-extra",
            "a format for this test",
            files=(FileRule("extra/*.txt", Fingerprint.NONE),),
            build=build,
            default=False,
        )
    )
    try:
        assert "test-extra" not in parse_formats(None)
        with pytest.raises(UnregisteredFileError, match=r"extra/sneaky\.bin"):
            create_release(ws, "lungs-extra", formats="dicom,test-extra")
    finally:
        formats_registry._REGISTRY.pop("test-extra")


def test_format_names_are_checked_and_requirements_added() -> None:
    assert parse_formats("nnunet") == ("nnunet", "nifti")
    with pytest.raises(ConfigError, match="nifty"):
        parse_formats("dicom,nifty")
