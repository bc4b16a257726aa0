"""Body-like phantoms for the demo: tissue label volumes on a DICOM grid, then CT or MR intensities.

Anatomy is described as simple solids (ellipsoids, elliptic cylinders, rib bands) in a *body frame*
(LPS millimetres: +x patient left, +y posterior, +z head). A study places the body in the scanner
with a rigid *pose* (``p_scanner = R @ p_body + t``), so a follow-up lying slightly differently is
the same anatomy under another pose. Every solid is evaluated only inside its bounding box, with its
local coordinates built from three 1-D ramps (the grid is a regular lattice), so a 512x512x110 CT is
painted in about a second without per-voxel Python loops.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from scipy import ndimage


class Tissue(IntEnum):
    """Label values of the phantom; lesions use ``LESION_BASE + index``."""

    AIR = 0
    SKIN = 1
    FAT = 2
    MUSCLE = 3
    LUNG = 4
    BONE = 5
    MARROW = 6
    DISC = 7
    CSF = 8
    LIVER = 9
    SPLEEN = 10
    KIDNEY = 11
    BLOOD = 12
    GREY_MATTER = 13
    WHITE_MATTER = 14
    TABLE = 15
    AIRWAY = 16


LESION_BASE = 100

# Mean CT numbers (HU) per tissue, unenhanced / portal-venous contrast.
CT_HU: dict[int, tuple[float, float]] = {
    Tissue.AIR: (-1000, -1000),
    Tissue.SKIN: (30, 40),
    Tissue.FAT: (-100, -100),
    Tissue.MUSCLE: (45, 60),
    Tissue.LUNG: (-850, -850),
    Tissue.BONE: (900, 900),
    Tissue.MARROW: (250, 260),
    Tissue.DISC: (80, 90),
    Tissue.CSF: (10, 10),
    Tissue.LIVER: (60, 110),
    Tissue.SPLEEN: (50, 120),
    Tissue.KIDNEY: (35, 170),
    Tissue.BLOOD: (45, 160),
    Tissue.GREY_MATTER: (38, 45),
    Tissue.WHITE_MATTER: (28, 32),
    Tissue.TABLE: (250, 250),
    Tissue.AIRWAY: (-1000, -1000),
}

# MR signal (arbitrary units) per tissue for T1-weighted / T2-weighted spin-echo-like contrast.
MR_SIGNAL: dict[int, tuple[float, float]] = {
    Tissue.AIR: (0, 0),
    Tissue.SKIN: (600, 400),
    Tissue.FAT: (1000, 800),
    Tissue.MUSCLE: (450, 300),
    Tissue.LUNG: (30, 40),
    Tissue.BONE: (30, 30),
    Tissue.MARROW: (700, 500),
    Tissue.DISC: (300, 900),
    Tissue.CSF: (150, 1800),
    Tissue.LIVER: (600, 250),
    Tissue.SPLEEN: (450, 600),
    Tissue.KIDNEY: (500, 700),
    Tissue.BLOOD: (200, 150),
    Tissue.GREY_MATTER: (550, 1000),
    Tissue.WHITE_MATTER: (800, 750),
    Tissue.TABLE: (0, 0),
    Tissue.AIRWAY: (0, 0),
}

# Lesion appearance by host organ: CT (unenhanced, enhanced) and MR (T1, T2).
LESION_CT = {"lung": (30, 45), "liver": (30, 55), "kidney": (5, 8), "brain": (40, 70)}
LESION_MR = {"lung": (400, 600), "liver": (350, 900), "kidney": (150, 1700), "brain": (400, 1400)}


# --- rigid poses ----------------------------------------------------------------------------


def rotation_matrix(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """R = Rz @ Ry @ Rx (rotations about the LPS axes, degrees), as SimpleITK's Euler3DTransform (ZYX)."""
    ax, ay, az = np.deg2rad([rx_deg, ry_deg, rz_deg])
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


