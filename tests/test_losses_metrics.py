"""Losses and metrics against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import multiclass_jaccard_index

from models.losses import DICE_EPS, CEDiceLoss, ce_dice_loss, dice_loss
from models.metrics import per_image_scores, segmentation_scores


def _two_pixel_case() -> tuple[torch.Tensor, torch.Tensor]:
    """B=1, K=2, H=1, W=2. Pixel 0: logits (0, 0) -> p = (1/2, 1/2), target 0.
    Pixel 1: logits (0, ln 3) -> p = (1/4, 3/4), target 1."""
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])  # (1, 1, 2)
    return logits, target


# Class 0: p = (1/2, 1/4), g = (1, 0): inter = 1/2, sum p = 3/4, sum g = 1.
# Class 1: p = (1/2, 3/4), g = (0, 1): inter = 3/4, sum p = 5/4, sum g = 1.
# eps = 0: dice0 = 1 / (7/4) = 4/7, dice1 = (3/2) / (9/4) = 2/3;
#          loss = 1 - (4/7 + 2/3) / 2 = 1 - 13/21 = 8/21.
# eps = 1: dice0 = 2 / (11/4) = 8/11, dice1 = (5/2) / (13/4) = 10/13;
#          loss = 1 - (8/11 + 10/13) / 2 = 1 - 107/143 = 36/143.
@pytest.mark.parametrize(("eps", "expected"), [(0.0, 8 / 21), (1.0, 36 / 143)])
def test_dice_loss_by_hand(eps: float, expected: float) -> None:
    logits, target = _two_pixel_case()
    assert dice_loss(logits, target, 2, eps).item() == pytest.approx(expected, abs=1e-6)


def test_class_absent_from_target_and_prediction_scores_dice_one() -> None:
    # Add a class 2 with logit -100 (p ~ 4e-44) that no target pixel has:
    # dice2 = eps / (~0 + eps) = 1, so loss = (1 - dice0 + 1 - dice1 + 0) / 3,
    # i.e. 2/3 of the two-class loss: (2/3) * 36/143 = 24/143.
    logits, target = _two_pixel_case()
    logits = torch.cat([logits, torch.full((1, 1, 1, 2), -100.0)], dim=1)
    assert dice_loss(logits, target, 3, 1.0).item() == pytest.approx(24 / 143, abs=1e-6)


def test_perfect_prediction_gives_zero_dice_loss() -> None:
    target = torch.tensor([[[0, 1, 2], [2, 1, 0]]])  # (1, 2, 3)
    logits = 50.0 * torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    # Class 3 is absent from both: it contributes dice ~1 through eps, not 0/0.
    assert dice_loss(logits, target, 4, 1e-6).item() == pytest.approx(0.0, abs=1e-5)
    assert dice_loss(logits, target, 4, 1.0).item() == pytest.approx(0.0, abs=1e-5)


def test_ce_dice_loss_by_hand() -> None:
    # CE = mean(-ln 1/2, -ln 3/4) = (ln 2 + ln 4/3) / 2 = ln(8/3) / 2.
    # Dice uses DICE_EPS = 1: 36/143 (see above).
    logits, target = _two_pixel_case()
    assert DICE_EPS == 1.0
    ce = math.log(8 / 3) / 2
    for weight in (0.0, 0.5, 2.0):
        got = ce_dice_loss(logits, target, 2, weight).item()
        assert got == pytest.approx(ce + weight * 36 / 143, abs=1e-6)
    module = CEDiceLoss(num_classes=2, dice_weight=0.5)
    assert module(logits, target).item() == pytest.approx(ce + 0.5 * 36 / 143, abs=1e-6)


def test_losses_backward_and_shape_checks() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    ce_dice_loss(logits, target, 3, 1.0).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="num_classes=4"):
        dice_loss(logits, target, 4, 1.0)
    with pytest.raises(ValueError, match="target must be"):
        ce_dice_loss(logits, target[:, :2], 3, 1.0)
    with pytest.raises(TypeError):
        CEDiceLoss(num_classes=3)  # type: ignore[call-arg]


# 3x3, K = 4, class 3 in neither map.
#   target    pred
#   0 0 1     0 1 1
#   0 1 1     0 1 1
#   2 2 2     2 2 0
# class 0: TP 2 ((0,0),(1,0)), FP 1 ((2,2)), FN 1 ((0,1)) -> IoU 2/4, Dice 4/6
# class 1: TP 3, FP 1 ((0,1)), FN 0                      -> IoU 3/4, Dice 6/7
# class 2: TP 2, FP 0, FN 1 ((2,2))                      -> IoU 2/3, Dice 4/5
# class 3: 0/0                                           -> NaN, not in the means
# pixel accuracy: 7 of 9 correct.
TARGET_3X3 = torch.tensor([[[0, 0, 1], [0, 1, 1], [2, 2, 2]]])
PRED_3X3 = torch.tensor([[[0, 1, 1], [0, 1, 1], [2, 2, 0]]])


def test_segmentation_scores_by_hand() -> None:
    scores = segmentation_scores(PRED_3X3, TARGET_3X3, 4)
    assert scores["iou_per_class"][:3] == pytest.approx([1 / 2, 3 / 4, 2 / 3])
    assert scores["dice_per_class"][:3] == pytest.approx([2 / 3, 6 / 7, 4 / 5])
    assert math.isnan(scores["iou_per_class"][3]) and math.isnan(scores["dice_per_class"][3])
    assert scores["mean_iou"] == pytest.approx((1 / 2 + 3 / 4 + 2 / 3) / 3)  # 23/36
    assert scores["mean_dice"] == pytest.approx((2 / 3 + 6 / 7 + 4 / 5) / 3)  # 244/315
    assert scores["pixel_accuracy"] == pytest.approx(7 / 9)
    # Agrees with torchmetrics' own macro average, which also skips the absent class.
    macro = multiclass_jaccard_index(PRED_3X3, TARGET_3X3, 4, average="macro")
    assert scores["mean_iou"] == pytest.approx(macro.item())


def test_class_only_in_prediction_counts_as_zero() -> None:
    # 2x2, K = 3: target all 0, one pixel predicted 1, class 2 nowhere.
    # class 0: TP 3, FN 1 -> IoU 3/4, Dice 6/7; class 1: FP 1 -> IoU 0, Dice 0.
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    pred = torch.tensor([[[0, 1], [0, 0]]])
    scores = segmentation_scores(pred, target, 3)
    assert scores["iou_per_class"][:2] == pytest.approx([3 / 4, 0.0])
    assert scores["mean_iou"] == pytest.approx(3 / 8)
    assert scores["mean_dice"] == pytest.approx(3 / 7)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 4)


def test_per_image_scores_and_global_vs_per_image() -> None:
    # Image A: perfect, classes 0 and 1 -> mIoU 1, mDice 1.
    # Image B: the 2x2 case above -> mIoU (3/4 + 0)/2 = 3/8, mDice (6/7 + 0)/2 = 3/7.
    target = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    pred = torch.tensor([[[0, 0], [1, 1]], [[0, 1], [0, 0]]])
    per_image = per_image_scores(pred, target, 3)
    assert set(per_image) == {"mean_iou", "mean_dice"}
    assert per_image["mean_iou"].shape == (2,) and per_image["mean_dice"].shape == (2,)
    assert per_image["mean_iou"].tolist() == pytest.approx([1.0, 3 / 8])
    assert per_image["mean_dice"].tolist() == pytest.approx([1.0, 3 / 7])
    # Global confusion over both images: class 0 TP 5, FN 1 -> 5/6; class 1 TP 2, FP 1
    # -> 2/3; mean 3/4, which differs from the per-image average (1 + 3/8)/2 = 11/16.
    assert segmentation_scores(pred, target, 3)["mean_iou"] == pytest.approx(3 / 4)


def test_metrics_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        segmentation_scores(PRED_3X3[0], TARGET_3X3[0], 4)
    with pytest.raises(ValueError, match="integer"):
        per_image_scores(PRED_3X3.float(), TARGET_3X3, 4)
    # Label 3 with num_classes=3: torchmetrics alone would score pred 3 as a silent miss.
    with pytest.raises(ValueError, match=r"pred labels must lie in \[0, 3\)"):
        segmentation_scores(PRED_3X3 + 1, TARGET_3X3, 3)
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\)"):
        per_image_scores(PRED_3X3, TARGET_3X3 + 1, 3)
