"""Pre-processing against the real peers, side by side in one run, printing ratios.

1. ``curata convert`` vs ``dcm2niix`` on the same CT series (uncompressed and gzip output);
2. axis-aligned linear resampling: Curata's separable path vs a plain SimpleITK ``Resample`` call;
3. rigid registration of a 256^3 pair with a known transform: Curata (SimpleITK) vs Debian's ``elastix``.

    .venv/bin/python bench/preprocess.py            # full sizes (200x512x512 CT, 256^3 pair)
    .venv/bin/python bench/preprocess.py --quick    # small sizes, a smoke run

Writes ``bench/results/preprocess.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import console, cores, write_json
from curata.preprocess import spatial
from curata.preprocess.convert import convert_folder
from curata.preprocess.register import register, rigid_error
from curata.preprocess.synthetic import axial_slices, body_phantom, write_series
from curata.preprocess.volume import Volume

RESULTS = Path(__file__).resolve().parent / "results" / "preprocess.json"
VENV_BIN = Path(sys.executable).parent


def _cpu() -> float:
    """CPU seconds of this process and its finished children: on a shared, loaded machine wall time
    measures the neighbours; CPU time measures the work."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


CPU: dict[int, float] = {}


def best_of(n: int, fn: Any) -> tuple[float, Any]:
    """Best wall time of ``n`` runs; the CPU seconds of that best run go to ``CPU[id(fn)]``."""
    best, out = math.inf, None
    for _ in range(n):
        t, c = time.perf_counter(), _cpu()
        out = fn()
        wall, cpu = time.perf_counter() - t, _cpu() - c
        if wall < best:
            best, CPU[id(fn)] = wall, cpu
    return best, out


def ct_like(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Stored values of a CT-like volume: air, an elliptic body with organs and bone, scanner noise."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:ny, :nx]
    body = ((x - nx / 2) / (0.42 * nx)) ** 2 + ((y - ny / 2) / (0.32 * ny)) ** 2 < 1
    organ = ((x - 0.6 * nx) / (0.1 * nx)) ** 2 + ((y - 0.45 * ny) / (0.08 * ny)) ** 2 < 1
    bone = ((x - nx / 2) / (0.04 * nx)) ** 2 + ((y - 0.72 * ny) / (0.04 * ny)) ** 2 < 1
    plane = np.where(body, 1064, 24).astype(np.int16)
    plane[organ] = 1084
    plane[bone] = 1800
    out = np.empty(shape, np.int16)
    for k in range(nz):
        out[k] = plane + rng.normal(0, 12, plane.shape).astype(np.int16) * body
    return out


# -- 1. conversion ------------------------------------------------------------------------------------------------
def bench_convert(work: Path, shape: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    src = work / "ct"
    write_series(src, axial_slices(ct_like(shape), spacing=1.25), pixel_spacing=(0.7, 0.7), shuffle_seed=None)
    dcm2niix = shutil.which("dcm2niix")
    rows: dict[str, Any] = {"shape": list(shape), "megabytes": round(np.prod(shape) * 2 / 1e6, 1)}

    def run_d2n(gz: bool) -> Path:
        out = work / f"d2n-{'gz' if gz else 'raw'}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        subprocess.run(
            [dcm2niix, "-z", "y" if gz else "n", "-f", "%s_%d", "-o", str(out), str(src)],
            check=True,
            capture_output=True,
        )
        return next(out.glob("*.nii*"))

    def run_ours(fmt: str) -> Path:
        out = work / f"cur-{fmt}"
        shutil.rmtree(out, ignore_errors=True)
        res = convert_folder(src, out, fmt=fmt)  # type: ignore[arg-type]
        return res.converted[0].volume_path

    def run_cli(fmt: str) -> Path:
        out = work / f"cli-{fmt}"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            [str(VENV_BIN / "curata"), "convert", str(src), str(out), "-f", fmt],
            check=True,
            capture_output=True,
        )
        return next(out.glob("*.nii*"))

    for label, fn in [
        ("dcm2niix", lambda: run_d2n(False)),
        ("curata (in-process)", lambda: run_ours("nifti")),
        ("curata convert (CLI)", lambda: run_cli("nifti")),
        ("dcm2niix -z y", lambda: run_d2n(True)),
        ("curata (in-process) gz", lambda: run_ours("nifti-gz")),
        ("curata convert -f nifti-gz (CLI)", lambda: run_cli("nifti-gz")),
    ]:
        seconds, path = best_of(repeats, fn)
        cpu = CPU[id(fn)]
        rows[label] = {
            "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),
            "bytes": path.stat().st_size,
        }
        console.print(
            f"  convert {label:34s} {seconds:7.3f} s wall {cpu:7.3f} s CPU {path.stat().st_size / 1e6:8.1f} MB"
        )
    a, b = nib.load(run_d2n(False)), nib.load(run_ours("nifti"))
    rows["voxels_identical"] = bool(np.array_equal(a.dataobj.get_unscaled(), b.dataobj.get_unscaled()))
    rows["affine_max_diff_mm"] = float(np.abs(a.affine - b.affine).max())
    raw, gz = rows["dcm2niix"]["seconds"], rows["dcm2niix -z y"]["seconds"]
    rows["ratio_uncompressed_curata_over_dcm2niix"] = round(rows["curata (in-process)"]["seconds"] / raw, 3)
    rows["ratio_uncompressed_cli_over_dcm2niix"] = round(rows["curata convert (CLI)"]["seconds"] / raw, 3)
    rows["speedup_gzip_dcm2niix_over_curata"] = round(gz / rows["curata (in-process) gz"]["seconds"], 2)
    rows["speedup_gzip_dcm2niix_over_cli"] = round(
        gz / rows["curata convert -f nifti-gz (CLI)"]["seconds"], 2
    )
    cpu_raw, cpu_gz = rows["dcm2niix"]["cpu_seconds"], rows["dcm2niix -z y"]["cpu_seconds"]
    rows["cpu_ratio_uncompressed_curata_over_dcm2niix"] = round(
        rows["curata (in-process)"]["cpu_seconds"] / cpu_raw, 3
    )
    rows["cpu_speedup_gzip_dcm2niix_over_curata"] = round(
        cpu_gz / rows["curata (in-process) gz"]["cpu_seconds"], 2
    )
    return rows


