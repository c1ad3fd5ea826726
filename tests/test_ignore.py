"""Ignored pixels (IGNORE_INDEX = 255: an ignored class or padding) are provably out of the
loss and of every metric; class weights change the CE as worked out by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import cluster_metrics as cm
from models.labels import IGNORE_INDEX
from models.losses import CEDiceLoss, ce_dice_loss, dice_loss, weighted_cross_entropy
from models.metrics import (
    SegmentationAccumulator,
    per_image_scores,
    segmentation_scores,
)
from segen.serving import clustering

V = IGNORE_INDEX


def test_ignore_index_is_255() -> None:
    assert IGNORE_INDEX == 255


# ---------------------------------------------------------------- loss

def _three_pixel_case(ignored_logits: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-pixel case of test_losses_metrics plus a third, ignored pixel.
    Pixel 0: logits (0, 0) -> p = (1/2, 1/2), target 0.
    Pixel 1: logits (0, ln 3) -> p = (1/4, 3/4), target 1.
    Pixel 2: any logits, target 255."""
    logits = torch.tensor([[[[0.0, 0.0, ignored_logits[0]]],
                            [[0.0, math.log(3.0), ignored_logits[1]]]]], dtype=torch.float64)
    return logits.requires_grad_(True), torch.tensor([[[0, 1, V]]])


# CE over the two scored pixels: (ln 2 + ln 4/3) / 2 = ln(8/3) / 2.
# Dice (eps 1) over them: 36/143 (worked out in test_losses_metrics.py).
CE_TWO = math.log(8 / 3) / 2
DICE_TWO = 36 / 143


@pytest.mark.parametrize("ignored", [(0.0, 0.0), (50.0, -50.0), (-1e4, 3e3), (7.0, 7.0)])
def test_loss_is_the_same_whatever_the_ignored_logits(ignored: tuple[float, float]) -> None:
    logits, target = _three_pixel_case(ignored)
    loss = ce_dice_loss(logits, target, 2, 0.5)
    assert loss.item() == pytest.approx(CE_TWO + 0.5 * DICE_TWO, abs=1e-12)
    loss.backward()
    # Provably ignored: the gradient at the ignored pixel is exactly zero ...
    assert torch.equal(logits.grad[..., 2], torch.zeros_like(logits.grad[..., 2]))
    # ... and the scored pixels get the gradient of the two-pixel problem alone.
    two = logits.detach()[..., :2].clone().requires_grad_(True)
    ce_dice_loss(two, target[..., :2], 2, 0.5).backward()
    torch.testing.assert_close(logits.grad[..., :2], two.grad, rtol=0, atol=1e-15)


def test_dice_and_ce_leave_ignored_pixels_out_by_hand() -> None:
    logits, target = _three_pixel_case((9.0, -9.0))
    assert dice_loss(logits, target, 2, 1.0).item() == pytest.approx(DICE_TWO, abs=1e-12)
    # eps = 0: the unsmoothed 8/21, so the ignored pixel is in no cardinality either.
    assert dice_loss(logits, target, 2, 0.0).item() == pytest.approx(8 / 21, abs=1e-12)
    assert weighted_cross_entropy(logits, target).item() == pytest.approx(CE_TWO, abs=1e-12)
    # torch's own ignore_index gives the same CE.
    reference = F.cross_entropy(logits, target, ignore_index=V)
    assert weighted_cross_entropy(logits, target).item() == pytest.approx(reference.item())


def test_without_ignore_index_the_pixel_counts() -> None:
    # ignore_index=None, pixel 2 labelled 0 with logits (0, 0): CE = (2 ln 2 + ln 4/3) / 3.
    logits, _ = _three_pixel_case((0.0, 0.0))
    target = torch.tensor([[[0, 1, 0]]])
    got = ce_dice_loss(logits, target, 2, 0.0, ignore_index=None).item()
    assert got == pytest.approx((2 * math.log(2) + math.log(4 / 3)) / 3, abs=1e-12)