@dataclass(frozen=True)
class Pose:
    """Body frame to scanner (patient LPS) frame: ``p = rotation @ b + translation``."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = rotation_matrix(*self.rotation_deg)
        m[:3, 3] = self.translation_mm
        return m


def relative_transform(from_pose: Pose, to_pose: Pose) -> np.ndarray:
    """4x4 matrix mapping scanner points of the ``from`` study onto the same anatomy in the ``to`` study."""
    return to_pose.matrix @ np.linalg.inv(from_pose.matrix)


# --- the grid of a series --------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A stack of equally spaced slices: voxel (k, j, i) sits at
    ``origin + k*slice_step*normal + j*row_spacing*col_dir + i*col_spacing*row_dir``.

    ``row_dir``/``col_dir`` are DICOM ImageOrientationPatient's two vectors; PixelSpacing is
    ``(row_spacing, col_spacing)``; ``slice_step`` may be negative (slices ordered head to feet).
    """

    shape: tuple[int, int, int]
    pixel_spacing: tuple[float, float]
    slice_step: float
    origin: tuple[float, float, float]
    row_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
    col_dir: tuple[float, float, float] = (0.0, 1.0, 0.0)

    @functools.cached_property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_dir), np.asarray(self.col_dir))

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient of slice k (the centre of its first voxel)."""
        return np.asarray(self.origin) + k * self.slice_step * self.normal

    @functools.cached_property
    def axis_vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World step (mm) per index along k, j, i."""
        return (
            self.slice_step * self.normal,
            self.pixel_spacing[0] * np.asarray(self.col_dir, dtype=float),
            self.pixel_spacing[1] * np.asarray(self.row_dir, dtype=float),
        )

    def affine(self) -> np.ndarray:
        """4x4 LPS affine from (k, j, i) indices to millimetres."""
        m = np.eye(4)
        for axis, vec in enumerate(self.axis_vectors):
            m[:3, axis] = vec
        m[:3, 3] = self.origin
        return m


# --- solids ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Solid:
    """A solid in the body frame: centre, half-extents along its local axes, rotation of those axes."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    label: int
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def inside(self, u: list[np.ndarray]) -> np.ndarray:  # u: local coordinates / radii
        raise NotImplementedError


@dataclass(frozen=True)
class Ellipsoid(Solid):
    def inside(self, u: list[np.ndarray]) -> np.ndarray:
        return u[0] * u[0] + u[1] * u[1] + u[2] * u[2] <= 1.0


@dataclass(frozen=True)
class Cylinder(Solid):
    """Elliptic cylinder along the local z axis; radii[2] is the half height."""

    def inside(self, u: list[np.ndarray]) -> np.ndarray:
        return (u[0] * u[0] + u[1] * u[1] <= 1.0) & (np.abs(u[2]) <= 1.0)


@dataclass(frozen=True)
class RibBands(Solid):
    """Ribs: an elliptic ring (``inner``..1 of the radii) cut into slanted bands ``period`` mm apart."""

    inner: float = 0.9
    period: float = 28.0
    thickness: float = 9.0
    slope: float = 0.35  # ribs run down towards the front

    def inside(self, u: list[np.ndarray]) -> np.ndarray:
        rho = u[0] * u[0] + u[1] * u[1]
        ring = (rho <= 1.0) & (rho >= self.inner * self.inner) & (np.abs(u[2]) <= 1.0)
        z_mm = u[2] * self.radii[2] - self.slope * u[1] * self.radii[1]
        band = np.mod(z_mm, self.period) < self.thickness
        front_gap = (np.abs(u[0]) < 0.12) & (u[1] < 0)  # sternal cartilage gap
        return ring & band & ~front_gap


@dataclass
class Phantom:
    """An ordered list of solids (later ones paint over earlier ones) plus lesion bookkeeping."""

    solids: list[Solid] = field(default_factory=list)
    lesion_kinds: dict[int, str] = field(default_factory=dict)  # label -> host organ

    def add(self, solid: Solid) -> None:
        self.solids.append(solid)


@functools.lru_cache(maxsize=8192)
def _placed(solid: Solid, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """The solid's local axes (columns) and centre in the scanner frame."""
    rot = pose.matrix[:3, :3] @ rotation_matrix(*solid.rotation_deg)
    center = pose.matrix[:3, :3] @ np.asarray(solid.center) + np.asarray(pose.translation_mm)
    return rot, center


def _local_ramps(grid: Grid, solid: Solid, pose: Pose, box: list[slice]) -> list[np.ndarray]:
    """Local coordinates (divided by radii) of the voxels in ``box``, as broadcastable sums of ramps."""
    rot, center = _placed(solid, pose)
    steps = grid.axis_vectors
    base = np.asarray(grid.origin) - center
    coords = []
    for a in range(3):
        axis = rot[:, a] / solid.radii[a]
        ramps = [
            np.arange(box[d].start, box[d].stop, dtype=np.float32) * np.float32(steps[d] @ axis)
            for d in range(3)
        ]
        offset = np.float32(base @ axis)
        coords.append((ramps[0] + offset)[:, None, None] + ramps[1][None, :, None] + ramps[2][None, None, :])
    return coords


