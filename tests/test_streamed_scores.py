"""segen.engines.label_map_scores: scores streamed batch by batch equal the scores of the
whole split at once, and the split-wide matching's confusion (derived from the summed
(cluster, class) counts) equals matching every pixel and counting directly."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from models import cluster_metrics as cm
from models.clustering import NOISE
from models.labels import IGNORE_INDEX
from segen.engines.label_map_scores import LabelMapScores, label_map_scores

PARAMS = SimpleNamespace(silhouette_colour="rgb", silhouette_pixels=30, seed=3)
CLASSES = 3


def _split(seed: int = 0, n: int = 7) -> tuple[np.ndarray, ...]:
    """Images, truth with ignored pixels, clusters 0..4 with noise (cluster 4 only in the
    last image: the counts must grow mid-stream), valid pixels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 6, 9, 3), dtype=np.uint8)
    truth = rng.integers(0, CLASSES, (n, 6, 9)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.15] = IGNORE_INDEX
    pred = np.where(rng.random(truth.shape) < 0.7, truth % CLASSES, rng.integers(0, 4, truth.shape))
    pred = np.where(rng.random(truth.shape) < 0.1, NOISE, pred).astype(np.int32)
    pred[-1, :2] = 4
    valid = rng.random(truth.shape) > 0.1
    return images, truth, pred, valid


@pytest.mark.parametrize("matching", ["classes", "image", "split"])
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_streamed_scores_equal_the_whole_split(matching: str, batch: int) -> None:
    images, truth, pred, valid = _split()
    if matching == "classes":
        pred = np.where(pred == NOISE, 0, pred % CLASSES)
    whole, whole_per_image, whole_classes = label_map_scores(pred, truth, images, CLASSES,
                                                             PARAMS, matching, valid)
    scorer = LabelMapScores(CLASSES, PARAMS, matching, keep=4)
    for start in range(0, len(pred), batch):
        part = slice(start, start + batch)
        scorer.add(pred[part], truth[part], images[part], valid[part])
    streamed, per_image, classes = scorer.result()
    assert streamed.keys() == whole.keys()
    for key, value in whole.items():
        assert streamed[key] == (pytest.approx(value, nan_ok=True)
                                 if isinstance(value, (float, list)) else value), key
    for name in ("ari", "silhouette"):
        np.testing.assert_allclose(per_image[name], whole_per_image[name], equal_nan=True)
    np.testing.assert_array_equal(classes, whole_classes[:4])


def test_split_matching_scores_every_pixel_by_one_lookup() -> None:
    images, truth, pred, valid = _split(seed=1)
    scored_truth = np.where(valid, truth, IGNORE_INDEX)
    lookup = cm.match_clusters(cm.cluster_class_counts(pred, scored_truth, 5, CLASSES))
    expected = cm.iou_scores(cm.matched_confusion(cm.apply_matching(pred, lookup),
                                                  scored_truth, CLASSES))
    scores, _, classes = label_map_scores(pred, truth, images, CLASSES, PARAMS, "split", valid)
    assert scores["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert scores["iou_per_class"] == pytest.approx(expected["iou_per_class"], nan_ok=True)
    assert scores["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    np.testing.assert_array_equal(classes, cm.apply_matching(pred, lookup))
    scored = scored_truth != IGNORE_INDEX
    assert scores["noise_fraction"] == pytest.approx((pred[scored] == NOISE).mean())


def test_matching_table_names_every_predicted_cluster() -> None:
    images, truth, pred, valid = _split(seed=2)
    scorer = LabelMapScores(CLASSES, PARAMS, "split")
    scorer.add(pred, truth, images, valid)
    table = scorer.matching_table(["a", "b", "c"])
    assert sorted(table, key=int) == [str(c) for c in range(5)]
    assert sum(name is not None for name in table.values()) == CLASSES  # 5 clusters, 3 classes
    assert {name for name in table.values() if name} == {"a", "b", "c"}


def test_unknown_matching_is_refused() -> None:
    with pytest.raises(ValueError, match="matching must be one of"):
        LabelMapScores(CLASSES, PARAMS, "greedy")