def test_class_weights_change_ce_as_hand_computed() -> None:
    # Weights (1, 3): CE = (1 * ln 2 + 3 * ln 4/3) / (1 + 3), the ignored pixel still out.
    logits, target = _three_pixel_case((5.0, 1.0))
    weights = torch.tensor([1.0, 3.0])
    expected = (math.log(2) + 3 * math.log(4 / 3)) / 4
    got = ce_dice_loss(logits, target, 2, 0.0, class_weights=weights).item()
    assert got == pytest.approx(expected, abs=1e-7)
    reference = F.cross_entropy(logits, target, weight=weights.double(), ignore_index=V)
    assert got == pytest.approx(reference.item(), abs=1e-7)
    # The Dice term is unweighted: adding it adds 36/143 whatever the weights.
    with_dice = ce_dice_loss(logits, target, 2, 1.0, class_weights=[1.0, 3.0]).item()
    assert with_dice == pytest.approx(expected + DICE_TWO, abs=1e-7)
    module = CEDiceLoss(num_classes=2, dice_weight=1.0, class_weights=weights)
    assert module(logits, target).item() == pytest.approx(with_dice, abs=1e-12)
    assert "class_weights=True" in repr(module) and "ignore_index=255" in repr(module)
    with pytest.raises(ValueError, match="class_weights must be 2 floats"):
        ce_dice_loss(logits, target, 2, 0.0, class_weights=[1.0, 2.0, 3.0])


def test_loss_matches_torch_on_random_data_with_weights_and_ignore() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 7)  # non-square
    target = torch.randint(0, 4, (2, 5, 7))
    target[torch.rand(2, 5, 7) < 0.3] = V
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    got = weighted_cross_entropy(logits, target, class_weights=weights)
    torch.testing.assert_close(got, F.cross_entropy(logits, target, weight=weights,
                                                    ignore_index=V))


def test_a_batch_of_ignored_pixels_alone_gives_zero_loss_and_gradient() -> None:
    logits = torch.randn(1, 3, 2, 4, requires_grad=True)
    target = torch.full((1, 2, 4), V)
    loss = ce_dice_loss(logits, target, 3, 1.0, class_weights=torch.ones(3))
    assert loss.item() == 0.0  # CE: 0 (not 0/0); Dice: every class eps/eps = 1
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits.grad))


# ---------------------------------------------------------------- metrics
# 2x3, K = 3; pixel (1, 0) is ignored (and predicted 2, the only 2 anywhere).
#   target     pred
#   0 0 1      0 1 1
#   V 1 1      2 1 0
# Scored: 5 pixels. class 0: TP 1, FP 1 ((1,2)), FN 1 ((0,1)) -> IoU 1/3, Dice 1/2
#                   class 1: TP 2, FP 1 ((0,1)), FN 1 ((1,2)) -> IoU 1/2, Dice 2/3
#                   class 2: only predicted at the ignored pixel -> absent, NaN
# mean IoU (1/3 + 1/2)/2 = 5/12, mean Dice (1/2 + 2/3)/2 = 7/12, accuracy 3/5.
TARGET = torch.tensor([[[0, 0, 1], [V, 1, 1]]])
PRED = torch.tensor([[[0, 1, 1], [2, 1, 0]]])


def test_segmentation_scores_leave_ignored_pixels_out_by_hand() -> None:
    scores = segmentation_scores(PRED, TARGET, 3)
    assert scores["iou_per_class"][:2] == pytest.approx([1 / 3, 1 / 2])
    assert scores["dice_per_class"][:2] == pytest.approx([1 / 2, 2 / 3])
    assert math.isnan(scores["iou_per_class"][2]) and math.isnan(scores["dice_per_class"][2])
    assert scores["mean_iou"] == pytest.approx(5 / 12)
    assert scores["mean_dice"] == pytest.approx(7 / 12)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("value", [0, 1, 2, V])
