"""Building and running a trained segmentation network (the U-Net or a torchvision model):
shared by training, evaluation and the pyfunc.

torch only (no Prefect, no MLflow) so a registered model loads without the pipeline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.segmentation import create
from segen.serving.images import standardise
from segen.serving.model_folder import load_model_folder, save_model_folder
from segen.serving.tiling import pad_to, tile_of, tiled_logits

WEIGHTS = "model.pt"
CONFIG = "model.json"
ARCH_FIELDS = {"unet": ("depth", "base_width")}  # model-config keys an arch is built from


def build_segmenter(config: dict[str, Any]) -> nn.Module:
    """The untrained network of a model config, by its "arch" (model folders written before
    there was a choice hold a U-Net and no "arch")."""
    arch = config.get("arch", "unet")
    return create(arch, in_channels=config["in_channels"], num_classes=len(config["classes"]),
                  **{k: config[k] for k in ARCH_FIELDS.get(arch, ())})


def save_segmenter(model: nn.Module, config: dict[str, Any], out_dir: Path) -> None:
    save_model_folder(out_dir, CONFIG, config, WEIGHTS, model.state_dict())


def load_segmenter(model_dir: Path, device: torch.device
                   ) -> tuple[nn.Module, dict[str, Any]]:
    config, state = load_model_folder(model_dir, CONFIG, WEIGHTS)
    model = build_segmenter(config)
    model.load_state_dict(state)
    return model.to(device).eval(), config


# The names from before there was more than a U-Net, for the callers that still use them.
build_unet, save_unet, load_unet = build_segmenter, save_segmenter, load_segmenter


def _geometry(config: dict[str, Any]) -> dict[str, Any]:
    """The model's preprocess geometry (model folders from before it: a square image_size)."""
    if "geometry" in config:
        return config["geometry"]
    size = config["image_size"]
    return {"image_size": [size, size], "long_side": None, "pad_multiple": 1}


def network_size(config: dict[str, Any], height: int, width: int) -> tuple[int, int, int, int]:
    """An input of (height, width) as the network sees it: resized as preprocess resized the
    training images to (h, w), then padded to (H, W), multiples of pad_multiple."""
    geometry = _geometry(config)
    if geometry["image_size"] is not None:
        h, w = geometry["image_size"]
    else:
        scale = geometry["long_side"] / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
    m = geometry["pad_multiple"]
    return h, w, -(-h // m) * m, -(-w // m) * m


def _masked_argmax(logits: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """Class ids, never an ignored class (their channels are out of the argmax)."""
    ignored = config.get("ignore_ids") or []
    if ignored:
        logits = logits.clone()
        logits[:, ignored] = float("-inf")
    return logits.argmax(1).to(torch.uint8)


def _logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model(x).float()


def _fill(config: dict[str, Any], device: torch.device) -> torch.Tensor:
    """(C,) what preprocess's padding (uint8 0) standardises to, as in training."""
    mean, std = (torch.tensor(config[k], device=device) for k in ("mean", "std"))
    return -mean / std


def _network_logits(model: nn.Module, x: torch.Tensor, config: dict[str, Any],
                    device: torch.device) -> torch.Tensor:
    """Standardised (B, C, H, W) -> (B, K, H, W) logits: whole, or tile by tile when the
    model config has a tile_size."""
    tile = tile_of(config)
    if tile is None:
        return _logits(model, x, device)
    return tiled_logits(lambda t: _logits(model, t, device), x, tile, config["tile_overlap"],
                        _fill(config, x.device))


@torch.inference_mode()
def predict_canvas(model: nn.Module, images: torch.Tensor, config: dict[str, Any],
                   device: torch.device) -> torch.Tensor:
    """(B, H, W, C) uint8 preprocessed canvases (the network's own input size) -> (B, H, W)
    uint8 class ids on the device."""
    x = standardise(images.to(device, non_blocking=True), config["mean"], config["std"])
    return _masked_argmax(_network_logits(model, x, config, device), config)


@torch.inference_mode()
def predict_masks(model: nn.Module, images: np.ndarray, config: dict[str, Any],
                  batch_size: int, device: torch.device) -> np.ndarray:
    """(N, H, W, C) uint8 images of any one size -> (N, H, W) uint8 class ids at that size.

    Each batch is resized as preprocess resized the training data, padded at the bottom and
    right to the network's multiple, predicted (whole, or in tiles when the model config has a
    tile_size), cropped, and its logits resized back."""
    height, width = images.shape[1:3]
    h, w, padded_h, padded_w = network_size(config, height, width)
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        x = standardise(batch.to(device), config["mean"], config["std"])
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True)
        x = pad_to(x, padded_h, padded_w, _fill(config, x.device))
        logits = _network_logits(model, x, config, device)[..., :h, :w]
        if (h, w) != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear")
        out.append(_masked_argmax(logits, config).cpu().numpy())
    return np.concatenate(out)