@functools.lru_cache(maxsize=8192)
def _bounding_box(grid: Grid, solid: Solid, pose: Pose) -> tuple[slice, ...] | None:
    rot, center = _placed(solid, pose)
    box = []
    for d, step in enumerate(grid.axis_vectors):
        length = float(np.linalg.norm(step))
        unit = step / length
        reach = float(np.sum(np.abs(unit @ rot) * np.asarray(solid.radii)))
        c = float((center - np.asarray(grid.origin)) @ unit) / length
        lo = int(np.floor(c - reach / length)) - 1
        hi = int(np.ceil(c + reach / length)) + 2
        lo, hi = max(lo, 0), min(hi, grid.shape[d])
        if lo >= hi:
            return None
        box.append(slice(lo, hi))
    return tuple(box)


def render_labels(
    grid: Grid, phantom: Phantom, pose: Pose, slices: tuple[int, int] | None = None
) -> np.ndarray:
    """Tissue labels (uint8) of ``phantom`` placed by ``pose``: the whole grid, or slices ``[k0, k1)``.

    Rendering a slab at a time keeps the working set small; slabs put together equal the whole volume.
    """
    k0, k1 = slices or (0, grid.shape[0])
    labels = np.zeros((k1 - k0, *grid.shape[1:]), dtype=np.uint8)
    for solid in phantom.solids:
        whole = _bounding_box(grid, solid, pose)
        if whole is None:
            continue
        box = list(whole)
        lo, hi = max(box[0].start, k0), min(box[0].stop, k1)
        if lo >= hi:
            continue
        box[0] = slice(lo, hi)
        mask = solid.inside(_local_ramps(grid, solid, pose, box))
        labels[lo - k0 : hi - k0, box[1], box[2]][mask] = solid.label
    return labels


# --- phantoms ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyShape:
    """A patient's build: torso half-width/half-depth (mm) and subcutaneous fat thickness."""

    half_width: float
    half_depth: float
    fat_mm: float


@dataclass(frozen=True)
class Lesion:
    """A lesion in the body (or head) frame; ``radii`` at baseline, ``scale_followup`` multiplies them."""

    organ: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    scale_followup: float

    def radii_at(self, followup: bool) -> tuple[float, float, float]:
        s = self.scale_followup if followup else 1.0
        return (self.radii[0] * s, self.radii[1] * s, self.radii[2] * s)

    def volume_ml(self, followup: bool) -> float:
        r = self.radii_at(followup)
        return float(4.0 / 3.0 * np.pi * r[0] * r[1] * r[2] / 1000.0)


def spine_y(body: BodyShape) -> float:
    return 0.45 * body.half_depth


def organ_solids(body: BodyShape) -> dict[str, Ellipsoid]:
    """The organs lesions can live in, so lesion placement and painting agree."""
    a, b = body.half_width, body.half_depth
    return {
        "lung_right": Ellipsoid((-0.45 * a, 0.05 * b, 110.0), (0.33 * a, 0.62 * b, 120.0), Tissue.LUNG),
        "lung_left": Ellipsoid((0.45 * a, 0.05 * b, 110.0), (0.31 * a, 0.62 * b, 115.0), Tissue.LUNG),
        "liver": Ellipsoid(
            (-0.3 * a, -0.05 * b, -40.0), (0.52 * a, 0.62 * b, 90.0), Tissue.LIVER, (0, 0, -10)
        ),
        "kidney_right": Ellipsoid(
            (-0.42 * a, spine_y(body), -110.0), (28.0, 30.0, 55.0), Tissue.KIDNEY, (0, 0, 20)
        ),
        "kidney_left": Ellipsoid(
            (0.42 * a, spine_y(body), -100.0), (28.0, 30.0, 55.0), Tissue.KIDNEY, (0, 0, -20)
        ),
    }