def test_scores_do_not_depend_on_the_prediction_at_ignored_pixels(value: int) -> None:
    pred = PRED.clone()
    pred[0, 1, 0] = value
    assert segmentation_scores(pred, TARGET, 3)["mean_iou"] == pytest.approx(5 / 12)
    assert per_image_scores(pred, TARGET, 3)["mean_iou"].item() == pytest.approx(5 / 12)


def test_the_same_pixel_labelled_counts() -> None:
    # Labelled 2 instead of V: class 2 TP 1 -> IoU 1; mean IoU (1/3 + 1/2 + 1)/3 = 11/18,
    # accuracy 4/6.
    target = TARGET.clone()
    target[0, 1, 0] = 2
    scores = segmentation_scores(PRED, target, 3)
    assert scores["mean_iou"] == pytest.approx(11 / 18)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    # ignore_index=None: 255 is then an out-of-range label, said clearly.
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\), got"):
        segmentation_scores(PRED, TARGET, 3, ignore_index=None)


def test_per_image_scores_with_an_all_ignored_image() -> None:
    target = torch.cat([TARGET, torch.full_like(TARGET, V)])
    pred = torch.cat([PRED, PRED])
    scores = per_image_scores(pred, target, 3)
    assert scores["mean_iou"][0].item() == pytest.approx(5 / 12)
    assert scores["mean_dice"][0].item() == pytest.approx(7 / 12)
    assert math.isnan(scores["mean_iou"][1].item())  # nothing scored: the gate drops it


def test_pred_labels_are_checked_at_scored_pixels_only() -> None:
    pred = PRED.clone()
    pred[0, 0, 0] = V  # a scored pixel: a model never predicts the ignore label
    with pytest.raises(ValueError, match=r"pred labels must lie in \[0, 3\)"):
        segmentation_scores(pred, TARGET, 3)
    with pytest.raises(ValueError, match="ignore_index 1 is a class id"):
        segmentation_scores(PRED, TARGET, 3, ignore_index=1)


def test_accumulator_matches_the_one_shot_scores() -> None:
    torch.manual_seed(1)
    pred = torch.randint(0, 4, (6, 5, 8))
    target = torch.randint(0, 4, (6, 5, 8))
    target[:, 3:, :] = V  # padding at the bottom
    target[2] = V  # an image of padding alone
    accumulator = SegmentationAccumulator(4)
    with pytest.raises(ValueError, match="before any update"):
        accumulator.compute()
    for start in range(0, 6, 4):  # batches of 4 and 2
        accumulator.update(pred[start:start + 4], target[start:start + 4])
    whole = segmentation_scores(pred, target, 4)
    got = accumulator.compute()
    assert got.keys() == whole.keys()
    for key in ("mean_iou", "mean_dice", "pixel_accuracy"):
        assert got[key] == pytest.approx(whole[key])
    np.testing.assert_allclose(got["iou_per_class"], whole["iou_per_class"])
    accumulator.reset()
    accumulator.update(PRED, TARGET)
    assert accumulator.compute()["mean_iou"] == pytest.approx(5 / 12)


# ---------------------------------------------------------------- clustering
# The same 2x3 layout with cluster ids; the ignored pixel (1, 0) is in cluster 0.
#   truth      clusters
#   0 0 1      1 1 0
#   V 1 1      0 0 1
# Scored counts [cluster, class]: c0 = [0, 2] ((0,2), (1,1)); c1 = [2, 1].
# Matching c1 -> 0, c0 -> 1 covers 4 of 5 pixels. class 0: hits 2, predicted 3, true 2
# -> IoU 2/3; class 1: hits 2, predicted 2, true 3 -> IoU 2/3; accuracy 4/5.
# ARI over the 5 pixels: contingency [[0, 2], [2, 1]], sum C(n_ij, 2) = 2; rows (2, 3)
# and columns (2, 3) give 4 each; expected 4 * 4 / C(5, 2) = 1.6; max (4 + 4)/2 = 4;
# ARI = (2 - 1.6) / (4 - 1.6) = 1/6.
TRUTH_NP = np.array([[0, 0, 1], [V, 1, 1]], np.uint8)
CLUSTERS = np.array([[1, 1, 0], [0, 0, 1]])


