"""The evaluation behind the evaluate_unet stage (and every supervised segmenter's):
imported only when it runs. Streams the test split a batch at a time, so memory holds one
batch, the (K, K) confusion and a score per image, whatever the number of test images."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from models.metrics import SegmentationAccumulator, per_image_scores
from segen.config import EvaluateParams
from segen.engines.segmentation_data import loader, split_dataset
from segen.pipeline.store import StageResult
from segen.serving.device import pick_device
from segen.serving.grid import save_prediction_grid
from segen.serving.unet import load_segmenter, predict_canvas


def evaluate(preprocess: StageResult, train_unet: StageResult, params: EvaluateParams,
             out: Path) -> dict:
    """Scores over all scored test pixels (global: ignored classes and padding are out);
    per-image scores kept for paired comparisons; a grid of the first images."""
    device = pick_device()
    model, config = load_segmenter(Path(train_unet.path), device)
    num_classes = len(config["classes"])
    scores = SegmentationAccumulator(num_classes).to(device)
    per_image: dict[str, list[torch.Tensor]] = {}
    grid: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    n_images = 0
    for images, masks in loader(split_dataset(preprocess, "test"), params.batch_size, device,
                                generator=None):
        pred = predict_canvas(model, images.permute(0, 2, 3, 1), config, device)
        y = masks.to(device)
        scores.update(pred.long(), y)
        for name, values in per_image_scores(pred.long(), y, num_classes).items():
            per_image.setdefault(name, []).append(values.cpu())
        if sum(len(g[0]) for g in grid) < params.grid_images:
            grid.append((images.permute(0, 2, 3, 1), masks, pred.cpu()))
        n_images += len(y)
    result = scores.compute()
    result["classes"], result["n_test_images"] = config["classes"], n_images
    np.savez(out / "per_image.npz", **{k: torch.cat(v).numpy() for k, v in per_image.items()})
    (out / "metrics.json").write_text(json.dumps(result, indent=1).replace("NaN", "null"))
    n = min(params.grid_images, n_images)
    save_prediction_grid(*(torch.cat(part)[:n] for part in zip(*grid)), out / "grid.png")
    metrics = {"mean_iou": result["mean_iou"], "mean_dice": result["mean_dice"],
               "pixel_accuracy": result["pixel_accuracy"]}
    for kind in ("iou", "dice"):  # NaN marks a class absent from truth and prediction
        metrics.update({f"{kind}_{c}": v for c, v in zip(config["classes"],
                                                         result[f"{kind}_per_class"])
                        if not math.isnan(v)})
    return {"metrics": metrics}
