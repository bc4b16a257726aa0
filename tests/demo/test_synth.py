"""The demo hospital export: real DICOM that parses, true geometry and HU, consistent identities,
really broken broken files, and byte-identical output for a seed."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from curata.demo import anatomy as an
from curata.demo.synth import ExportManifest, generate_hospital_export
from curata.errors import ConfigError

SITES, PATIENTS, SEED = 5, 5, 11  # every site profile: 5 vendors/layouts/encodings


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportManifest]:
    base = tmp_path_factory.mktemp("demo")
    calls: list[tuple[int, int]] = []
    manifest = generate_hospital_export(
        base / "export",
        sites=SITES,
        patients=PATIENTS,
        seed=SEED,
        size="small",
        workers=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls and calls[-1][0] == calls[-1][1]  # progress reached its total
    return base / "export", manifest


def _read(root: Path, rel: str) -> pydicom.Dataset:
    return pydicom.dcmread(root / rel)


def _series_datasets(root: Path, manifest: ExportManifest, series_uid: str) -> list[pydicom.Dataset]:
    files = [f for f in manifest.files_of(series_uid) if f.kind == "image"]
    return sorted((_read(root, f.path) for f in files), key=lambda ds: int(ds.InstanceNumber))


def _tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_manifest_lies_beside_the_export_and_round_trips(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    path = root.parent / "export-manifest.json"
    assert path.is_file()
    assert not list(root.rglob("*manifest*"))  # ingest never sees the ground truth
    loaded = ExportManifest.load(path)
    assert loaded.to_dict() == json.loads(path.read_text())
    assert (
        len(loaded.files) == len(manifest.files)
        and loaded.series[0].series_uid == manifest.series[0].series_uid
    )


def test_sites_differ_in_vendor_country_and_layout(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    assert len(manifest.sites) == SITES
    assert len({s.manufacturer for s in manifest.sites}) >= 4  # GE, Siemens, Philips, Canon
    assert len({s.country for s in manifest.sites}) == SITES
    assert len({s.layout for s in manifest.sites}) == SITES
    assert all(s.region for s in manifest.sites)
    for site in manifest.sites:
        first = next(f for f in manifest.files if f.path.startswith(site.folder + "/"))
        ds = _read(root, first.path)
        assert ds.Manufacturer == site.manufacturer
    # The CD-like site writes files with no extension, the flat one numbered files in one folder.
    cd = next(s for s in manifest.sites if s.layout == "cd_no_dicomdir")
    cd_files = [f.path for f in manifest.files if f.path.startswith(cd.folder + "/")]
    assert cd_files and all("." not in Path(p).name for p in cd_files)
    assert not (root / cd.folder / "DICOMDIR").exists()
    flat = next(s for s in manifest.sites if s.layout == "flat_numbered")
    assert {Path(f.path).parent.name for f in manifest.files if f.path.startswith(flat.folder + "/")} == {
        "EXPORT"
    }


def test_every_file_parses_and_counts_match(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    listed = {f.path for f in manifest.files} | {b.path for b in manifest.broken_files}
    assert on_disk == listed
    per_series: dict[str, int] = defaultdict(int)
    for record in manifest.files:
        ds = _read(root, record.path)
        assert ds.SOPInstanceUID == record.sop_instance_uid
        assert ds.file_meta.MediaStorageSOPInstanceUID == record.sop_instance_uid
        assert ds.SeriesInstanceUID == record.series_uid
        assert int(ds.InstanceNumber) == record.instance_number
        per_series[record.series_uid] += 1
    assert per_series == {s.series_uid: s.files for s in manifest.series}
    patients = {p.key for p in manifest.patients}
    assert len(patients) == PATIENTS
    for key in patients:
        studies = [s for s in manifest.studies if s.patient == key]
        assert sorted((s.modality, s.timepoint) for s in studies) == [
            ("CT", "baseline"),
            ("CT", "followup"),
            ("MR", "baseline"),
            ("MR", "followup"),
        ]
        kinds = {s.kind for s in manifest.series if s.patient == key}
        assert {"ct_body", "mr_t1", "mr_t2"} <= kinds


def test_a_middle_slice_decodes_to_the_right_shape(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    for site in manifest.sites:  # every encoding: explicit, implicit VR, RLE lossless
        series = next(s for s in manifest.series if s.site == site.name and s.kind == "ct_body")
        ds = _read(root, manifest.files_of(series.series_uid)[series.files // 2].path)
        assert ds.pixel_array.shape == (series.rows, series.columns)


def test_geometry_positions_step_by_the_spacing_along_the_normal(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    missing = {d.series_uid: d.detail for d in manifest.defects if d.kind == "missing_slice"}
    checked = 0
    for series in manifest.series:
        if series.kind == "ct_localizer":
            continue
        datasets = _series_datasets(root, manifest, series.series_uid)
        iop = np.array(datasets[0].ImageOrientationPatient, dtype=float)
        row, col = iop[:3], iop[3:]
        assert (
            abs(row @ col) < 1e-6
            and abs(np.linalg.norm(row) - 1) < 1e-6
            and abs(np.linalg.norm(col) - 1) < 1e-6
        )
        normal = np.cross(row, col)
        positions = np.array([ds.ImagePositionPatient for ds in datasets], dtype=float)
        steps = np.diff(positions, axis=0)
        along = steps @ normal
        sideways = steps - np.outer(along, normal)
        assert np.abs(sideways).max() < 1e-3  # no shear: every step is along the normal
        spacing = float(datasets[0].SpacingBetweenSlices)
        assert spacing == pytest.approx(series.slice_spacing, abs=1e-4)
        gaps = np.abs(along) / spacing
        if series.series_uid in missing:
            assert sorted(np.round(gaps).astype(int).tolist()).count(2) == 1  # exactly one gap of two
        else:
            np.testing.assert_allclose(gaps, 1.0, atol=1e-3)
        assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
        assert all(float(ds.PixelSpacing[0]) == pytest.approx(series.pixel_spacing[0]) for ds in datasets)
        checked += 1
    assert checked == sum(1 for s in manifest.series if s.kind != "ct_localizer")


def _grid_of(datasets: list[pydicom.Dataset]) -> an.Grid:
    first = datasets[0]
    iop = [float(v) for v in first.ImageOrientationPatient]
    normal = np.cross(iop[:3], iop[3:])
    p0 = np.array(first.ImagePositionPatient, dtype=float)
    p1 = np.array(datasets[1].ImagePositionPatient, dtype=float)
    return an.Grid(
        shape=(len(datasets), int(first.Rows), int(first.Columns)),
        pixel_spacing=(float(first.PixelSpacing[0]), float(first.PixelSpacing[1])),
        slice_step=float((p1 - p0) @ normal),
        origin=(float(p0[0]), float(p0[1]), float(p0[2])),
        row_dir=(iop[0], iop[1], iop[2]),
        col_dir=(iop[3], iop[4], iop[5]),
    )


def test_ct_hounsfield_values_sit_where_the_anatomy_is(export: tuple[Path, ExportManifest]) -> None:
    """Re-render the tissue labels from the headers' geometry and the manifest's pose: HU must match."""
    root, manifest = export
    defective = {d.series_uid for d in manifest.defects}
    series = [s for s in manifest.series if s.kind == "ct_body" and s.series_uid not in defective][:3]
    assert series
    for s in series:
        datasets = _series_datasets(root, manifest, s.series_uid)
        hu = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets]).astype(np.float32)
        patient = next(p for p in manifest.patients if p.key == s.patient)
        study = next(st for st in manifest.studies if st.study_uid == s.study_uid)
        pose = an.Pose(tuple(study.pose["rotation_deg"]), tuple(study.pose["translation_mm"]))
        body = an.BodyShape(patient.body["half_width"], patient.body["half_depth"], patient.body["fat_mm"])
        labels = an.render_labels(
            _grid_of(datasets), an.body_phantom(body, [], followup=False, with_table=True), pose
        )
        inside_fov = hu > -1500  # GE pads outside the reconstruction circle
        contrast = "C+" in study.description
        checks = {an.Tissue.AIR: -1000.0, an.Tissue.FAT: -100.0, an.Tissue.MUSCLE: 60.0 if contrast else 45.0}
        for tissue, expected in checks.items():
            # interior voxels only: erode the label so point-spread blur at edges does not count
            from scipy import ndimage

            core = ndimage.binary_erosion(labels == tissue, iterations=2) & inside_fov
            assert core.sum() > 100, (tissue, core.sum())
            assert float(np.median(hu[core])) == pytest.approx(expected, abs=12), (s.site, tissue)
        bone = ndimage.binary_erosion(labels == an.Tissue.BONE, structure=np.ones((1, 3, 3))) & inside_fov
        assert bone.sum() > 0 and np.percentile(hu[bone], 75) > 600
        noise = float(np.std(hu[ndimage.binary_erosion(labels == an.Tissue.MUSCLE, iterations=2)]))
        assert noise == pytest.approx(s.noise, rel=0.35)  # the recorded Gaussian noise (blur-free)


def test_mr_has_tissue_contrast_and_rician_background(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    t2 = next(s for s in manifest.series if s.kind == "mr_t2" and not s.defects)
    t1 = next(s for s in manifest.series if s.kind == "mr_t1" and s.study_uid == t2.study_uid)
    v2 = np.stack([ds.pixel_array for ds in _series_datasets(root, manifest, t2.series_uid)]).astype(float)
    v1 = np.stack([ds.pixel_array for ds in _series_datasets(root, manifest, t1.series_uid)]).astype(float)
    for vol in (v1, v2):
        background = vol[:, :4, :4]
        assert background.min() >= 0 and 0 < background.mean() < 0.1 * vol.max()  # Rician: positive floor
    assert v2.max() > 1000 and v1.max() > 1000


def test_identities_are_consistent_per_patient_and_distinct_between_patients(
    export: tuple[Path, ExportManifest],
) -> None:
    root, manifest = export
    identities = manifest.identities()
    series_patient = {s.series_uid: s.patient for s in manifest.series}
    seen: dict[str, set[tuple[str, str, str, str]]] = defaultdict(set)
    for record in manifest.files[::3]:
        ds = _read(root, record.path)
        seen[series_patient[record.series_uid]].add(
            (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.PatientTelephoneNumbers)
        )
    assert set(seen) == set(identities)
    for key, values in seen.items():
        assert len(values) == 1, key
        name, pid, birth, phone = next(iter(values))
        idt = identities[key]
        assert pid == idt.patient_id and birth == idt.birth_date.strftime("%Y%m%d") and phone == idt.phone
        assert name.startswith(f"{idt.family}^{idt.given}")
    assert len({next(iter(v))[1] for v in seen.values()}) == PATIENTS
    assert len({next(iter(v))[0] for v in seen.values()}) == PATIENTS


def test_identifiers_are_planted_in_the_files(export: tuple[Path, ExportManifest]) -> None:
    """Each series' planted set is findable in its files' raw bytes (the leak check's ground truth)."""
    root, manifest = export
    planted = manifest.planted_sets()
    for series in manifest.series[:: max(1, len(manifest.series) // 5)]:
        record = manifest.files_of(series.series_uid)[0]
        hits = planted[series.series_uid].scan((root / record.path).read_bytes())
        kinds = {h.kind for h in hits}
        assert {"name", "id", "date"} <= kinds, (series.site, kinds)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_broken_files_are_really_broken(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    kinds = defaultdict(int)
    for broken in manifest.broken_files:
        kinds[(broken.site, broken.kind)] += 1
        path = root / broken.path
        if broken.kind == "not_dicom":
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(path)
        elif broken.kind == "missing_attribute":
            attribute = broken.detail.rsplit(": ", 1)[-1]
            ds = pydicom.dcmread(path)
            assert attribute not in ds
            assert ds.get("StudyInstanceUID")  # otherwise a whole, plausible instance
        else:  # truncated: either the parser fails or it finds no complete pixel data
            with pytest.raises(
                (ValueError, AttributeError, EOFError, InvalidDicomError, KeyError, TypeError)
            ):
                ds = pydicom.dcmread(path)
                _ = ds.pixel_array
    for site in manifest.sites:
        assert kinds[(site.name, "truncated")] >= 1
        assert kinds[(site.name, "not_dicom")] >= 1
        assert kinds[(site.name, "missing_attribute")] >= 2


def test_planted_defects_are_in_the_files(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    by_kind = {d.kind: d for d in manifest.defects}
    assert set(by_kind) == {"missing_slice", "strong_noise", "motion_ghosting", "localizer_in_series"}
    missing = by_kind["missing_slice"]
    series = next(s for s in manifest.series if s.series_uid == missing.series_uid)
    folder = next(site.folder for site in manifest.sites if site.name == series.site)
    assert not (root / folder / missing.detail["path_not_written"]).exists()
    numbers = {f.instance_number for f in manifest.files_of(missing.series_uid)}
    assert missing.detail["instance_number"] not in numbers
    loc = by_kind["localizer_in_series"]
    scout = next(f for f in manifest.files_of(loc.series_uid) if f.kind == "localizer")
    ds = _read(root, scout.path)
    assert "LOCALIZER" in ds.ImageType and ds.SeriesInstanceUID == loc.series_uid
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
    noisy = next(s for s in manifest.series if s.series_uid == by_kind["strong_noise"].series_uid)
    assert noisy.noise > 3 * max(s.noise for s in manifest.series if s.kind == "ct_body" and s is not noisy)
    # Ghosts put signal where there is only air: its mean rises well above the Rician noise floor.
    ghosted = next(s for s in manifest.series if s.series_uid == by_kind["motion_ghosting"].series_uid)
    assert _air_mean(root, manifest, ghosted) > 1.8 * ghosted.noise * np.sqrt(np.pi / 2)


def _air_mean(root: Path, manifest: ExportManifest, series) -> float:
    """Mean MR signal in voxels the anatomy says are air (three voxels away from any tissue)."""
    from scipy import ndimage

    datasets = _series_datasets(root, manifest, series.series_uid)
    vol = np.stack([d.pixel_array for d in datasets]).astype(float)
    patient = next(p for p in manifest.patients if p.key == series.patient)
    study = next(st for st in manifest.studies if st.study_uid == series.study_uid)
    pose = an.Pose(tuple(study.pose["rotation_deg"]), tuple(study.pose["translation_mm"]))
    if patient.indication == "lung":
        phantom = an.head_phantom(patient.body["head_scale"], [], followup=False)
    else:
        body = an.BodyShape(patient.body["half_width"], patient.body["half_depth"], patient.body["fat_mm"])
        phantom = an.body_phantom(body, [], followup=False, with_table=False)
    labels = an.render_labels(_grid_of(datasets), phantom, pose)
    air = ndimage.binary_erosion(labels == an.Tissue.AIR, structure=np.ones((1, 7, 7)))
    assert air.sum() > 500
    return float(vol[air].mean())


def test_mr_background_is_rician_noise(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    clean = [s for s in manifest.series if s.kind.startswith("mr") and not s.defects][:3]
    for series in clean:
        expected = series.noise * np.sqrt(np.pi / 2)  # mean of a Rician with no signal
        assert _air_mean(root, manifest, series) == pytest.approx(expected, rel=0.2), series.description


def test_transforms_are_rigid_and_match_the_study_poses(export: tuple[Path, ExportManifest]) -> None:
    _root, manifest = export
    studies = {s.study_uid: s for s in manifest.studies}
    assert len(manifest.transforms) == 2 * PATIENTS
    for t in manifest.transforms:
        m = np.array(t.baseline_to_followup)
        rot = m[:3, :3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-8)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        bl = np.array(studies[t.baseline_study_uid].pose["matrix"])
        fu = np.array(studies[t.followup_study_uid].pose["matrix"])
        np.testing.assert_allclose(m @ bl, fu, atol=1e-6)
        assert 0 < np.linalg.norm(m[:3, 3]) < 40 and max(abs(a) for a in t.rotation_deg) <= 3.5
        assert (
            studies[t.baseline_study_uid].frame_of_reference_uid
            != studies[t.followup_study_uid].frame_of_reference_uid
        )


def _sitk_image(datasets: list[pydicom.Dataset]):
    import SimpleITK as sitk

    grid = _grid_of(datasets)
    hu = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets]).astype(np.float32)
    image = sitk.GetImageFromArray(np.clip(hu, -1024, 3000))
    normal = grid.normal * np.sign(grid.slice_step)
    image.SetOrigin(grid.origin)
    image.SetSpacing((grid.pixel_spacing[1], grid.pixel_spacing[0], abs(grid.slice_step)))
    image.SetDirection(np.column_stack([grid.row_dir, grid.col_dir, normal]).ravel().tolist())
    return image


def _mismatch(fixed, moving, transform) -> float:
    import SimpleITK as sitk

    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, -1000.0)
    return float(np.mean(np.abs(sitk.GetArrayFromImage(warped) - sitk.GetArrayFromImage(fixed))))


def test_the_true_transform_aligns_follow_up_to_baseline_in_simpleitk_terms(
    export: tuple[Path, ExportManifest],
) -> None:
    """Resampling the follow-up through ``baseline_to_followup`` (fixed=baseline) lines it up."""
    import SimpleITK as sitk

    root, manifest = export
    defective = {d.series_uid for d in manifest.defects}
    for t in [t for t in manifest.transforms if t.modality == "CT"][:2]:
        pair = []
        for study_uid in (t.baseline_study_uid, t.followup_study_uid):
            series = next(s for s in manifest.series if s.study_uid == study_uid and s.kind == "ct_body")
            if series.series_uid in defective:
                break
            pair.append(_sitk_image(_series_datasets(root, manifest, series.series_uid)))
        if len(pair) < 2:
            continue
        fixed, moving = pair
        true = sitk.AffineTransform(3)
        m = np.array(t.baseline_to_followup)
        true.SetMatrix(m[:3, :3].ravel().tolist())
        true.SetTranslation(m[:3, 3].tolist())
        identity = sitk.Transform(3, sitk.sitkIdentity)
        assert _mismatch(fixed, moving, true) < 0.6 * _mismatch(fixed, moving, identity)


def test_lesions_change_size_and_their_voxels_match_their_volume(export: tuple[Path, ExportManifest]) -> None:
    _root, manifest = export
    assert manifest.lesions
    studies = {s.study_uid: s for s in manifest.studies}
    compared = 0
    for lesion in manifest.lesions:
        assert lesion.volume_followup_ml / lesion.volume_baseline_ml == pytest.approx(
            np.prod(np.array(lesion.radii_followup_mm) / np.array(lesion.radii_baseline_mm)), rel=1e-3
        )
        for series in manifest.series:
            if (
                series.kind != "ct_body"
                or lesion.lesion not in series.lesion_voxels
                or lesion.frame != "body"
            ):
                continue
            voxel_ml = series.pixel_spacing[0] * series.pixel_spacing[1] * series.slice_spacing / 1000.0
            followup = studies[series.study_uid].timepoint == "followup"
            truth = lesion.volume_followup_ml if followup else lesion.volume_baseline_ml
            if truth > 4.0:  # big enough for the coarse test grid
                assert series.lesion_voxels[lesion.lesion] * voxel_ml == pytest.approx(truth, rel=0.35)
                compared += 1
    assert compared > 0


def test_same_seed_gives_byte_identical_files_with_a_process_pool(tmp_path: Path) -> None:
    runs = []
    for workers in (1, 2):
        manifest = generate_hospital_export(
            tmp_path / f"w{workers}", sites=3, patients=3, seed=SEED, size="small", workers=workers
        )
        runs.append((_tree_digests(tmp_path / f"w{workers}"), manifest.to_dict()))
    (files_a, a), (files_b, b) = runs
    assert files_a == files_b and len(files_a) > 100
    for d in (a, b):
        d.pop("seconds")
        d.pop("export_dir")
    assert a == b


def test_another_seed_gives_other_people(tmp_path: Path) -> None:
    one = generate_hospital_export(
        tmp_path / "a", sites=1, patients=1, seed=1, size="small", broken=False, workers=1
    )
    two = generate_hospital_export(
        tmp_path / "b", sites=1, patients=1, seed=2, size="small", broken=False, workers=1
    )
    assert one.patients[0].identity["patient_id"] != two.patients[0].identity["patient_id"]
    assert not one.broken_files and not two.broken_files
    assert {f.series_uid for f in one.files}.isdisjoint({f.series_uid for f in two.files})


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        generate_hospital_export(tmp_path / "x", size="huge")
    with pytest.raises(ConfigError):
        generate_hospital_export(tmp_path / "x", size="small", sites=3, patients=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("someone's data")
    with pytest.raises(ConfigError):
        generate_hospital_export(tmp_path / "full", size="small", patients=1, sites=1)
    with pytest.raises(ConfigError):
        generate_hospital_export(tmp_path / "y", size="small", manifest_path=tmp_path / "y" / "m.json")
    assert (tmp_path / "full" / "keep.txt").read_text() == "someone's data"


@pytest.mark.parametrize("site_index", [0, 1, 2])  # explicit VR, implicit VR, RLE lossless
def test_fast_slice_writer_matches_pydicom_save_as(site_index: int, tmp_path: Path) -> None:
    from pydicom.uid import CTImageStorage

    from curata.demo import synth

    plan = synth._plan(tmp_path, sites=3, patients=3, seed=5, preset=synth.SIZES["small"], broken=False)
    job = next(j for j in plan.jobs if j.site.key == synth.SITES[site_index].key and j.kind == "ct_body")
    template = synth._header(job, CTImageStorage)
    writer = synth._SliceWriter(template, job.site, CTImageStorage)
    frame = (
        np.arange(job.grid.shape[1] * job.grid.shape[2], dtype=np.uint16).reshape(job.grid.shape[1:]) % 3000
    )
    elements = synth._slice_elements(job, 3, job.sop_uids[3], frame)
    slow = synth._file_bytes(
        synth._slice_dataset(template, elements), job.site, CTImageStorage, job.sop_uids[3]
    )
    assert writer.slice_bytes(job.sop_uids[3], elements) == slow
    assert "Müller" not in str(pydicom.dcmread(__import__("io").BytesIO(slow)).PatientName)  # parses back


def test_ground_truth_labels_match_the_files(export: tuple[Path, ExportManifest]) -> None:
    root, manifest = export
    for series in [s for s in manifest.series if s.kind in ("ct_body", "mr_t1")][:4]:
        labels, affine, names = manifest.labels(series.series_uid)
        assert labels.shape == (series.slices_planned, series.rows, series.columns)
        for lesion, count in series.lesion_voxels.items():
            value = next(v for v, name in names.items() if name == lesion)
            assert int((labels == value).sum()) == count
        first = next(f for f in manifest.files_of(series.series_uid) if f.instance_number == 1)
        position = np.array(_read(root, first.path).ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(affine[:3, 3], position, atol=1e-3)
        assert names[int(an.Tissue.AIR)] == "air" and (labels == an.Tissue.AIR).any()
