"""Segmentation losses: soft multi-class Dice and cross-entropy + Dice.

Shapes: logits (B, K, H, W) float, target (B, H, W) int64 class indices in [0, K).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

# Additive smoothing for the Dice inside `ce_dice_loss`. Not a tuned hyperparameter
# (params.yaml does not set it): 1.0 is the usual Laplace-style choice, e.g. the
# `smooth` of segmentation_models.pytorch, and makes a class absent from both the
# batch's target and prediction score dice ~1 instead of 0/0.
DICE_EPS = 1.0


def _check_shapes(logits: Tensor, target: Tensor, num_classes: int) -> None:
    if logits.ndim != 4 or logits.shape[1] != num_classes:
        raise ValueError(
            f"logits must be (B, num_classes={num_classes}, H, W), got {tuple(logits.shape)}"
        )
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target must be (B, H, W) = {(logits.shape[0], *logits.shape[2:])}, "
            f"got {tuple(target.shape)}"
        )


def dice_loss(logits: Tensor, target: Tensor, num_classes: int, eps: float) -> Tensor:
    """Soft multi-class Dice loss: mean over classes of (1 - dice_c), a scalar.

    Soft Dice of Milletari, Navab & Ahmadi, "V-Net", 3DV 2016 (arXiv:1606.04797),
    computed on softmax probabilities p and one-hot target g, per class c, with the
    sums taken over the whole batch (all B*H*W pixels, as segmentation_models.pytorch
    does), so a class that is rare in one image is not scored on that image alone:

        dice_c = (2 * sum(p_c * g_c) + eps) / (sum(p_c) + sum(g_c) + eps)

    The denominator uses plain sums, not V-Net's squared sums: for one-hot g,
    sum(g^2) == sum(g), and plain sums make dice_c equal the F1 of a hard prediction.

    Absent classes: a class absent from the target and (almost) absent from the
    prediction has dice_c = eps / (sum(p_c) + eps) ~ 1, so it adds ~0 loss rather
    than the 0/0 of the unsmoothed ratio; it still pushes sum(p_c) towards 0. With
    eps = 0 such a class would give NaN; eps must be > 0 for batches that can miss
    a class.
    """
    _check_shapes(logits, target, num_classes)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    probs = logits.softmax(dim=1)  # (B, K, H, W)
    # one_hot appends the class axis last: (B, H, W, K) -> (B, K, H, W).
    one_hot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)  # sum over batch and pixels, keep the class axis
    intersection = (probs * one_hot).sum(dims)  # (K,)
    cardinality = probs.sum(dims) + one_hot.sum(dims)  # (K,)
    dice = (2 * intersection + eps) / (cardinality + eps)  # (K,)
    return (1 - dice).mean()


def ce_dice_loss(logits: Tensor, target: Tensor, num_classes: int, dice_weight: float) -> Tensor:
    """Pixel-mean cross-entropy + dice_weight * soft Dice loss (eps = DICE_EPS), a scalar.

    CE gives well-scaled per-pixel gradients from the first step; Dice weights
    classes equally regardless of their pixel count, which CE does not.
    """
    if dice_weight < 0:
        raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
    _check_shapes(logits, target, num_classes)
    ce = F.cross_entropy(logits, target)  # mean over all B*H*W pixels
    return ce + dice_weight * dice_loss(logits, target, num_classes, DICE_EPS)


class CEDiceLoss(nn.Module):
    """nn.Module wrapper of `ce_dice_loss`, for code that expects a criterion object."""

    def __init__(self, *, num_classes: int, dice_weight: float) -> None:
        super().__init__()
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.num_classes = num_classes
        self.dice_weight = dice_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ce_dice_loss(logits, target, self.num_classes, self.dice_weight)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, dice_weight={self.dice_weight}"


__all__ = ["DICE_EPS", "CEDiceLoss", "ce_dice_loss", "dice_loss"]
