"""Building and running a trained U-Net: shared by training, evaluation and the pyfunc.

torch only (no Prefect, no MLflow) so a registered model loads without the pipeline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.segmentation import create
from models.unet import UNet
from segen.serving.images import standardise
from segen.serving.model_folder import load_model_folder, save_model_folder

WEIGHTS = "model.pt"
CONFIG = "model.json"


def build_unet(config: dict[str, Any]) -> UNet:
    return create("unet", in_channels=config["in_channels"],
                  num_classes=len(config["classes"]), depth=config["depth"],
                  base_width=config["base_width"])


def save_unet(model: UNet, config: dict[str, Any], out_dir: Path) -> None:
    save_model_folder(out_dir, CONFIG, config, WEIGHTS, model.state_dict())


def load_unet(model_dir: Path, device: torch.device) -> tuple[UNet, dict[str, Any]]:
    config, state = load_model_folder(model_dir, CONFIG, WEIGHTS)
    model = build_unet(config)
    model.load_state_dict(state)
    return model.to(device).eval(), config


@torch.inference_mode()
def predict_masks(model: UNet, images: np.ndarray, config: dict[str, Any], batch_size: int,
                  device: torch.device) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, H, W) uint8 class indices, at the input's own size."""
    size = config["image_size"]
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start:start + batch_size]).to(device)
        x = standardise(batch, config["mean"], config["std"])
        in_size = x.shape[-2:]
        if tuple(in_size) != (size, size):  # the model was trained at size x size
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x).float()
        if tuple(in_size) != (size, size):
            logits = F.interpolate(logits, size=tuple(in_size), mode="bilinear")
        out.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(out)
