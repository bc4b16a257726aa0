"""A volume: voxels in NIfTI axis order, its RAS affine, and the stored-value scaling.

``data`` is indexed ``[i, j, k(, t)]`` exactly as NIfTI stores it (i fastest on disk), so the
affine means what it means in nibabel: ``RAS_mm = affine @ [i, j, k, 1]``. Stored values stay as the
scanner wrote them (int16/uint16) with ``slope``/``inter`` kept beside them, like dcm2niix, so a
conversion is lossless; ``real()`` gives float32 physical values.

Working format is Zarr (blosc-zstd with bitshuffle). gzip is written only at export, at the
fastest level (zlib level 1's size; ISA-L where installed), as a multi-member gzip compressed in
parallel blocks (every gzip reader accepts concatenated members).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np

from curata.errors import InputError

ZARR_COMPRESSOR = {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 2}  # 2 = BITSHUFFLE
GZIP_BLOCK = 8 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass
class Volume:
    data: np.ndarray
    affine: np.ndarray
    slope: float = 1.0
    inter: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def real(self) -> np.ndarray:
        """Physical values (HU for CT) as float32."""
        if self.slope == 1.0 and self.inter == 0.0 and self.data.dtype == np.float32:
            return self.data
        out = self.data.astype(np.float32)
        if self.slope != 1.0:
            out *= np.float32(self.slope)
        if self.inter != 0.0:
            out += np.float32(self.inter)
        return out

    def with_data(self, data: np.ndarray, affine: np.ndarray | None = None, **meta: Any) -> Volume:
        """A new float volume (scaling applied) on ``affine`` (default: this one's)."""
        return Volume(data, self.affine.copy() if affine is None else affine, 1.0, 0.0, {**self.meta, **meta})

    def to_nifti(self) -> nib.Nifti1Image:
        img = nib.Nifti1Image(self.data, self.affine)
        img.header.set_xyzt_units("mm", "sec")
        if self.data.dtype.kind in "iu":
            img.header.set_slope_inter(self.slope, self.inter)
        img.set_qform(self.affine, code=1)
        img.set_sform(self.affine, code=1)
        return img


# -- atomic file helpers --------------------------------------------------------------------------
def atomic_write_bytes(path: Path, payload: bytes | memoryview | list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            for part in payload if isinstance(payload, list) else [payload]:
                fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=_json_default) + "\n").encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- gzip ----------------------------------------------------------------------------------------
_deflate: Any
try:  # Intel ISA-L: deflate 4-5x faster than zlib; its level 2 gives zlib level 1's size
    from isal import isal_zlib as _deflate

    GZIP_LEVEL = 2
except ImportError:  # pragma: no cover - isal is a dependency; zlib stays correct
    _deflate = zlib
    GZIP_LEVEL = 1


def _gzip_member(block: memoryview, level: int) -> bytes:
    # wbits=31: a complete gzip member (header + deflate + crc32/size trailer); both drop the GIL.
    comp = _deflate.compressobj(level, _deflate.DEFLATED, 31)
    return comp.compress(block) + comp.flush()


def gzip_parallel(
    payload: bytes | memoryview, *, level: int = GZIP_LEVEL, threads: int | None = None
) -> list[bytes]:
    """Compress as concatenated gzip members, one per block, on a thread pool."""
    view = memoryview(payload).cast("B")
    blocks = [view[i : i + GZIP_BLOCK] for i in range(0, max(len(view), 1), GZIP_BLOCK)]
    workers = threads or os.cpu_count() or 1
    if workers == 1 or len(blocks) == 1:
        return [_gzip_member(b, level) for b in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: _gzip_member(b, level), blocks))


# -- NIfTI ---------------------------------------------------------------------------------------
def nifti_bytes(volume: Volume) -> list[Any]:
    """Header (+ pad to vox_offset) and the voxel bytes, without copying a Fortran-ordered array."""
    img = volume.to_nifti()
    header = img.header
    header.set_data_dtype(volume.data.dtype)
    header["vox_offset"] = 352
    head = header.binaryblock + b"\x00" * 4
    data = volume.data
    if not data.flags.f_contiguous:
        data = np.asfortranarray(data)
    if data.dtype.byteorder == ">":
        data = np.asfortranarray(data.astype(data.dtype.newbyteorder("<")))
    raw = data.T.reshape(-1).view(np.uint8).data if data.size else memoryview(b"")
    return [head, raw]