def body_phantom(body: BodyShape, lesions: list[Lesion], *, followup: bool, with_table: bool) -> Phantom:
    """Torso with skin, fat, muscle, lungs, airway, heart, aorta, liver, spleen, kidneys, spine, ribs."""
    a, b, f = body.half_width, body.half_depth, body.fat_mm
    ph = Phantom()
    if with_table:
        ph.add(
            Cylinder((0.0, b + 14.0, 0.0), (a + 60.0, 12.0, 900.0), Tissue.TABLE)
        )  # the patient lies on it
    ph.add(Cylinder((0.0, 0.0, 0.0), (a, b, 700.0), Tissue.SKIN))
    ph.add(Cylinder((0.0, 0.0, 0.0), (a - 2.5, b - 2.5, 700.0), Tissue.FAT))
    ph.add(Cylinder((0.0, 0.0, 0.0), (a - 2.5 - f, b - 2.5 - 0.8 * f, 700.0), Tissue.MUSCLE))
    organs = organ_solids(body)
    ph.add(organs["liver"])
    ph.add(Ellipsoid((0.55 * a, 0.3 * b, -20.0), (0.2 * a, 0.35 * b, 55.0), Tissue.SPLEEN, (0, 0, 25)))
    ph.add(organs["kidney_right"])
    ph.add(organs["kidney_left"])
    ph.add(RibBands((0.0, 0.0, 110.0), (a - 4.0 - f, b - 4.0 - 0.8 * f, 140.0), Tissue.BONE, inner=0.93))
    ph.add(organs["lung_right"])
    ph.add(organs["lung_left"])
    ph.add(Cylinder((0.0, -0.25 * b, 250.0), (9.0, 9.0, 110.0), Tissue.AIRWAY))
    ph.add(Ellipsoid((0.12 * a, -0.3 * b, 60.0), (0.36 * a, 0.45 * b, 55.0), Tissue.BLOOD, (0, 15, 20)))
    ph.add(Cylinder((0.1 * a, 0.15 * b, -30.0), (12.0, 12.0, 160.0), Tissue.BLOOD))
    _add_spine(ph, body)
    for index, lesion in enumerate(lesions):
        label = LESION_BASE + index
        ph.add(Ellipsoid(lesion.center, lesion.radii_at(followup), label))
        ph.lesion_kinds[label] = lesion.organ
    return ph


def _add_spine(ph: Phantom, body: BodyShape) -> None:
    y = spine_y(body)
    for z in np.arange(-280.0, 330.0, 30.0):
        ph.add(Cylinder((0.0, y, float(z)), (22.0, 18.0, 15.0), Tissue.DISC))
        ph.add(Cylinder((0.0, y, float(z)), (21.0, 17.0, 12.0), Tissue.BONE))
        ph.add(Cylinder((0.0, y, float(z)), (18.5, 14.5, 10.0), Tissue.MARROW))
        ph.add(Cylinder((0.0, y + 27.0, float(z)), (13.0, 12.0, 12.0), Tissue.BONE))
        ph.add(Ellipsoid((0.0, y + 44.0, float(z) - 6.0), (5.0, 10.0, 8.0), Tissue.BONE, (-25, 0, 0)))
    ph.add(Cylinder((0.0, y + 27.0, 25.0), (8.0, 8.0, 320.0), Tissue.CSF))


def head_phantom(scale: float, lesions: list[Lesion], *, followup: bool) -> Phantom:
    """Head: scalp, skull with marrow, CSF, grey and white matter, ventricles, lesions (head frame)."""
    ph = Phantom()
    r = np.array([74.0, 92.0, 100.0]) * scale

    def shell(offset: float, label: int) -> None:
        rx, ry, rz = (float(v) for v in r - offset)
        ph.add(Ellipsoid((0.0, 0.0, 0.0), (rx, ry, rz), label))

    ph.add(Cylinder((0.0, 10.0, -150.0), (55.0 * scale, 60.0 * scale, 80.0), Tissue.MUSCLE))  # neck
    shell(0.0, Tissue.SKIN)
    shell(2.0, Tissue.FAT)
    shell(6.0, Tissue.BONE)
    shell(8.0, Tissue.MARROW)
    shell(10.0, Tissue.BONE)
    shell(12.0, Tissue.CSF)
    shell(14.5, Tissue.GREY_MATTER)
    shell(19.0, Tissue.WHITE_MATTER)
    for side in (-1.0, 1.0):
        ph.add(
            Ellipsoid(
                (side * 9.0 * scale, -5.0, 12.0),
                (6.0 * scale, 26.0 * scale, 13.0),
                Tissue.CSF,
                (0, 0, side * 8),
            )
        )
    for index, lesion in enumerate(lesions):
        label = LESION_BASE + index
        ph.add(Ellipsoid(lesion.center, lesion.radii_at(followup), label))
        ph.lesion_kinds[label] = lesion.organ
    return ph


# --- intensities ---------------------------------------------------------------------------------


def _lut(
    phantom: Phantom,
    table: Mapping[int, tuple[float, float]],
    lesion_table: Mapping[str, tuple[float, float]],
    which: int,
) -> np.ndarray:
    lut = np.zeros(256, dtype=np.float32)
    for label, values in table.items():
        lut[int(label)] = values[which]
    for label, organ in phantom.lesion_kinds.items():
        lut[label] = lesion_table[organ][which]
    return lut


