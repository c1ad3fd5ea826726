"""The evaluation behind evaluate_kmeans / evaluate_dbscan: the test split segmented and
scored (segen.engines.label_map_scores) a batch at a time, so memory holds one batch.

Scored pixels: those whose truth is not IGNORE_INDEX (an ignored class, padding) and that
lie in `valid` when given (sizes.npy's region, for data without masks); inertia is taken
over them only, and the per_image fits draw from them too.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.clustering import NOISE, KMeansSegmenter
from segen.config import ClusterEvaluateParams
from segen.data.arrays import dataset_meta, split_batches
from segen.engines.cluster_trainer import split_valid_pixels
from segen.engines.label_map_scores import LabelMapScores
from segen.hashing import hash_tree
from segen.pipeline.stage import StageOutput
from segen.pipeline.store import StageResult
from segen.serving import clustering
from segen.serving.grid import save_prediction_grid

TIMING = "timing.json"
BATCH = 16  # test images in memory at a time: one batch, whatever the split's size


def evaluate(preprocess: StageResult, trained: StageResult, params: ClusterEvaluateParams,
             out: Path) -> StageOutput:
    """metrics.json, timing.json, per_image.npz and grid.png of one segmenter on the test
    split, streamed BATCH images at a time."""
    config, fitted = clustering.load(Path(trained.path))
    class_names = dataset_meta(preprocess)["classes"]
    matching = "split" if config["mode"] == "global" else "image"
    scorer = LabelMapScores(len(class_names), params, matching, keep=params.grid_images)
    segmented = SegmentedSplit(config["kind"] == "kmeans")
    grid: list[tuple[np.ndarray, np.ndarray]] = []
    for positions, images, masks in split_batches(preprocess, "test", BATCH):
        valid = split_valid_pixels(preprocess, "test", masks, positions)
        pred = segmented.add(config, fitted, images, valid)
        scorer.add(pred, masks, images, valid)
        grid += list(zip(images, masks))[:max(params.grid_images - len(grid), 0)]
    scores, per_image, classes = scorer.result()
    scores.update(classes=class_names, n_test_images=segmented.images, kind=config["kind"],
                  mode=config["mode"], mean_clusters_per_image=float(np.mean(
                      segmented.n_clusters)) if segmented.n_clusters else 0.0)
    if segmented.inertia is not None:
        scores["inertia_per_pixel"] = segmented.inertia / max(segmented.valid_pixels, 1)
    if matching == "split":
        scores["matching_table"] = scorer.matching_table(class_names)
    timing = {"seconds_per_image": segmented.seconds / max(segmented.images, 1),
              "pixels_per_second": segmented.pixels / max(segmented.seconds, 1e-9)}
    np.savez(out / "per_image.npz", **per_image)
    (out / "metrics.json").write_text(json.dumps(scores, indent=1).replace("NaN", "null"))
    (out / TIMING).write_text(json.dumps(timing, indent=1))
    if grid:
        grid_images, grid_masks = (np.stack(part) for part in zip(*grid))
        save_prediction_grid(grid_images, grid_masks, classes, out / "grid.png")
    # Timings differ run to run: leave them out of the digest, so recomputing a lost
    # evaluation with the same scores keeps register_* a cache hit.
    return StageOutput({"metrics": _flat_metrics(scores | timing, class_names)},
                       digest=hash_tree(out, exclude=(TIMING,)))


class SegmentedSplit:
    """What segmenting the test split measures, batch after batch: seconds spent segmenting
    (scoring excluded), pixels, K-means inertia and clusters per image (both over the valid
    pixels)."""

    def __init__(self, kmeans: bool):
        self.inertia = 0.0 if kmeans else None
        self.seconds, self.images, self.pixels, self.valid_pixels = 0.0, 0, 0, 0
        self.n_clusters: list[int] = []

    def add(self, config: dict[str, Any], fitted: Any, images: np.ndarray,
            valid: np.ndarray | None) -> np.ndarray:
        """(N, H, W) labels of one batch."""
        pred = np.empty(images.shape[:3], dtype=np.int32)
        scoring = 0.0
        start = time.perf_counter()
        for i, (features, segmenter, labels) in enumerate(
                clustering.segment_each(config, fitted, images, valid)):
            pred[i] = labels
            tick = time.perf_counter()
            ok = np.ones(labels.shape, bool) if valid is None else valid[i]
            if isinstance(segmenter, KMeansSegmenter):
                self.inertia += segmenter.inertia_of(features[ok.ravel()], labels[ok])
            self.n_clusters.append(len(np.unique(labels[ok & (labels != NOISE)])))
            self.valid_pixels += int(ok.sum())
            scoring += time.perf_counter() - tick
        self.seconds += time.perf_counter() - start - scoring
        self.images += len(images)
        self.pixels += pred.size
        return pred


def _flat_metrics(scores: dict[str, Any], class_names: list[str]) -> dict[str, float]:
    """The scalar metrics (what MLflow logs and the run summary shows)."""
    keys = ("mean_iou", "pixel_accuracy", "ari", "silhouette", "seconds_per_image",
            "pixels_per_second", "inertia_per_pixel", "noise_fraction",
            "mean_clusters_per_image")
    metrics = {k: scores[k] for k in keys if scores.get(k) is not None}
    metrics.update({f"iou_{c}": v for c, v in zip(class_names, scores["iou_per_class"])
                    if not np.isnan(v)})
    return metrics

