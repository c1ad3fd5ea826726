"""The evaluation behind evaluate_kmeans / evaluate_dbscan, and the label-map scores the comparison stage also takes of the U-Net.

Scored pixels: those whose truth is not IGNORE_INDEX (an ignored class, padding) and that
lie in `valid` when given (sizes.npy's region, for data without masks). ARI, Hungarian
matching, matched IoU, pixel accuracy, silhouette, noise fraction and inertia are taken
over them only; the per_image fits of evaluate draw from them too.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models import cluster_metrics as cm
from models.clustering import NOISE, KMeansSegmenter, pixel_features
from models.labels import IGNORE_INDEX
from segen.config import ClusterEvaluateParams
from segen.data.arrays import dataset_meta, load_arrays
from segen.engines.cluster_trainer import split_valid_pixels
from segen.hashing import hash_tree
from segen.pipeline.stage import StageOutput
from segen.pipeline.store import StageResult
from segen.serving import clustering
from segen.serving.grid import save_prediction_grid

TIMING = "timing.json"


def label_map_scores(pred: np.ndarray, truth: np.ndarray, images: np.ndarray,
                     num_classes: int, params: ClusterEvaluateParams, matching: str,
                     valid: np.ndarray | None = None
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """(scores, per-image arrays, class map) of (N, H, W) labels against (N, H, W) truth,
    over the scored pixels (truth != IGNORE_INDEX, and inside `valid` (N, H, W) bool when
    given); an image without one has NaN ARI and silhouette.

    matching: "split" (one Hungarian matching over all images), "image" (one per image)
    or "classes" (pred already holds class ids, e.g. the U-Net's).
    """
    if valid is not None:
        truth = np.where(valid, truth, IGNORE_INDEX)
    scored = truth != IGNORE_INDEX
    ari = np.array([cm.adjusted_rand(p, t) for p, t in zip(pred, truth)])
    silhouette = np.array([
        cm.silhouette(pixel_features(image, params.silhouette_colour, 0.0), p,
                      params.silhouette_pixels, np.random.default_rng([params.seed, i]), ok)
        for i, (image, p, ok) in enumerate(zip(images, pred, scored))])
    classes = _matched_classes(pred, truth, num_classes, matching)
    confusion = sum(cm.matched_confusion(c, t, num_classes) for c, t in zip(classes, truth))
    scores = cm.iou_scores(confusion)
    defined, ari_defined = ~np.isnan(silhouette), ~np.isnan(ari)
    scores.update(ari=float(ari[ari_defined].mean()) if ari_defined.any() else None,
                  silhouette=float(silhouette[defined].mean()) if defined.any() else None,
                  silhouette_images=int(defined.sum()), matching=matching,
                  noise_fraction=float((pred[scored] == NOISE).mean()) if scored.any() else 0.0)
    return scores, {"ari": ari, "silhouette": silhouette}, classes


def _matched_classes(pred: np.ndarray, truth: np.ndarray, num_classes: int, matching: str
                     ) -> np.ndarray:
    if matching == "classes":
        return pred.astype(np.int64)
    if matching == "split":
        n_clusters = max(int(pred.max()) + 1, 1)
        lookup = cm.match_clusters(cm.cluster_class_counts(pred, truth, n_clusters,
                                                           num_classes))
        return cm.apply_matching(pred, lookup)
    if matching == "image":
        return np.stack([_matched_classes(p[None], t[None], num_classes, "split")[0]
                         for p, t in zip(pred, truth)])
    raise ValueError(f"matching must be 'split', 'image' or 'classes', got {matching!r}")


def evaluate(preprocess: StageResult, trained: StageResult, params: ClusterEvaluateParams,
             out: Path) -> StageOutput:
    """metrics.json, timing.json, per_image.npz and grid.png of one segmenter on the test split."""
    config, fitted = clustering.load(Path(trained.path))
    images, masks = load_arrays(preprocess, "test")
    class_names = dataset_meta(preprocess)["classes"]
    valid = split_valid_pixels(preprocess, "test", masks)
    pred, seconds, inertia, n_clusters = _segment_test_split(config, fitted, images, valid)
    matching = "split" if config["mode"] == "global" else "image"
    scores, per_image, classes = label_map_scores(pred, masks, images, len(class_names),
                                                  params, matching, valid)
    scores.update(classes=class_names, n_test_images=len(images), kind=config["kind"],
                  mode=config["mode"], mean_clusters_per_image=float(np.mean(n_clusters)))
    if inertia is not None:
        scored = pred.size if valid is None else int(valid.sum())
        scores["inertia_per_pixel"] = inertia / max(scored, 1)
    if matching == "split":
        scores["matching_table"] = _matching_table(pred, classes, class_names)
    timing = {"seconds_per_image": seconds / len(images),
              "pixels_per_second": pred.size / max(seconds, 1e-9)}
    np.savez(out / "per_image.npz", **per_image)
    (out / "metrics.json").write_text(json.dumps(scores, indent=1).replace("NaN", "null"))
    (out / TIMING).write_text(json.dumps(timing, indent=1))
    n = min(params.grid_images, len(images))
    save_prediction_grid(images[:n], masks[:n], classes[:n], out / "grid.png")
    # Timings differ run to run: leave them out of the digest, so recomputing a lost
    # evaluation with the same scores keeps register_* a cache hit.
    return StageOutput({"metrics": _flat_metrics(scores | timing, class_names)},
                       digest=hash_tree(out, exclude=(TIMING,)))


def _segment_test_split(config: dict[str, Any], fitted: Any, images: np.ndarray,
                        valid: np.ndarray | None
                        ) -> tuple[np.ndarray, float, float | None, list[int]]:
    """Labels, seconds spent segmenting (scoring excluded), K-means inertia and clusters per
    image (both over the valid pixels)."""
    pred = np.empty(images.shape[:3], dtype=np.int32)
    inertia = 0.0 if config["kind"] == "kmeans" else None
    n_clusters, scoring = [], 0.0
    start = time.perf_counter()
    for i, (features, segmenter, labels) in enumerate(
            clustering.segment_each(config, fitted, images, valid)):
        pred[i] = labels
        tick = time.perf_counter()
        ok = np.ones(labels.shape, bool) if valid is None else valid[i]
        if isinstance(segmenter, KMeansSegmenter):
            inertia += segmenter.inertia_of(features[ok.ravel()], labels[ok])
        n_clusters.append(len(np.unique(labels[ok & (labels != NOISE)])))
        scoring += time.perf_counter() - tick
    return pred, time.perf_counter() - start - scoring, inertia, n_clusters


def _matching_table(pred: np.ndarray, classes: np.ndarray, class_names: list[str]
                    ) -> dict[str, str | None]:
    """cluster id -> the class it was matched to (None: left unmatched)."""
    table: dict[str, str | None] = {}
    for cluster in np.unique(pred[pred != NOISE]):
        matched = int(classes[pred == cluster][0])
        table[str(cluster)] = None if matched == cm.UNMATCHED else class_names[matched]
    return table


def _flat_metrics(scores: dict[str, Any], class_names: list[str]) -> dict[str, float]:
    """The scalar metrics (what MLflow logs and the run summary shows)."""
    keys = ("mean_iou", "pixel_accuracy", "ari", "silhouette", "seconds_per_image",
            "pixels_per_second", "inertia_per_pixel", "noise_fraction",
            "mean_clusters_per_image")
    metrics = {k: scores[k] for k in keys if scores.get(k) is not None}
    metrics.update({f"iou_{c}": v for c, v in zip(class_names, scores["iou_per_class"])
                    if not np.isnan(v)})
    return metrics

