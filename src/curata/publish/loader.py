"""Loaders over a release directory (an export): a MONAI-compatible datalist and a PyTorch ``Dataset``.

Torch stays optional: :class:`ReleaseDataset` works as a plain sequence and becomes a
``torch.utils.data.Dataset`` when torch is installed (``pip install curata[torch]``).

Example (iterates a split, trains nothing)::

    from curata.publish.loader import ReleaseDataset, ReleaseDirectory, torch_dataset

    release = ReleaseDirectory("exports/acme")       # reads manifest.json and datalist.json
    for item in ReleaseDataset(release, split="train", verify=True):
        image, label = item["image"], item["label"]  # numpy arrays (z, y, x), label may be None
        print(item["case_id"], image.shape, None if label is None else int(label.max()))

    # with torch: DataLoader(torch_dataset(release, "train"), batch_size=1, collate_fn=lambda b: b)
    # with MONAI: monai.data.Dataset(release.datalist("train"), transform=LoadImaged(...))
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from curata.errors import InputError, IntegrityError

SPLIT_KEYS = {"train": "training", "training": "training", "validation": "validation", "test": "test"}


class ReleaseDirectory:
    """An exported (or materialised) release on disk, checked against its manifest on demand."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise InputError(f"{self.root} has no manifest.json; is it a Curata release?")
        self.manifest = json.loads(manifest.read_bytes())
        self._files = {f["path"]: (f["sha256"], int(f["size"])) for f in self.manifest["files"]}
        datalist = self.root / "datalist.json"
        self._datalist = json.loads(datalist.read_bytes()) if datalist.is_file() else None

    @property
    def ref(self) -> str:
        return f"{self.manifest['release']}@{self.manifest['version']}"

    def splits(self) -> dict[str, str]:
        """Patient -> split."""
        return json.loads(self.read_bytes("splits.json"))

    def datalist(self, split: str = "train", *, absolute: bool = True) -> list[dict[str, Any]]:
        """MONAI decathlon-style items (``image``, ``label``...) of a split, paths absolute by default."""
        if self._datalist is None:
            raise InputError(f"{self.root} has no datalist.json (the release was built without 'monai')")
        key = SPLIT_KEYS.get(split)
        if key is None:
            raise InputError(f"unknown split {split!r}; use train, validation or test")
        items = []
        for item in self._datalist.get(key, []):
            out = dict(item)
            if absolute:
                for k in ("image", "label"):
                    if k in out:
                        out[k] = str(self.root / out[k])
            items.append(out)
        return items

    def read_bytes(self, rel: str, *, verify: bool = True) -> bytes:
        data = (self.root / rel).read_bytes()
        if verify:
            expected = self._files.get(rel)
            if expected is None:
                raise IntegrityError(f"{rel} is not listed in {self.root / 'manifest.json'}")
            if len(data) != expected[1] or hashlib.sha256(data).hexdigest() != expected[0]:
                raise IntegrityError(f"{self.root / rel} does not match its sha256 in the manifest")
        return data


def _load_nifti(data: bytes) -> Any:
    import nibabel as nib

    img = nib.Nifti1Image.from_bytes(data if data[:2] != b"\x1f\x8b" else __import__("gzip").decompress(data))
    return img.get_fdata(dtype="float32").transpose(2, 1, 0)  # (z, y, x) like the DICOM slices


class ReleaseDataset:
    """Items of one split: ``{"case_id", "image", "label", "patient"}`` with numpy arrays (or whatever
    ``transform`` makes of them). ``verify=True`` checks every file's sha256 against the manifest.

    A map-style dataset (``__len__`` and ``__getitem__``), so ``torch.utils.data.DataLoader`` takes it
    as it is; :func:`torch_dataset` gives a true ``torch.utils.data.Dataset`` subclass instance."""

    def __init__(
        self,
        release: ReleaseDirectory | Path | str,
        split: str = "train",
        *,
        verify: bool = True,
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.release = release if isinstance(release, ReleaseDirectory) else ReleaseDirectory(release)
        self.items = self.release.datalist(split, absolute=False)
        self.verify = verify
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        item = self.items[index]
        out: dict[str, Any] = {
            "case_id": item.get("case_id"),
            "patient": item.get("patient"),
            "image": _load_nifti(self.release.read_bytes(item["image"], verify=self.verify)),
            "label": _load_nifti(self.release.read_bytes(item["label"], verify=self.verify))
            if item.get("label")
            else None,
        }
        return self.transform(out) if self.transform else out

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]


def torch_dataset(
    release: ReleaseDirectory | Path | str,
    split: str = "train",
    *,
    verify: bool = True,
    transform: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """The split as a ``torch.utils.data.Dataset`` (torch is imported here, and only here)."""
    try:
        from torch.utils.data import Dataset
    except ImportError as exc:
        raise InputError("torch is not installed", hint="pip install 'curata[torch]'") from exc

    class TorchReleaseDataset(ReleaseDataset, Dataset):  # type: ignore[misc]
        pass

    return TorchReleaseDataset(release, split, verify=verify, transform=transform)
