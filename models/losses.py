"""Segmentation losses: soft multi-class Dice and cross-entropy + Dice.

Shapes: logits (B, K, H, W) float, target (B, H, W) int64 class indices in [0, K), or
ignore_index (models.labels.IGNORE_INDEX = 255: an ignored class or padding).

Ignored pixels (target == ignore_index) are out of both terms: CE averages over the
other pixels only (torch's own ignore_index), and in the Dice they add to neither the
intersection nor either cardinality. So the loss, and its gradient, do not depend on
the logits at ignored pixels: their gradient is exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.labels import IGNORE_INDEX

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


def _valid(target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """(target with ignored pixels set to class 0, (B, H, W) bool of scored pixels or None).

    Class 0 is only a placeholder so one_hot / gather stay in range; the mask zeroes it.
    """
    if ignore_index is None:
        return target, None
    valid = target != ignore_index
    return target.masked_fill(~valid, 0), valid


def dice_loss(logits: Tensor, target: Tensor, num_classes: int, eps: float, *,
              ignore_index: int | None = IGNORE_INDEX) -> Tensor:
    """Soft multi-class Dice loss: mean over classes of (1 - dice_c), a scalar.

    Soft Dice of Milletari, Navab & Ahmadi, "V-Net", 3DV 2016 (arXiv:1606.04797),
    computed on softmax probabilities p and one-hot target g, per class c, with the
    sums taken over the whole batch (all scored B*H*W pixels, as
    segmentation_models.pytorch does), so a class that is rare in one image is not
    scored on that image alone:

        dice_c = (2 * sum(p_c * g_c) + eps) / (sum(p_c) + sum(g_c) + eps)

    The denominator uses plain sums, not V-Net's squared sums: for one-hot g,
    sum(g^2) == sum(g), and plain sums make dice_c equal the F1 of a hard prediction.
    Pixels with target == ignore_index are left out of all three sums (p and g are
    zeroed there); ignore_index=None scores every pixel.

    Absent classes: a class absent from the target and (almost) absent from the
    prediction has dice_c = eps / (sum(p_c) + eps) ~ 1, so it adds ~0 loss rather
    than the 0/0 of the unsmoothed ratio; it still pushes sum(p_c) towards 0. With
    eps = 0 such a class would give NaN; eps must be > 0 for batches that can miss
    a class (or whose pixels are all ignored).
    """
    _check_shapes(logits, target, num_classes)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    target, valid = _valid(target, ignore_index)
    probs = logits.softmax(dim=1)  # (B, K, H, W)
    # one_hot appends the class axis last: (B, H, W, K) -> (B, K, H, W).
    one_hot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    if valid is not None:
        # where, not a product: a NaN/inf logit at an ignored pixel must not make it NaN.
        keep = valid.unsqueeze(1)
        probs = torch.where(keep, probs, 0.0)
        one_hot = one_hot * keep
    dims = (0, 2, 3)  # sum over batch and pixels, keep the class axis
    intersection = (probs * one_hot).sum(dims)  # (K,)
    cardinality = probs.sum(dims) + one_hot.sum(dims)  # (K,)
    dice = (2 * intersection + eps) / (cardinality + eps)  # (K,)
    return (1 - dice).mean()


def weighted_cross_entropy(logits: Tensor, target: Tensor, *,
                           ignore_index: int | None = IGNORE_INDEX,
                           class_weights: Tensor | None = None) -> Tensor:
    """Cross-entropy averaged over the scored pixels, each weighted by its true class:

        CE = sum_i w[y_i] * -log p_i[y_i] / sum_i w[y_i]   over pixels i with y_i != ignore

    (torch's weighted mean, as F.cross_entropy(weight=, ignore_index=) computes it), but 0
    rather than NaN when no pixel is scored (a crop of padding alone), without a host sync.
    """
    target, valid = _valid(target, ignore_index)
    per_pixel = F.cross_entropy(logits, target, reduction="none")  # (B, H, W)
    # At least float32 (bf16 logits under autocast): the weights keep their precision.
    per_pixel = per_pixel.to(torch.promote_types(per_pixel.dtype, torch.float32))
    pixel_weight = (torch.ones_like(per_pixel) if class_weights is None
                    else class_weights.to(per_pixel.device, per_pixel.dtype)[target])
    if valid is not None:
        pixel_weight = pixel_weight * valid
    # where, not only the weight: a NaN/inf logit at an ignored pixel must not make it NaN.
    weighted = torch.where(pixel_weight > 0, per_pixel * pixel_weight, 0.0)
    return weighted.sum() / pixel_weight.sum().clamp_min(torch.finfo(per_pixel.dtype).tiny)


def _as_weights(class_weights: Tensor | Sequence[float] | None, num_classes: int
                ) -> Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights)
    if weights.shape != (num_classes,) or not weights.is_floating_point():
        raise ValueError(f"class_weights must be {num_classes} floats (one per class), got "
                         f"{weights.dtype} of shape {tuple(weights.shape)}")
    return weights


def ce_dice_loss(logits: Tensor, target: Tensor, num_classes: int, dice_weight: float, *,
                 ignore_index: int | None = IGNORE_INDEX,
                 class_weights: Tensor | Sequence[float] | None = None) -> Tensor:
    """Cross-entropy + dice_weight * soft Dice loss (eps = DICE_EPS), a scalar.

    CE gives well-scaled per-pixel gradients from the first step; Dice weights
    classes equally regardless of their pixel count, which CE does not. class_weights
    ((K,) floats, e.g. preprocess's median-frequency weights) weight the CE term only
    (see weighted_cross_entropy); the Dice term is unweighted, as it already gives every
    class the same say. Pixels with target == ignore_index count in neither term.
    """
    if dice_weight < 0:
        raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
    _check_shapes(logits, target, num_classes)
    ce = weighted_cross_entropy(logits, target, ignore_index=ignore_index,
                                class_weights=_as_weights(class_weights, num_classes))
    return ce + dice_weight * dice_loss(logits, target, num_classes, DICE_EPS,
                                        ignore_index=ignore_index)


class CEDiceLoss(nn.Module):
    """nn.Module wrapper of `ce_dice_loss`, for code that expects a criterion object.

    class_weights is held as a (non-persistent) buffer, so .to(device) moves it.
    """

    def __init__(self, *, num_classes: int, dice_weight: float,
                 ignore_index: int | None = IGNORE_INDEX,
                 class_weights: Tensor | Sequence[float] | None = None) -> None:
        super().__init__()
        if dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.num_classes = num_classes
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        weights = _as_weights(class_weights, num_classes)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ce_dice_loss(logits, target, self.num_classes, self.dice_weight,
                            ignore_index=self.ignore_index, class_weights=self.class_weights)

    def extra_repr(self) -> str:
        weighted = self.class_weights is not None
        return (f"num_classes={self.num_classes}, dice_weight={self.dice_weight}, "
                f"ignore_index={self.ignore_index}, class_weights={weighted}")


__all__ = ["DICE_EPS", "CEDiceLoss", "ce_dice_loss", "dice_loss", "weighted_cross_entropy"]
