"""The clustering segmenters and their scores on tiny images where the answer is known."""
from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from models import cluster_metrics as cm
from models.clustering import (
    NOISE,
    DBSCANSegmenter,
    KMeansSegmenter,
    pixel_features,
    rgb_to_lab,
)
from segen.config import ParamsError, load_params
from segen.serving import clustering

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def _config(kind: str, mode: str = "per_image", **overrides) -> dict:
    base = {"kind": kind, "channels": 3, "colour": "rgb", "position_weight": 0.0, "mode": mode,
            "fit_pixels": 4096, "seed": 0}
    hyper = ({"n_clusters": 2, "n_init": 4, "max_iter": 100} if kind == "kmeans"
             else {"eps": 0.05, "min_samples": 5})
    return base | hyper | overrides


def _flat_image(areas: list[tuple[tuple[int, int, int], int]], width: int = 10
                ) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal bands of flat colours: (image, truth) with band i = class i, rows given."""
    rows = [np.full((n, width, 3), colour, np.uint8) for colour, n in areas]
    truth = np.concatenate([np.full((n, width), i, np.uint8) for i, (_, n) in enumerate(areas)])
    return np.concatenate(rows), truth


def test_rgb_to_lab_reference_values() -> None:
    lab = rgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(lab[0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[1], [0.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)  # sRGB red, D65


def test_features_colour_and_position() -> None:
    image = np.zeros((3, 5, 3), np.uint8)
    image[..., 0] = 255
    features = pixel_features(image, "rgb", position_weight=2.0)
    assert features.shape == (15, 5) and features.dtype == np.float32
    np.testing.assert_allclose(features[:, :3], [[1.0, 0.0, 0.0]] * 15)
    np.testing.assert_allclose(features[-1, 3:], [2.0, 2.0])  # bottom-right corner, scaled
    grey = pixel_features(np.full((2, 2, 1), 255, np.uint8), "lab", 0.0)
    np.testing.assert_allclose(grey, [[1.0]] * 4, atol=1e-4)  # L = 100 -> 1.0


@pytest.mark.parametrize("kind", ["kmeans", "dbscan"])
@pytest.mark.parametrize("mode", ["per_image", "global"])
def test_two_flat_colours_are_found_exactly(kind: str, mode: str) -> None:
    image, truth = _flat_image([(RED, 6), (BLUE, 4)])
    config = _config(kind, mode)
    fitted = clustering.fit_global(config, image[None]) if mode == "global" else None
    labels = clustering.segment(config, fitted, image)[0]
    assert cm.adjusted_rand(labels, truth) == pytest.approx(1.0)
    lookup = cm.match_clusters(cm.cluster_class_counts(labels, truth, labels.max() + 1, 2))
    scores = cm.iou_scores(cm.matched_confusion(cm.apply_matching(labels, lookup), truth, 2))
    assert scores["iou_per_class"] == [1.0, 1.0] and scores["mean_iou"] == 1.0


@pytest.mark.parametrize("kind", ["kmeans", "dbscan"])
def test_three_colours_with_known_areas(kind: str) -> None:
    image, truth = _flat_image([(RED, 5), (BLUE, 3), (GREEN, 2)])  # 50 %, 30 %, 20 %
    labels = clustering.segment(_config(kind, n_clusters=3), None, image)[0]
    areas = sorted(np.bincount(labels.ravel()).tolist(), reverse=True)
    assert areas == [50, 30, 20]
    assert cm.adjusted_rand(labels, truth) == pytest.approx(1.0)
    assert not (labels == NOISE).any()


@pytest.mark.parametrize("kind", ["kmeans", "dbscan"])
@pytest.mark.parametrize("mode", ["per_image", "global"])
@pytest.mark.parametrize("width", [14, 3])  # wider than tall, and taller than wide
def test_non_square_images_with_position_features(kind: str, mode: str, width: int) -> None:
    image, truth = _flat_image([(RED, 2), (BLUE, 4)], width=width)  # 6 x width
    config = _config(kind, mode, position_weight=0.02)
    fitted = clustering.fit_global(config, image[None]) if mode == "global" else None
    labels = clustering.segment(config, fitted, image)[0]
    assert labels.shape == (6, width)
    assert cm.adjusted_rand(labels, truth) == pytest.approx(1.0)


def test_hungarian_matching_hand_worked() -> None:
    # clusters x classes. Greedy (largest cell first) takes c0->class0 (10), c1->class1 (1),
    # c2->class2 (5): 16 pixels. The optimum is c0->class1 (9) + c1->class0 (8) + c2->class2
    # (5) = 22 pixels; c3 is left over, so its pixels miss their class.
    counts = np.array([[10, 9, 0], [8, 1, 0], [0, 0, 5], [2, 0, 0]])
    lookup = cm.match_clusters(counts)
    assert lookup.tolist() == [1, 0, 2, cm.UNMATCHED]

    pred = np.repeat(np.arange(4), counts.sum(1))  # the pixels behind those counts
    truth = np.concatenate([np.repeat(np.arange(3), row) for row in counts])
    np.testing.assert_array_equal(cm.cluster_class_counts(pred, truth, 4, 3), counts)
    scores = cm.iou_scores(cm.matched_confusion(cm.apply_matching(pred, lookup), truth, 3))
    # class 0: hits 8 (c1), predicted 9 (c1), true 20 -> 8 / (20 + 9 - 8)
    # class 1: hits 9 (c0), predicted 19 (c0), true 10 -> 9 / (10 + 19 - 9)
    # class 2: 5 / 5
    np.testing.assert_allclose(scores["iou_per_class"], [8 / 21, 9 / 20, 1.0])
    assert scores["mean_iou"] == pytest.approx((8 / 21 + 9 / 20 + 1.0) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(22 / 35)


def test_noise_counts_as_a_miss_and_as_one_cluster_for_ari() -> None:
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, NOISE, 1, 1]])
    classes = cm.apply_matching(pred, cm.match_clusters(cm.cluster_class_counts(pred, truth,
                                                                                2, 2)))
    assert classes.tolist() == [[0, cm.UNMATCHED, 1, 1]]
    scores = cm.iou_scores(cm.matched_confusion(classes, truth, 2))
    assert scores["iou_per_class"] == [0.5, 1.0]  # the noise pixel is a miss of class 0
    from sklearn.metrics import adjusted_rand_score
    assert cm.adjusted_rand(pred, truth) == pytest.approx(
        adjusted_rand_score([0, 0, 1, 1], [0, -1, 1, 1]))


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    truth = np.array([[0, 0, 2, 2]])
    classes = np.array([[0, 0, 2, 2]])
    scores = cm.iou_scores(cm.matched_confusion(classes, truth, 3))
    assert np.isnan(scores["iou_per_class"][1]) and scores["mean_iou"] == 1.0


def test_silhouette_is_scikit_learns_on_a_seeded_sample() -> None:
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.05, (300, 2)), rng.normal(1, 0.05, (200, 2))])
    labels = np.repeat([0, 1], [300, 200])
    full = cm.silhouette(features, labels, sample_size=10_000, rng=np.random.default_rng(1))
    assert full == pytest.approx(silhouette_score(features, labels)) and full > 0.9
    sampled = cm.silhouette(features, labels, sample_size=50, rng=np.random.default_rng(7))
    rows = np.sort(np.random.default_rng(7).choice(500, size=50, replace=False))
    assert sampled == pytest.approx(silhouette_score(features[rows], labels[rows]))
    assert sampled == cm.silhouette(features, labels, 50, np.random.default_rng(7))  # seeded
    assert np.isnan(cm.silhouette(features, np.zeros(500, int), 50, rng))  # one cluster
    noisy = labels.copy()
    noisy[:10] = NOISE  # noise is left out, not scored as a cluster
    assert cm.silhouette(features, noisy, 10_000, rng) == pytest.approx(
        silhouette_score(features[10:], labels[10:]))


def test_kmeans_inertia_is_the_fit_objective() -> None:
    features = np.array([[0.0], [0.2], [1.0], [1.2]], np.float32)
    segmenter = KMeansSegmenter(n_clusters=2, n_init=2, max_iter=100, seed=0).fit(features)
    labels = segmenter.predict(features)
    assert segmenter.inertia_of(features, labels) == pytest.approx(4 * 0.1 ** 2, rel=1e-5)
    assert segmenter.inertia == pytest.approx(0.04, rel=1e-5)


def test_dbscan_far_pixels_are_noise() -> None:
    segmenter = DBSCANSegmenter(eps=0.1, min_samples=3).fit(
        np.array([[0.0], [0.01], [0.02], [0.03]], np.float32))
    assert segmenter.predict(np.array([[0.05], [0.5]], np.float32)).tolist() == [0, NOISE]


def test_per_image_labels_do_not_depend_on_the_batch() -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    config = _config("kmeans", n_clusters=3)
    together = clustering.segment(config, None, images)
    alone = clustering.segment(config, None, images[2])
    np.testing.assert_array_equal(together[2], alone[0])


@pytest.mark.parametrize("kind", ["kmeans", "dbscan"])
def test_save_and_load_give_the_same_labels(tmp_path: Path, kind: str) -> None:
    image, _ = _flat_image([(RED, 6), (BLUE, 4)])
    config = _config(kind, "global")
    fitted = clustering.fit_global(config, image[None])
    clustering.save(config, fitted, tmp_path)
    loaded_config, loaded = clustering.load(tmp_path)
    assert loaded_config == config
    np.testing.assert_array_equal(clustering.segment(config, fitted, image),
                                  clustering.segment(loaded_config, loaded, image))


def test_wrong_channel_count_is_a_clear_error() -> None:
    config = _config("kmeans")
    with pytest.raises(ValueError, match=r"expected images of shape \(N, H, W, 3\).*got "
                                         r"\(1, 4, 4, 4\).*convert them to RGB"):
        clustering.segment(config, None, np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        clustering.segment(config, None, np.zeros((1, 4, 4, 3), np.float32))


def _params_with(tmp_path: Path, section: str, **values) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("section, values, message", [
    ("kmeans", {"n_clusters": 1}, "kmeans.n_clusters: expected an int in"),
    ("kmeans", {"colour": "hsv"}, "kmeans.colour: expected one of"),
    ("kmeans", {"mode": "sometimes"}, "kmeans.mode"),
    ("dbscan", {"eps": 0}, "dbscan.eps: expected a float > 0"),
    ("dbscan", {"fit_pixels": 50_000}, "dbscan.fit_pixels"),
    ("dbscan", {"position_weight": -1.0}, "dbscan.position_weight"),
    ("cluster_evaluate", {"silhouette_pixels": 1}, "cluster_evaluate.silhouette_pixels"),
    ("register_kmeans", {"model_name": " "}, "register_kmeans.model_name"),
])
def test_out_of_range_params_name_the_key(tmp_path: Path, section: str, values: dict,
                                          message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        load_params(_params_with(tmp_path, section, **values))


def _rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


DBSCAN_512_BOUND_MIB = 256


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="needs Linux /proc to reset the peak resident memory")
@pytest.mark.parametrize("image_kind", ["shapes", "worst_case"])
def test_dbscan_on_512x512_stays_within_its_memory_bound(image_kind: str) -> None:
    """DBSCAN on all 262,144 pixels of such an image needs tens of GB (its radius query
    keeps every neighbour of every pixel); the sample design stays under the bound.

    Measured two ways: tracemalloc (numpy's allocations) and the rise of the process's
    peak resident memory (which also sees scikit-learn's native neighbour lists, which
    tracemalloc does not)."""
    from segen.data.shapes import make_sample

    if image_kind == "shapes":
        image = make_sample(np.random.default_rng(0), 512, 1, 4).image
    else:  # ~3,000 distinct colours, all within eps of each other: the densest sample
        index = np.arange(512 * 512)
        image = np.stack([100 + index % 15, 100 + index // 15 % 15, 100 + index // 225 % 15],
                         -1).reshape(512, 512, 3).astype(np.uint8)
    config = _config("dbscan", eps=0.1, min_samples=10, fit_pixels=3000)
    clustering.segment(config, None, image[:32, :32])  # imports and warm-up outside the bound
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _rss_peak_mib()
    tracemalloc.start()
    try:
        labels = clustering.segment(config, None, image)
        traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    rss_rise = _rss_peak_mib() - before
    assert labels.shape == (1, 512, 512)
    assert traced_peak < DBSCAN_512_BOUND_MIB, traced_peak
    assert rss_rise < DBSCAN_512_BOUND_MIB, rss_rise


def test_dbscan_that_finds_no_cluster_says_which_params_to_change(tmp_path: Path) -> None:
    import json

    from segen.config import DBSCANParams
    from segen.engines.cluster_trainer import fit
    from segen.pipeline.store import StageResult

    image, mask = _flat_image([(RED, 6), (BLUE, 4)])
    np.save(tmp_path / "images.npy", image[None])
    np.save(tmp_path / "masks.npy", mask[None])
    (tmp_path / "split.json").write_text(json.dumps({"train": [0], "val": [], "test": []}))
    (tmp_path / "dataset.json").write_text(json.dumps({"channels": 3, "has_masks": True,
                                                     "data_version": "x"}))
    prepared = StageResult("preprocess", "k", "d", str(tmp_path))
    params = DBSCANParams(eps=0.1, min_samples=1000, colour="rgb", position_weight=0.0,
                          mode="global", fit_pixels=100, seed=0)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="every pixel is noise.*dbscan.eps.*dbscan.min_samples"):
        fit(prepared, "dbscan", params, out)