def write_nifti(volume: Volume, path: Path, *, gzip: bool | None = None, threads: int | None = None) -> Path:
    """Write ``path`` (.nii or .nii.gz by suffix or ``gzip``) atomically; gzip is level 1 in parallel."""
    gz = path.name.endswith(".gz") if gzip is None else gzip
    parts = nifti_bytes(volume)
    if gz:
        # The header is tiny; it is its own gzip member so the voxel bytes stay zero-copy.
        out = [
            _gzip_member(memoryview(bytes(parts[0])), GZIP_LEVEL),
            *gzip_parallel(parts[1], threads=threads),
        ]
        atomic_write_bytes(path, out)
    else:
        atomic_write_bytes(path, [bytes(parts[0]), parts[1]])
    return path


def read_nifti(path: Path) -> Volume:
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    data = (
        np.asanyarray(img.dataobj.get_unscaled()) if hasattr(img.dataobj, "get_unscaled") else img.get_fdata()
    )
    proxy: Any = img.dataobj
    slope, inter = getattr(proxy, "slope", None), getattr(proxy, "inter", None)
    return Volume(
        data=data,
        affine=np.asarray(img.affine, float),
        slope=float(slope) if slope is not None else 1.0,
        inter=float(inter) if inter is not None else 0.0,
    )


# -- Zarr ----------------------------------------------------------------------------------------
def _compressor():  # type: ignore[no-untyped-def]
    import numcodecs

    return numcodecs.get_codec(dict(ZARR_COMPRESSOR))


def write_zarr(volume: Volume, path: Path) -> Path:
    """A Zarr v2 folder (``zarr.DirectoryStore``), built under a temporary name and renamed."""
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _write_zarr_store(volume, zarr.DirectoryStore(str(tmp)))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _write_zarr_store(volume: Volume, store: Any) -> None:
    import zarr

    # Stored in C order (t,)k,j,i so each chunk is a slab of whole slices.
    arr = volume.data.T
    chunks = (*arr.shape[:-3], min(arr.shape[-3], 32), *arr.shape[-2:]) if arr.ndim >= 3 else arr.shape
    z = zarr.open_array(
        store, mode="w", shape=arr.shape, dtype=arr.dtype, chunks=chunks, compressor=_compressor()
    )
    z[...] = arr
    z.attrs.update(
        {
            "curata_volume": 1,
            "axes": "reversed-nifti",
            "affine": np.asarray(volume.affine, float).tolist(),
            "slope": float(volume.slope),
            "inter": float(volume.inter),
            "meta": json.loads(json.dumps(volume.meta, default=_json_default)),
        }
    )


def read_zarr(path: Path) -> Volume:
    import zarr

    try:
        z = zarr.open_array(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"not a Curata Zarr volume: {exc}", path=str(path)) from exc
    return _volume_from_zarr(z)


def _volume_from_zarr(z: Any) -> Volume:
    attrs = dict(z.attrs)
    if "affine" not in attrs:
        raise InputError("Zarr array has no 'affine' attribute; not written by Curata")
    return Volume(
        data=z[...].T,
        affine=np.asarray(attrs["affine"], float),
        slope=float(attrs.get("slope", 1.0)),
        inter=float(attrs.get("inter", 0.0)),
        meta=dict(attrs.get("meta", {})),
    )


def zarr_zip_bytes(volume: Volume) -> bytes:
    """One-file Zarr for the content-addressed store: a stored (uncompressed) zip of the chunk files,
    entries sorted and dated 1980-01-01, so the same volume always gives the same bytes and digest."""
    import io
    import zipfile

    store: dict[str, bytes] = {}
    _write_zarr_store(volume, store)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(store):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, bytes(store[name]))
    return buf.getvalue()


def volume_from_zarr_zip(payload: bytes) -> Volume:
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        zpath = Path(tmp) / "v.zarr.zip"
        zpath.write_bytes(payload)
        store = zarr.ZipStore(str(zpath), mode="r")
        try:
            return _volume_from_zarr(zarr.open_array(store, mode="r"))
        finally:
            store.close()


def read_volume(path: Path) -> Volume:
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    if name.endswith(".zarr"):
        return read_zarr(path)
    if name.endswith(".zarr.zip"):
        return volume_from_zarr_zip(path.read_bytes())
    raise InputError("unknown volume format (want .nii, .nii.gz, .zarr or .zarr.zip)", path=str(path))


def write_volume(volume: Volume, path: Path) -> Path:
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        return write_nifti(volume, path)
    if name.endswith(".zarr"):
        return write_zarr(volume, path)
    if name.endswith(".zarr.zip"):
        atomic_write_bytes(path, zarr_zip_bytes(volume))
        return path
    raise InputError("unknown volume format (want .nii, .nii.gz, .zarr or .zarr.zip)", path=str(path))
