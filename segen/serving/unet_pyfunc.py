"""The registered segmentation model: an MLflow pyfunc whose predict maps images to masks.

    model = mlflow.pyfunc.load_model("models:/segen-unet@champion")
    masks = model.predict(images)   # (N, H, W, C) or (H, W, C) uint8 -> (N, H, W) uint8
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from segen.serving.device import pick_device
from segen.serving.image_batch import as_image_batch
from segen.serving.pyfunc import FolderModel, installed_requirement, torch_requirement
from segen.serving.unet import load_unet, predict_masks

PREDICT_BATCH = 16


class SegmentationModel(FolderModel):
    """U-Net behind a stable predict(): images in, class-index masks out."""

    ARTIFACT = "unet"

    def load(self, folder: Path) -> None:
        self.device = pick_device()
        self.model, self.config = load_unet(folder, self.device)

    # No type hints on model_input: MLflow 3 would turn them into input validation that
    # rejects plain ndarrays.
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        images = as_image_batch(model_input, self.config["in_channels"])
        return predict_masks(self.model, images, self.config, PREDICT_BATCH, self.device)


def log_segmentation_model(model_dir: Path, registered_name: str) -> Any:
    """Log the pyfunc with its weights and code, and register a new version of it."""
    requirements = [torch_requirement(), "numpy", installed_requirement("monai")]  # monai: tiling
    return SegmentationModel.log(model_dir, registered_name, requirements)
