"""AI pre-annotation models that run offline on the CPU: classical ones from Hounsfield units with
morphology (body, lungs, bone), a small MONAI UNet trained in Curata on a project's accepted labels,
and any MONAI bundle from a local folder.

Every model maps a CT volume (HU, slices x rows x columns, with its spacing) to a label map whose
values are the model's own labels; the service maps those onto the project's schema by name.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from curata.errors import AnnotationError

Predict = Callable[[np.ndarray, tuple[float, float, float]], np.ndarray]


@dataclass(frozen=True)
class AssistModel:
    name: str
    description: str
    labels: dict[str, int]  # label name -> value in the model's output
    predict: Predict = field(repr=False)
    kind: str = "classical"  # classical | unet | bundle


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def body_mask(hu: np.ndarray, _spacing: tuple[float, float, float] = (1, 1, 1)) -> np.ndarray:
    """The patient: above -500 HU, the largest object, holes filled slice by slice (lungs, bowel gas)."""
    body = _largest(hu > -500)  # no opening first: it would breach a thin chest wall
    return np.stack([ndimage.binary_fill_holes(s) for s in body]) if body.any() else body


def predict_body(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    return body_mask(hu, spacing).astype(np.uint16)


def predict_lungs(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Air inside the body (below -400 HU), cleaned by an opening, objects above 5 ml kept."""
    air = (hu < -400) & body_mask(hu, spacing)
    air = ndimage.binary_opening(air, iterations=1)
    lab, n = ndimage.label(air)
    if n == 0:
        return np.zeros(hu.shape, np.uint16)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(lab.ravel()) * voxel_ml
    sizes[0] = 0.0
    keep = np.flatnonzero(sizes >= min(5.0, 0.2 * float(sizes.max())))  # small fields: a fifth of the largest
    return np.isin(lab, keep).astype(np.uint16)


def predict_bone(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Bone: above 250 HU inside the body, small specks removed."""
    bone = (hu > 250) & body_mask(hu, spacing)
    return ndimage.binary_opening(bone, iterations=1).astype(np.uint16)


CLASSICAL: dict[str, AssistModel] = {
    "body": AssistModel(
        "body", "Body outline from HU (> -500, largest object, holes filled)", {"body": 1}, predict_body
    ),
    "lungs": AssistModel(
        "lungs", "Lungs: air inside the body (< -400 HU), opened, objects > 5 ml", {"lung": 1}, predict_lungs
    ),
    "bone": AssistModel("bone", "Bone: > 250 HU inside the body, opened", {"bone": 1}, predict_bone),
}


# -- a small MONAI UNet trained on accepted labels -----------------------------------------------------


def _require_torch() -> None:
    """The UNet needs torch and MONAI (the ``torch`` extra); the classical models do not."""
    import importlib.util

    missing = [m for m in ("torch", "monai") if importlib.util.find_spec(m) is None]
    if missing:
        raise AnnotationError(
            f"the UNet model needs {' and '.join(missing)}, which this installation lacks",
            hint="pip install 'curata[torch]' (the classical body/lungs/bone models need neither)",
        )


def _unet(out_channels: int) -> Any:
    _require_torch()
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=out_channels,
        channels=(8, 16, 32),
        strides=(2, 2),
        num_res_units=1,
    )


def _normalise(hu: np.ndarray) -> np.ndarray:
    return (np.clip(hu, -1000, 1000).astype(np.float32) + 1000.0) / 1000.0 - 1.0


def _to_net_grid(vol: np.ndarray, size: tuple[int, int, int], order: int) -> np.ndarray:
    return ndimage.zoom(vol, [t / s for t, s in zip(size, vol.shape, strict=True)], order=order)


TRAIN_SIZE = (16, 32, 32)  # a coarse grid: seconds on a CPU


def train_unet(
    cases: list[tuple[np.ndarray, np.ndarray]], n_labels: int, *, epochs: int = 40, seed: int = 0
) -> tuple[bytes, dict[str, Any]]:
    """Train the small UNet on (HU volume, label map) pairs resampled to ``TRAIN_SIZE``; returns the
    weights (torch state dict bytes) and the run's figures."""
    _require_torch()
    import torch
    from monai.losses import DiceCELoss

    if not cases:
        raise AnnotationError("no accepted labels to train on", hint="accept some cases first")
    torch.manual_seed(seed)
    x = torch.stack([torch.from_numpy(_to_net_grid(_normalise(h), TRAIN_SIZE, 1))[None] for h, _ in cases])
    y = torch.stack(
        [torch.from_numpy(_to_net_grid(lm.astype(np.int64), TRAIN_SIZE, 0))[None] for _, lm in cases]
    )
    net = _unet(n_labels + 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    losses = []
    net.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue(), {
        "epochs": epochs,
        "cases": len(cases),
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "grid": list(TRAIN_SIZE),
        "seed": seed,
    }


def unet_model(name: str, weights: bytes, labels: dict[str, int]) -> AssistModel:
    import torch

    net = _unet(len(labels) + 1)
    net.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    net.eval()

    def predict(hu: np.ndarray, _spacing: tuple[float, float, float]) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(_to_net_grid(_normalise(hu), TRAIN_SIZE, 1))[None, None]
            out = net(x)[0].argmax(0).numpy().astype(np.uint16)
        return _to_net_grid(out, hu.shape, 0).astype(np.uint16)

    return AssistModel(name, "MONAI UNet trained in Curata on accepted labels", labels, predict, kind="unet")


def unet_uncertainty(model_weights: bytes, n_labels: int, hu: np.ndarray) -> float:
    """Mean voxel entropy of the UNet's softmax: the active-learning score (higher: read it first)."""
    import torch

    net = _unet(n_labels + 1)
    net.load_state_dict(torch.load(io.BytesIO(model_weights), weights_only=True))
    net.eval()
    with torch.no_grad():
        p = torch.softmax(net(torch.from_numpy(_to_net_grid(_normalise(hu), TRAIN_SIZE, 1))[None, None]), 1)
        return float((-(p * torch.log(p + 1e-8)).sum(1)).mean())


# -- a MONAI bundle from a local folder --------------------------------------------------------------------


def bundle_model(folder: Path) -> AssistModel:
    """A MONAI bundle (``configs/inference.json`` with a ``network_def``, ``models/model.pt``): run on
    the volume resampled to the bundle's ``curata_input_size`` (or as it is), argmax of the output."""
    import torch
    from monai.bundle import ConfigParser

    cfg_path = folder / "configs" / "inference.json"
    weights = folder / "models" / "model.pt"
    if not cfg_path.is_file() or not weights.is_file():
        raise AnnotationError(
            f"{folder.name}: not a MONAI bundle", hint="configs/inference.json and models/model.pt"
        )
    parser = ConfigParser()
    parser.read_config(str(cfg_path))
    meta_path = folder / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    net.eval()
    names = meta.get("labels") or {"label": 1}
    size = parser.get("curata_input_size")

    def predict(hu: np.ndarray, _spacing: tuple[float, float, float]) -> np.ndarray:
        x = _normalise(hu)
        if size:
            x = _to_net_grid(x, tuple(size), 1)
        with torch.no_grad():
            out = (
                net(torch.from_numpy(np.ascontiguousarray(x))[None, None])[0]
                .argmax(0)
                .numpy()
                .astype(np.uint16)
            )
        return _to_net_grid(out, hu.shape, 0).astype(np.uint16) if size else out

    return AssistModel(
        meta.get("name", folder.name),
        meta.get("description", "MONAI bundle"),
        {str(k): int(v) for k, v in names.items()},
        predict,
        kind="bundle",
    )