def _matched(pred: np.ndarray, truth: np.ndarray, **kw) -> dict:
    counts = cm.cluster_class_counts(pred, truth, 2, 2, **kw)
    classes = cm.apply_matching(pred, cm.match_clusters(counts))
    return cm.iou_scores(cm.matched_confusion(classes, truth, 2, **kw))


@pytest.mark.parametrize("cluster", [0, 1])
def test_cluster_scores_leave_ignored_pixels_out_by_hand(cluster: int) -> None:
    pred = CLUSTERS.copy()
    pred[1, 0] = cluster  # whatever the cluster at the ignored pixel
    counts = cm.cluster_class_counts(pred, TRUTH_NP, 2, 2)
    np.testing.assert_array_equal(counts, [[0, 2], [2, 1]])
    scores = _matched(pred, TRUTH_NP)
    assert scores["iou_per_class"] == pytest.approx([2 / 3, 2 / 3])
    assert scores["mean_iou"] == pytest.approx(2 / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 5)
    assert cm.adjusted_rand(pred, TRUTH_NP) == pytest.approx(1 / 6)


def test_cluster_scores_when_the_pixel_is_labelled() -> None:
    # Labelled 0: counts c0 = [1, 2], c1 = [2, 1]; matching c1 -> 0, c0 -> 1 (4 pixels);
    # class 0: hits 2, predicted 3, true 3 -> 1/2; class 1: the same -> 1/2; accuracy 4/6.
    truth = TRUTH_NP.copy()
    truth[1, 0] = 0
    scores = _matched(CLUSTERS, truth)
    assert scores["iou_per_class"] == pytest.approx([1 / 2, 1 / 2])
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    # ARI: contingency [[1, 2], [2, 1]]: sum 0 + 1 + 1 + 0 = 2; rows, cols (3, 3) -> 6 each;
    # expected 36/15 = 2.4; max 6: (2 - 2.4) / (6 - 2.4) = -1/9.
    assert cm.adjusted_rand(CLUSTERS, truth) == pytest.approx(-1 / 9)
    assert cm.adjusted_rand(CLUSTERS, TRUTH_NP, ignore_index=None) != pytest.approx(1 / 6)


def test_ari_of_an_image_with_no_scored_pixel_is_nan() -> None:
    assert math.isnan(cm.adjusted_rand(CLUSTERS, np.full((2, 3), V)))


def test_silhouette_leaves_invalid_pixels_out() -> None:
    # Two tight colour groups plus a far-off padding group: with the padding in, its
    # cluster changes the score; with it out, the score is that of the two groups alone.
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.01, (20, 1)), rng.normal(1, 0.01, (20, 1)),
                               np.full((20, 1), 5.0)])
    labels = np.repeat([0, 1, 2], 20)
    valid = labels < 2
    alone = cm.silhouette(features[valid], labels[valid], 100, np.random.default_rng(0))
    assert cm.silhouette(features, labels, 100, np.random.default_rng(0), valid) == alone
    assert cm.silhouette(features, labels, 100, np.random.default_rng(0)) != alone


RED, LIGHT_RED = (200, 30, 30), (240, 30, 30)  # 40 apart; black is ~200 from both


def _padded_image() -> tuple[np.ndarray, np.ndarray]:
    """8x12 canvas: valid 4x8 top-left (rows 0-1 red = class 0, rows 2-3 light red =
    class 1), padding black and 255 in the mask. 64 padding pixels of 96."""
    image = np.zeros((8, 12, 3), np.uint8)
    mask = np.full((8, 12), V, np.uint8)
    image[:2, :8], mask[:2, :8] = RED, 0
    image[2:4, :8], mask[2:4, :8] = LIGHT_RED, 1
    return image, mask


