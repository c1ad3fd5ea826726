"""Segmentation metrics on hard label maps, via torchmetrics.

pred and target are (N, H, W) integer class indices in [0, num_classes); target may also
hold `ignore_index` (models.labels.IGNORE_INDEX = 255: an ignored class or padding).

Ignored pixels: every pixel whose *target* is ignore_index is out of every score (IoU,
Dice, pixel accuracy), whatever pred holds there, as torchmetrics' `ignore_index` does:
it counts in no TP, FP, FN, and in neither numerator nor denominator of the accuracy.
`ignore_index=None` scores every pixel.

Absent classes: a class that appears in neither target nor pred over the pixels
being scored has IoU and Dice 0/0, i.e. undefined. It is reported as NaN per class
and left out of the mean, so mean_iou / mean_dice average only over classes present
in target or pred. A class predicted but absent from the target is kept (IoU 0): it
is a real false positive. This is what torchmetrics' average="macro" does for
Jaccard (weights of classes with an empty confusion row and column are zeroed), but
its per-class output ("none") can only put 0 or 1 there, both of which read like a
real score, so we mark absent classes ourselves and take the means over the rest.
A set (or, per image, an image) with no scored pixel at all has NaN means and accuracy.

API:
- `segmentation_scores(pred, target, num_classes, *, ignore_index=IGNORE_INDEX)` -> dict
  {"iou_per_class", "dice_per_class", "mean_iou", "mean_dice", "pixel_accuracy"}, over
  one global confusion of all pixels of the set;
- `per_image_scores(pred, target, num_classes, *, ignore_index=IGNORE_INDEX)` ->
  {"mean_iou": (N,), "mean_dice": (N,)} float tensors, each image on its own pixels;
- `SegmentationAccumulator(num_classes, *, ignore_index=IGNORE_INDEX)`: the same global
  scores batch by batch, holding only a (K, K) confusion matrix (a torchmetrics
  MulticlassConfusionMatrix), never the predictions:

      acc = SegmentationAccumulator(K).to(device)
      for pred, target in batches:        # (B, H, W) int tensors on `device`
          acc.update(pred, target)        # per_image_scores(pred, target, K) per batch too
      scores = acc.compute()              # == segmentation_scores(all preds, all targets, K)
      acc.reset()

  compute() with no update yet raises ValueError. Per-image scores need no state: call
  per_image_scores on each batch and concatenate the (B,) tensors.
- `scores_from_confusion(confusion)`: the dict above from a (K, K) [target, pred] matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_stat_scores,
)

from models.labels import IGNORE_INDEX


def _check_inputs(pred: Tensor, target: Tensor, num_classes: int,
                  ignore_index: int | None) -> None:
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both be (N, H, W), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred and target must be integer class indices (take argmax of logits)")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index {ignore_index} is a class id (num_classes="
                         f"{num_classes}): pick a value outside [0, {num_classes})")
    # Checked here because torchmetrics 1.9 silently scores an out-of-range pred label
    # as a miss (and fails on a target one with an unclear reshape error). pred is
    # judged on the scored pixels only: what it holds at ignored pixels is never used.
    scored = None if ignore_index is None else target != ignore_index
    for name, labels in (("pred", pred), ("target", target)):
        if scored is not None:
            labels = labels[scored]
        if labels.numel() and bool(((labels < 0) | (labels >= num_classes)).any()):
            allowed = "" if ignore_index is None else f" (or be ignore_index {ignore_index})"
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}){allowed}, got range "
                f"[{labels.min().item()}, {labels.max().item()}]"
            )


def _masked_mean(values: Tensor, present: Tensor) -> Tensor:
    """Mean of `values` over the last axis where `present`; values there may be NaN."""
    present = present.to(values.dtype)
    return torch.nan_to_num(values).mul(present).sum(-1) / present.sum(-1)


def scores_from_confusion(confusion: Tensor) -> dict[str, list[float] | float]:
    """(K, K) pixel counts [target class, predicted class] -> the segmentation_scores dict.

    IoU_c = TP / (TP + FP + FN), Dice_c = 2TP / (2TP + FP + FN) (the pixel F1 score),
    pixel accuracy = trace / total; classes with TP + FP + FN = 0 are NaN, out of the means.
    """
    confusion = confusion.double()
    tp = confusion.diagonal()
    fp = confusion.sum(0) - tp  # predicted c, truth another class
    fn = confusion.sum(1) - tp  # truth c, predicted another class
    union = tp + fp + fn
    present = union > 0  # 0/0 below gives NaN exactly for the absent classes
    iou = tp / union
    dice = 2 * tp / (2 * tp + fp + fn)
    return {
        "iou_per_class": iou.tolist(),
        "dice_per_class": dice.tolist(),
        "mean_iou": _masked_mean(iou, present).item(),
        "mean_dice": _masked_mean(dice, present).item(),
        "pixel_accuracy": (tp.sum() / confusion.sum()).item(),
    }


def segmentation_scores(
    pred: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = IGNORE_INDEX
) -> dict[str, list[float] | float]:
    """Scores over all scored pixels of the set (one global confusion, not a per-image mean).

    Returns {"iou_per_class": [K floats], "dice_per_class": [K floats],
    "mean_iou": float, "mean_dice": float, "pixel_accuracy": float}, with NaN for
    classes absent from both pred and target (see module docstring); pixels whose target
    is ignore_index are left out. Dice is the pixel F1 score: 2TP / (2TP + FP + FN).
    """
    _check_inputs(pred, target, num_classes, ignore_index)
    confusion = multiclass_confusion_matrix(pred, target, num_classes, ignore_index=ignore_index,
                                            validate_args=False)
    return scores_from_confusion(confusion)


def per_image_scores(pred: Tensor, target: Tensor, num_classes: int, *,
                     ignore_index: int | None = IGNORE_INDEX) -> dict[str, Tensor]:
    """Per-image {"mean_iou": (N,), "mean_dice": (N,)} float tensors.

    Each image is scored on its own scored pixels (target != ignore_index), averaging over
    the classes present there in pred or target (same absent-class rule as
    `segmentation_scores`); an image with no scored pixel gets NaN (the gate's bootstrap
    drops such images). Paired by image index, so two models' outputs on the same images
    can be bootstrapped.
    """
    _check_inputs(pred, target, num_classes, ignore_index)
    # multiclass_jaccard_index has no per-sample mode, so take per-image TP/FP/FN;
    # torchmetrics drops the ignored pixels of each sample before counting.
    stats = multiclass_stat_scores(
        pred, target, num_classes, average="none", multidim_average="samplewise",
        ignore_index=ignore_index, validate_args=False,
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


class SegmentationAccumulator:
    """segmentation_scores accumulated batch by batch: state is one (K, K) confusion matrix.

    update(pred, target) takes (B, H, W) integer tensors on the accumulator's device (move
    it with .to(device)); compute() returns the segmentation_scores dict of every pixel
    seen since construction or reset().
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # Inputs are checked in update(); torchmetrics' own checks would only repeat them.
        # The pixels are this process's: in a training group only rank 0 validates, so a
        # sync with the other ranks (torchmetrics' default there) would wait for them.
        self._confusion = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index,
                                                    validate_args=False,
                                                    sync_on_compute=False)
        self.updates = 0

    def to(self, device: torch.device | str) -> SegmentationAccumulator:
        self._confusion = self._confusion.to(device)
        return self

    def update(self, pred: Tensor, target: Tensor) -> None:
        _check_inputs(pred, target, self.num_classes, self.ignore_index)
        self._confusion.update(pred, target)
        self.updates += 1

    def compute(self) -> dict[str, list[float] | float]:
        if not self.updates:
            raise ValueError("SegmentationAccumulator.compute() before any update()")
        return scores_from_confusion(self._confusion.compute())

    def reset(self) -> None:
        self._confusion.reset()
        self.updates = 0


__all__ = ["SegmentationAccumulator", "per_image_scores", "scores_from_confusion",
           "segmentation_scores"]
