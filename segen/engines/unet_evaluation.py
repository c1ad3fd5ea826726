"""The evaluation behind the evaluate_unet stage (imported only when it runs)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from models.metrics import per_image_scores, segmentation_scores
from segen.config import EvaluateParams
from segen.engines.training import load_split
from segen.pipeline.store import StageResult
from segen.serving.device import pick_device
from segen.serving.grid import save_prediction_grid
from segen.serving.unet import load_unet, predict_masks


def evaluate(preprocess: StageResult, train_unet: StageResult, params: EvaluateParams,
             out: Path) -> dict:
    """Scores over all test pixels (global); per-image scores kept for paired comparisons."""
    device = pick_device()
    model, config = load_unet(Path(train_unet.path), device)
    images, masks = load_split(preprocess, "test")
    pred = torch.from_numpy(predict_masks(model, images.numpy(), config, params.batch_size,
                                          device)).long()
    num_classes = len(config["classes"])
    scores = segmentation_scores(pred, masks, num_classes)
    scores["classes"] = config["classes"]
    scores["n_test_images"] = len(images)
    per_image = per_image_scores(pred, masks, num_classes)
    np.savez(out / "per_image.npz", **{k: v.numpy() for k, v in per_image.items()})
    (out / "metrics.json").write_text(json.dumps(scores, indent=1).replace("NaN", "null"))
    n = min(params.grid_images, len(images))
    save_prediction_grid(images[:n], masks[:n], pred[:n], out / "grid.png")
    metrics = {"mean_iou": scores["mean_iou"], "mean_dice": scores["mean_dice"],
               "pixel_accuracy": scores["pixel_accuracy"]}
    for kind in ("iou", "dice"):  # NaN marks a class absent from truth and prediction
        metrics.update({f"{kind}_{c}": v for c, v in zip(config["classes"],
                                                         scores[f"{kind}_per_class"])
                        if not math.isnan(v)})
    return {"metrics": metrics}
