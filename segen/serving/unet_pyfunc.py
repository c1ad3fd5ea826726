"""The registered segmentation model: an MLflow pyfunc whose predict maps images to masks.

    model = mlflow.pyfunc.load_model("models:/segen-unet@champion")
    masks = model.predict(images)   # (N, H, W, C) or (H, W, C) uint8 -> (N, H, W) uint8
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from segen.serving.device import pick_device
from segen.serving.unet import load_unet, predict_masks

PREDICT_BATCH = 16


def as_image_batch(images: Any, channels: int) -> np.ndarray:
    """Accept one image, a list of images or an (N, H, W[, C]) array; return (N, H, W, C) uint8."""
    batch = np.stack(images) if isinstance(images, (list, tuple)) else np.asarray(images)
    if batch.ndim == 2 or (batch.ndim == 3 and batch.shape[-1] in (1, 3) and channels != 1):
        batch = batch[None]  # a single image
    if batch.ndim == 3:
        batch = batch[..., None]  # greyscale without a channel axis
    if batch.ndim != 4 or batch.shape[-1] != channels:
        raise ValueError(f"expected images of shape (N, H, W, {channels}) (or one (H, W, "
                         f"{channels}) image), got {batch.shape}; convert the images to "
                         f"{'greyscale' if channels == 1 else 'RGB'} first.")
    if batch.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels in [0, 255], got {batch.dtype}")
    return batch


class SegmentationModel(mlflow.pyfunc.PythonModel):
    """U-Net behind a stable predict(): images in, class-index masks out."""

    def load_context(self, context: Any) -> None:
        self.device = pick_device()
        self.model, self.config = load_unet(Path(context.artifacts["unet"]), self.device)

    # No type hints on model_input: MLflow 3 would turn them into input validation that
    # rejects plain ndarrays.
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        images = as_image_batch(model_input, self.config["in_channels"])
        return predict_masks(self.model, images, self.config, PREDICT_BATCH, self.device)


def log_segmentation_model(model_dir: Path, registered_name: str) -> Any:
    """Log the pyfunc with its weights and code, and register a new version of it."""
    import torch

    root = Path(__file__).resolve().parents[2]
    return mlflow.pyfunc.log_model(
        name="model", python_model=SegmentationModel(), artifacts={"unet": str(model_dir)},
        code_paths=[str(root / "segen"), str(root / "models")],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "mlflow"],
        registered_model_name=registered_name)