# -- 2. resampling ------------------------------------------------------------------------------------------------
def bench_resample(shape: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    data = ct_like(shape).astype(np.float32) - 1024
    aff = np.diag([-0.7, -0.7, 1.25, 1.0])
    vol = Volume(np.asfortranarray(data.T), aff)
    affine, out_shape = spatial.spacing_grid(vol, (1.0, 1.0, 1.0))
    n_out = int(np.prod(out_shape))
    run_fast = lambda: spatial.resample_separable(vol, affine, out_shape, fill=-1024.0)  # noqa: E731
    fast_s, fast = best_of(repeats, run_fast)
    fast_cpu = CPU[id(run_fast)]
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    src = spatial.to_sitk(vol)
    ref = sitk.Image([int(s) for s in out_shape], sitk.sitkFloat32)
    ref.SetSpacing([1.0, 1.0, 1.0])
    ref.SetDirection(src.GetDirection())
    ref.SetOrigin([float(v) for v in spatial.LPS @ affine[:3, 3]])
    run_one = lambda: sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, -1024.0)  # noqa: E731
    try:
        one_s, slow = best_of(repeats, run_one)
        one_cpu = CPU[id(run_one)]
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        all_s, _ = best_of(
            repeats, lambda: sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, -1024.0)
        )
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    diff = float(np.abs(sitk.GetArrayFromImage(slow).T - fast.data).max())
    row = {
        "input": list(shape),
        "output": list(out_shape),
        "curata_separable_1_thread_s": round(fast_s, 3),
        "curata_mvoxel_per_s": round(n_out / fast_s / 1e6, 1),
        "curata_cpu_s": round(fast_cpu, 3),
        "curata_mvoxel_per_cpu_s": round(n_out / fast_cpu / 1e6, 1),
        "simpleitk_1_thread_cpu_s": round(one_cpu, 3),
        "simpleitk_1_thread_s": round(one_s, 3),
        "simpleitk_mvoxel_per_s": round(n_out / one_s / 1e6, 1),
        f"simpleitk_{threads}_threads_s": round(all_s, 3),
        "speedup_vs_simpleitk_1_thread": round(one_s / fast_s, 2),
        "max_abs_diff_hu": diff,
    }
    console.print(
        f"  resample {shape} -> {out_shape}: curata {fast_s:.3f} s ({row['curata_mvoxel_per_s']} Mvox/s wall, "
        f"{row['curata_mvoxel_per_cpu_s']} per CPU-second), "
        f"SimpleITK 1 thread {one_s:.3f} s, {threads} threads {all_s:.3f} s, max diff {diff:.2e}"
    )
    return row