def partial_volume(volume: np.ndarray, sigma_px: float = 0.6) -> np.ndarray:
    """Soften edges in-plane as a scanner's point spread would (in place where possible)."""
    return ndimage.gaussian_filter(volume, sigma=(0.0, sigma_px, sigma_px), truncate=2.5, output=volume)


def ct_hounsfield(
    labels: np.ndarray, phantom: Phantom, *, contrast: bool, noise_hu: float, rng: np.random.Generator
) -> np.ndarray:
    """HU volume (float32): tissue means, point-spread blur, Gaussian noise of ``noise_hu`` std."""
    hu = _lut(phantom, CT_HU, LESION_CT, 1 if contrast else 0)[labels]
    partial_volume(hu)
    noise = rng.standard_normal(labels.shape, dtype=np.float32)
    noise *= np.float32(noise_hu)
    hu += noise
    return hu


@dataclass(frozen=True)
class BiasField:
    """Smooth multiplicative receive-coil field, 1 +/- ``strength``, from separable ramps over a volume."""

    shape: tuple[int, int, int]
    strength: float
    coefficients: tuple[float, float, float, float, float, float]

    @classmethod
    def random(cls, shape: tuple[int, int, int], strength: float, rng: np.random.Generator) -> BiasField:
        return cls(shape, strength, tuple(float(v) for v in rng.uniform(-1.0, 1.0, size=6)))  # type: ignore[arg-type]

    def slab(self, k0: int, k1: int) -> np.ndarray:
        ramps = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in self.shape]
        rz = ramps[0][k0:k1]
        c = [np.float32(v) for v in self.coefficients]
        field = (
            (c[0] * rz + c[5] * rz * rz)[:, None, None]
            + (c[1] * ramps[1] + c[3] * ramps[1] ** 2)[None, :, None]
            + (c[2] * ramps[2] + c[4] * ramps[2] ** 2)[None, None, :]
        )
        # |field| <= sum |c| everywhere, so the scale needs no pass over the whole volume
        field *= np.float32(self.strength / max(sum(abs(v) for v in self.coefficients), 1e-6))
        field += np.float32(1.0)
        return field


def motion_ghosts(signal: np.ndarray, amplitude_rad: float, period_lines: float, axis: int = 1) -> np.ndarray:
    """Periodic phase errors across k-space lines (phase-encode ``axis``) give the ghosts of breathing."""
    n = signal.shape[axis]
    k = np.arange(n)
    phase = np.exp(1j * amplitude_rad * np.sin(2.0 * np.pi * k / period_lines)).astype(np.complex64)
    shape = [1, 1, 1]
    shape[axis] = n
    kspace = np.fft.fft(signal.astype(np.complex64), axis=axis)
    kspace *= phase.reshape(shape)
    return np.fft.ifft(kspace, axis=axis)


def mr_signal(
    labels: np.ndarray,
    phantom: Phantom,
    *,
    weighting: str,
    noise_fraction: float,
    rng: np.random.Generator,
    bias: np.ndarray | None = None,
    ghost_amplitude: float = 0.0,
) -> np.ndarray:
    """MR magnitude (float32): tissue signal, bias field (``BiasField.slab``), optional motion ghosts,
    Rician noise of ``noise_fraction`` times the brightest tissue."""
    lut = mr_lut(phantom, weighting)
    signal = lut[labels]
    partial_volume(signal)
    if bias is not None:
        signal *= bias
    sigma = np.float32(noise_fraction * float(lut.max()))
    if ghost_amplitude > 0:
        complex_image = motion_ghosts(signal, ghost_amplitude, period_lines=4.0)
        real = complex_image.real.astype(np.float32)
        imag = complex_image.imag.astype(np.float32)
    else:
        real, imag = signal, np.zeros_like(signal)
    real += sigma * rng.standard_normal(labels.shape, dtype=np.float32)
    imag += sigma * rng.standard_normal(labels.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def mr_lut(phantom: Phantom, weighting: str) -> np.ndarray:
    return _lut(phantom, MR_SIGNAL, LESION_MR, 0 if weighting == "T1" else 1)


def attenuation_projection(labels: np.ndarray, phantom: Phantom, step_mm: float) -> np.ndarray:
    """Line integrals of attenuation (relative to water) along the rows of each slice: a radiograph row."""
    mu = np.clip(_lut(phantom, CT_HU, LESION_CT, 0) + 1000.0, 0.0, None) / 1000.0
    return mu[labels].sum(axis=1) * np.float32(step_mm)
