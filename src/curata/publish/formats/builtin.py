"""The formats Curata ships, registered in the order a release builds them."""

from __future__ import annotations

from curata.publish.formats import croissant, monai, nnunet
from curata.publish.formats.registry import BuildContext, ExportFormat, FileRule, Fingerprint, register_format


def _monai(ctx: BuildContext) -> None:
    for path, data in monai.files(ctx.cases).items():
        ctx.put(path, data)


def _nnunet(ctx: BuildContext) -> None:
    nifti_paths = {p: p for p in ctx.entries if p.startswith("nifti/")}
    for path, source in nnunet.layout(ctx.cases, ctx.name, nifti_paths).items():
        ctx.link(path, source)
    for path, data in nnunet.files(ctx.cases, ctx.name).items():
        ctx.put(path, data)


def _croissant(ctx: BuildContext) -> None:
    doc = croissant.metadata(
        name=ctx.name,
        version=ctx.version,
        description=f"Curata release {ctx.name}@{ctx.version}: {len(ctx.cases)} cases from "
        f"{len({c.patient for c in ctx.cases})} patients.",
        cases=ctx.cases,
        files=ctx.entries,
        biases=ctx.biases,
    )
    ctx.put("croissant.json", croissant.to_bytes(doc))


DICOM = register_format(
    ExportFormat(
        "dicom",
        "The de-identified DICOM objects, one folder per case",
        files=(FileRule("dicom/*.dcm", Fingerprint.DICOM, "images and DICOM-SEG"),),
    )
)
NIFTI = register_format(
    ExportFormat(
        "nifti",
        "One NIfTI volume per case, and its label map",
        files=(FileRule("nifti/*.nii.gz", Fingerprint.NIFTI, "images and labels"),),
    )
)
NNUNET = register_format(
    ExportFormat(
        "nnunet",
        "nnU-Net v2 raw dataset (links to the NIfTI files)",
        files=(
            FileRule("nnunet/*.nii.gz", Fingerprint.NIFTI, "the NIfTI bytes under nnU-Net names"),
            FileRule("nnunet/*/dataset.json", Fingerprint.NONE),
            FileRule("nnunet/*/splits_final.json", Fingerprint.NONE),
        ),
        build=_nnunet,
        requires=("nifti",),
    )
)
MONAI = register_format(
    ExportFormat(
        "monai",
        "MONAI decathlon datalist",
        files=(FileRule("datalist.json", Fingerprint.NONE),),
        build=_monai,
    )
)
CROISSANT = register_format(
    ExportFormat(
        "croissant",
        "MLCommons Croissant metadata",
        files=(FileRule("croissant.json", Fingerprint.NONE),),
        build=_croissant,
        after_card=True,
    )
)
TILES = register_format(
    ExportFormat(
        "tiles",
        "Whole-slide tile sets (Zarr, zipped) and tissue masks from `curata preprocess slides`",
        files=(FileRule("tiles/*", Fingerprint.NONE, "slide tiles and masks"),),
    )
)
FHIR = register_format(
    ExportFormat(
        "fhir",
        "A FHIR R4 Bundle per patient (clinical records), on request",
        files=(FileRule("fhir/*", Fingerprint.NONE, "one Bundle per patient"),),
        default=False,
    )
)