# -- 3. registration ------------------------------------------------------------------------------------------------
ELASTIX_RIGID = """(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(FixedImageDimension 3)
(MovingImageDimension 3)
(UseDirectionCosines "true")
(Registration "MultiResolutionRegistration")
(Interpolator "BSplineInterpolator")
(ResampleInterpolator "FinalBSplineInterpolator")
(Resampler "DefaultResampler")
(FixedImagePyramid "FixedSmoothingImagePyramid")
(MovingImagePyramid "MovingSmoothingImagePyramid")
(Optimizer "AdaptiveStochasticGradientDescent")
(Transform "EulerTransform")
(Metric "AdvancedMattesMutualInformation")
(AutomaticScalesEstimation "true")
(AutomaticTransformInitialization "true")
(HowToCombineTransforms "Compose")
(NumberOfHistogramBins 32)
(ErodeMask "false")
(NumberOfResolutions 4)
(MaximumNumberOfIterations 250)
(NumberOfSpatialSamples 2048)
(NewSamplesEveryIteration "true")
(ImageSampler "RandomCoordinate")
(BSplineInterpolationOrder 1)
(FinalBSplineInterpolationOrder 3)
(DefaultPixelValue -1000)
(WriteResultImage "false")
(ResultImagePixelType "float")
(ResultImageFormat "nii")
"""


def _elastix_transform(path: Path) -> sitk.Transform:
    text = path.read_text()

    def values(name: str) -> list[float]:
        m = re.search(rf"\({name} ([^)]*)\)", text)
        assert m, f"{name} missing from {path}"
        return [float(v) for v in m.group(1).split()]

    p = values("TransformParameters")
    t = sitk.Euler3DTransform()
    t.SetCenter(values("CenterOfRotationPoint"))
    t.SetRotation(p[0], p[1], p[2])
    t.SetTranslation(p[3:6])
    return t