def _kmeans(mode: str) -> dict:
    return {"kind": "kmeans", "channels": 3, "colour": "rgb", "position_weight": 0.0,
            "mode": mode, "fit_pixels": 4096, "seed": 0, "n_clusters": 2, "n_init": 4,
            "max_iter": 100}


@pytest.mark.parametrize("mode", ["global", "per_image"])
def test_clusterers_never_fit_on_padding(mode: str) -> None:
    # K = 2 on all pixels: black padding (64 px) is one cluster, both reds the other
    # (cost 32 * 20^2 = 12,800; black sharing a centre with one red costs over 500,000),
    # so ARI on the valid pixels is 0. Fitted on the valid pixels only: the two
    # reds, ARI 1.
    image, mask = _padded_image()
    images, masks = image[None], mask[None]
    valid = clustering.valid_pixels(masks.shape, masks=masks)
    sizes = clustering.valid_pixels(masks.shape, sizes=np.array([[4, 8]]))
    np.testing.assert_array_equal(valid, sizes)  # the two sources agree here
    for where, expected in ((None, 0.0), (valid, 1.0)):
        config = _kmeans(mode)
        fitted = clustering.fit_global(config, images, where) if mode == "global" else None
        labels = next(iter(clustering.segment_each(config, fitted, images, where)))[2]
        assert labels.shape == (8, 12)
        assert cm.adjusted_rand(labels, mask) == pytest.approx(expected, abs=1e-9)


def test_valid_sampling_with_every_pixel_valid_draws_what_it_did_before() -> None:
    from models.clustering import sample_features

    images = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    config = _kmeans("global") | {"fit_pixels": 40}
    expected = sample_features(images, 40, "rgb", 0.0, np.random.default_rng(0))
    got = clustering._sample_valid(images, np.ones((3, 5, 7), bool), config,
                                   np.random.default_rng(0))
    np.testing.assert_array_equal(got, expected)


def test_label_map_scores_on_non_square_images_with_padding() -> None:
    from segen.engines.label_map_scores import label_map_scores

    image, mask = _padded_image()  # 8x12: H != W
    config = _kmeans("per_image")
    valid = clustering.valid_pixels((1, 8, 12), masks=mask[None])
    pred = clustering.segment(config, None, image)  # padding in the fit: the reds merged
    params = SimpleNamespace(silhouette_colour="rgb", silhouette_pixels=100, seed=0)
    scores, per_image, _ = label_map_scores(pred, mask[None], image[None], 2, params, "image",
                                            valid)
    assert per_image["ari"].tolist() == pytest.approx([0.0])
    # One cluster covers the 32 valid pixels, matched to one class: IoU 16/32 for it, 0
    # for the other (true 16, hits 0): mean 1/4; 16 of 32 pixels right.
    assert scores["mean_iou"] == pytest.approx(1 / 4)
    assert scores["pixel_accuracy"] == pytest.approx(1 / 2)
    assert scores["noise_fraction"] == 0.0


def test_split_valid_pixels_reads_the_masks(tmp_path: Path) -> None:
    from segen.engines.cluster_trainer import split_valid_pixels
    from segen.pipeline.store import StageResult

    _, mask = _padded_image()
    (tmp_path / "dataset.json").write_text(json.dumps({"has_masks": True}))
    prepared = StageResult("preprocess", "k", "d", str(tmp_path))
    valid = split_valid_pixels(prepared, "test", mask[None])
    assert valid.sum() == 32 and valid[0, :4, :8].all()


