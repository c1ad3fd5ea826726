"""Segmentation metrics on hard label maps, via torchmetrics' functional API.

pred and target are (N, H, W) integer class indices in [0, num_classes).

Absent classes: a class that appears in neither target nor pred over the pixels
being scored has IoU and Dice 0/0, i.e. undefined. It is reported as NaN per class
and left out of the mean, so mean_iou / mean_dice average only over classes present
in target or pred. A class predicted but absent from the target is kept (IoU 0): it
is a real false positive. This is what torchmetrics' average="macro" does for
Jaccard (weights of classes with an empty confusion row and column are zeroed), but
its per-class output ("none") can only put 0 or 1 there, both of which read like a
real score, so we mark absent classes ourselves and take the means over the rest.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_jaccard_index,
    multiclass_stat_scores,
)


def _check_inputs(pred: Tensor, target: Tensor, num_classes: int) -> None:
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both be (N, H, W), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred and target must be integer class indices (take argmax of logits)")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    # Checked here because torchmetrics 1.9 silently scores an out-of-range pred label
    # as a miss (and fails on a target one with an unclear reshape error).
    for name, labels in (("pred", pred), ("target", target)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}), got range "
                f"[{labels.min().item()}, {labels.max().item()}]"
            )


def _present(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(K,) bool: class occurs in pred or target somewhere in the set."""
    counts = torch.bincount(pred.flatten(), minlength=num_classes)
    counts += torch.bincount(target.flatten(), minlength=num_classes)
    return counts > 0


def _masked_mean(values: Tensor, present: Tensor) -> Tensor:
    """Mean of `values` over the last axis where `present`; values there may be NaN."""
    present = present.to(values.dtype)
    return torch.nan_to_num(values).mul(present).sum(-1) / present.sum(-1)


def segmentation_scores(
    pred: Tensor, target: Tensor, num_classes: int
) -> dict[str, list[float] | float]:
    """Scores over all pixels of the set (one global confusion, not a per-image mean).

    Returns {"iou_per_class": [K floats], "dice_per_class": [K floats],
    "mean_iou": float, "mean_dice": float, "pixel_accuracy": float}, with NaN for
    classes absent from both pred and target (see module docstring). Dice is the
    pixel F1 score: 2TP / (2TP + FP + FN).
    """
    _check_inputs(pred, target, num_classes)
    iou = multiclass_jaccard_index(pred, target, num_classes, average="none")  # (K,)
    dice = multiclass_f1_score(pred, target, num_classes, average="none")  # (K,)
    # micro accuracy = correct pixels / all pixels.
    accuracy = multiclass_accuracy(pred, target, num_classes, average="micro")
    present = _present(pred, target, num_classes)
    nan = torch.tensor(float("nan"), device=iou.device)
    iou = torch.where(present, iou, nan)
    dice = torch.where(present, dice, nan)
    return {
        "iou_per_class": iou.tolist(),
        "dice_per_class": dice.tolist(),
        "mean_iou": _masked_mean(iou, present).item(),
        "mean_dice": _masked_mean(dice, present).item(),
        "pixel_accuracy": accuracy.item(),
    }


def per_image_scores(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Per-image {"mean_iou": (N,), "mean_dice": (N,)} float tensors.

    Each image is scored on its own pixels, averaging over the classes present in that
    image's pred or target (same absent-class rule as `segmentation_scores`). Paired by
    image index, so two models' outputs on the same images can be bootstrapped.
    """
    _check_inputs(pred, target, num_classes)
    # multiclass_jaccard_index has no per-sample mode, so take per-image TP/FP/FN.
    stats = multiclass_stat_scores(
        pred, target, num_classes, average="none", multidim_average="samplewise"
    )  # (N, K, 5): tp, fp, tn, fn, support
    tp, fp, fn = (stats[..., i].double() for i in (0, 1, 3))
    union = tp + fp + fn  # (N, K); 0 exactly when the class is absent from the image
    present = union > 0
    # Absent classes give 0/0 = NaN here; _masked_mean drops them.
    iou = tp / union
    dice = 2 * tp / (2 * tp + fp + fn)
    return {
        "mean_iou": _masked_mean(iou, present).float(),
        "mean_dice": _masked_mean(dice, present).float(),
    }