def bench_register(work: Path, n: int) -> dict[str, Any]:
    data = body_phantom((n, n, n))
    aff = np.diag([-1.0, -1.0, 1.0, 1.0])
    aff[:3, 3] = [n / 2, n / 2, -n / 2]
    fixed = Volume(np.asfortranarray(data.T), aff)
    f_img = spatial.to_sitk(fixed)
    truth = sitk.Euler3DTransform()
    truth.SetCenter(f_img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in f_img.GetSize()]))
    truth.SetRotation(math.radians(4), math.radians(-3), math.radians(5))
    truth.SetTranslation((6.0, -4.0, 3.0))
    m_img = sitk.Resample(f_img, f_img, truth, sitk.sitkLinear, -1000.0)
    moving = spatial.from_sitk(m_img)
    expected = truth.GetInverse()
    idx = np.stack(np.meshgrid(*[np.linspace(n * 0.2, n * 0.8, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    points = np.array([f_img.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in idx])
    row: dict[str, Any] = {"size": n, "voxel_mm": 1.0, "cores": cores()}

    t, c = time.perf_counter(), _cpu()
    # a same-modality pair: mean squares, which takes Curata's Gauss-Newton rigid path
    ours = register(fixed, moving, kind="rigid", metric="meansquares", threads=cores())
    ours_s, ours_cpu = time.perf_counter() - t, _cpu() - c
    err_mm, err_deg = rigid_error(ours.transform, expected, points)
    row["curata"] = {
        "seconds": round(ours_s, 2),
        "cpu_seconds": round(ours_cpu, 2),
        "error_mm": round(err_mm, 4),
        "error_deg": round(err_deg, 4),
        "quality": ours.quality(),
    }
    console.print(
        f"  register curata: {ours_s:.2f} s ({ours_cpu:.1f} CPU s), error {err_mm:.3f} mm / {err_deg:.3f} deg"
    )

    elastix = shutil.which("elastix")
    if elastix:
        sitk.WriteImage(f_img, str(work / "fixed.nii"))
        sitk.WriteImage(m_img, str(work / "moving.nii"))
        (work / "rigid.txt").write_text(ELASTIX_RIGID)
        out = work / "elastix"
        out.mkdir(exist_ok=True)
        t, c = time.perf_counter(), _cpu()
        subprocess.run(
            [
                elastix,
                "-f",
                str(work / "fixed.nii"),
                "-m",
                str(work / "moving.nii"),
                "-p",
                str(work / "rigid.txt"),
                "-out",
                str(out),
                "-threads",
                str(cores()),
            ],
            check=True,
            capture_output=True,
        )
        el_s, el_cpu = time.perf_counter() - t, _cpu() - c
        e_mm, e_deg = rigid_error(_elastix_transform(out / "TransformParameters.0.txt"), expected, points)
        row["elastix"] = {
            "seconds": round(el_s, 2),
            "cpu_seconds": round(el_cpu, 2),
            "error_mm": round(e_mm, 4),
            "error_deg": round(e_deg, 4),
        }
        row["speedup_vs_elastix"] = round(el_s / ours_s, 2)
        row["cpu_speedup_vs_elastix"] = round(el_cpu / ours_cpu, 2)
        console.print(
            f"  register elastix: {el_s:.2f} s ({el_cpu:.1f} CPU s), error {e_mm:.3f} mm / {e_deg:.3f} deg"
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", choices=["convert", "resample", "register"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["convert", "resample", "register"])
    ct_shape = (40, 256, 256) if args.quick else (200, 512, 512)
    reg_n = 96 if args.quick else 256
    repeats = 1 if args.quick else 3
    results: dict[str, Any] = {
        "cores": cores(),
        "quick": args.quick,
        "load_average_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="curata-bench-") as tmp:
        work = Path(tmp)
        if "convert" in only:
            console.print(f"[bold]1. convert[/] {ct_shape} CT series")
            results["convert"] = bench_convert(work, ct_shape, repeats)
        if "resample" in only:
            console.print("[bold]2. resample[/] 0.7x0.7x1.25 mm -> 1 mm, linear")
            results["resample"] = bench_resample(ct_shape, repeats)
        if "register" in only:
            console.print(f"[bold]3. rigid registration[/] {reg_n}^3 pair, known transform")
            results["register"] = bench_register(work, reg_n)
    results["load_average_at_end"] = os.getloadavg()[0]
    write_json(RESULTS, results)
    console.print("[bold]ratios[/]")
    if "convert" in results:
        c = results["convert"]
        console.print(
            f"  convert uncompressed: curata/dcm2niix time {c['ratio_uncompressed_curata_over_dcm2niix']}x "
            f"(CLI incl. Python start {c['ratio_uncompressed_cli_over_dcm2niix']}x; goal <= 1.2x); "
            f"gzip: curata {c['speedup_gzip_dcm2niix_over_curata']}x faster (CLI {c['speedup_gzip_dcm2niix_over_cli']}x; goal >= 3x); "
            f"voxels identical {c['voxels_identical']}; CPU-time ratios: uncompressed "
            f"{c['cpu_ratio_uncompressed_curata_over_dcm2niix']}x, gzip {c['cpu_speedup_gzip_dcm2niix_over_curata']}x faster"
        )
    if "resample" in results:
        r = results["resample"]
        console.print(
            f"  resample: {r['curata_mvoxel_per_s']} Mvoxel/s wall, {r['curata_mvoxel_per_cpu_s']} per CPU-second "
            f"(one thread; goal >= 150), "
            f"{r['speedup_vs_simpleitk_1_thread']}x SimpleITK on one thread, max diff {r['max_abs_diff_hu']:.1e} HU"
        )
    if "register" in results:
        g = results["register"]
        el = g.get("elastix", {})
        console.print(
            f"  register: curata {g['curata']['seconds']} s / {g['curata']['error_mm']} mm vs elastix "
            f"{el.get('seconds')} s / {el.get('error_mm')} mm (goal <= 20 s, < 0.1 voxel)"
        )
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