@pytest.mark.parametrize("mode", ["global", "per_image"])
def test_cluster_stages_on_a_padded_non_square_split(tmp_path: Path, mode: str) -> None:
    # The train_kmeans / evaluate_kmeans code on a preprocess-like folder of 8x12 canvases:
    # with the padding out of the fit and the scores, the two reds are found exactly
    # (with it in, test_clusterers_never_fit_on_padding gets ARI 0).
    from segen.config import ClusterEvaluateParams, KMeansParams
    from segen.engines.cluster_evaluation import evaluate
    from segen.engines.cluster_trainer import fit
    from segen.pipeline.store import StageResult

    image, mask = _padded_image()
    np.save(tmp_path / "images.npy", np.stack([image, image]))
    np.save(tmp_path / "masks.npy", np.stack([mask, mask]))
    (tmp_path / "split.json").write_text(json.dumps({"train": [0], "val": [], "test": [1]}))
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channels": 3, "has_masks": True, "data_version": "x", "classes": ["a", "b"]}))
    prepared = StageResult("preprocess", "k", "d", str(tmp_path))
    params = KMeansParams(n_clusters=2, n_init=4, max_iter=100, colour="rgb",
                          position_weight=0.0, mode=mode, fit_pixels=1000, seed=0)
    (tmp_path / "model").mkdir()
    (tmp_path / "eval").mkdir()
    fit(prepared, "kmeans", params, tmp_path / "model")
    evaluate(prepared, StageResult("train_kmeans", "k", "d", str(tmp_path / "model")),
             ClusterEvaluateParams(silhouette_pixels=100, silhouette_colour="rgb", seed=0,
                                   grid_images=1), tmp_path / "eval")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["ari"] == metrics["mean_iou"] == metrics["pixel_accuracy"] == 1.0
    assert metrics["mean_clusters_per_image"] == 2.0 and metrics["inertia_per_pixel"] == 0.0


# ---------------------------------------------------------------- gate and validation

def test_gate_scores_per_image_without_ignored_pixels() -> None:
    from segen.registry.promotion import gate

    data = gate.TestData("v", "k", np.zeros((1, 2, 3, 3), np.uint8), TRUTH_NP[None], ["a", "b"],
                         TRUTH_NP[None] != V)
    family = SimpleNamespace(name="segmentation")
    pred = PRED.numpy().copy()
    pred[pred == 2] = 0  # K = 2 here: (1, 0) is ignored whatever it holds
    # target 0 0 1 / V 1 1, pred 0 1 1 / 0 1 0 -> the 2x3 case above: mean IoU 5/12.
    scores = gate.per_image_scores(family, pred, data, None)
    assert scores["mean_iou"].tolist() == pytest.approx([5 / 12])
    params = SimpleNamespace(cluster_evaluate=SimpleNamespace(
        silhouette_colour="rgb", silhouette_pixels=100, seed=0))
    clusters = gate.per_image_scores(SimpleNamespace(name="clustering"), CLUSTERS[None], data,
                                     params)
    assert clusters["ari"].tolist() == pytest.approx([1 / 6])


def test_balance_warning_leaves_ignored_classes_out(tmp_path: Path) -> None:
    from segen.data.validation import ValidationReport, check_balance, ignored_classes

    (tmp_path / "classes.json").write_text(json.dumps(
        {"classes": ["background", "pole", "void", "empty"], "ignore": ["void", "empty"]}))
    ignored = ignored_classes(tmp_path)
    assert ignored == {"void", "empty"}
    pixels = np.array([97, 3, 10_000, 0])
    report = ValidationReport()
    check_balance(["background", "pole", "void", "empty"], pixels, 0.01, report, ignored)
    # pole: 3 of the 100 scored pixels (3 %), above 1 %; void's 10,000 are not counted
    # (3 / 10,100 would warn), and neither void nor the empty class is warned of.
    assert report.warnings == []
    report = ValidationReport()
    check_balance(["background", "pole", "void", "empty"], pixels, 0.01, report)
    assert [w.reason for w in report.warnings] == [
        "class 'background' covers only 0.96% of pixels",
        "class 'pole' covers only 0.03% of pixels", "class 'empty' has no pixels"]
