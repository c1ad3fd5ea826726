"""Scores for unsupervised segmentations (scikit-learn, scipy): no I/O.

Cluster ids are arbitrary, so scoring against ground truth either uses a measure that
ignores the names (adjusted Rand index) or first names each cluster after one class:
the Hungarian algorithm (scipy's linear_sum_assignment) picks the one-to-one matching
of clusters to classes that covers the most pixels. Clusters left over when there are
more clusters than classes, and DBSCAN noise (NOISE), predict no class: their pixels
count as misses (false negatives) of their true class. Classes left without a cluster
score IoU 0 wherever they occur.

Absent classes follow models.metrics: a class in neither truth nor prediction has IoU
0/0, reported as NaN and left out of the mean.

Ignored pixels follow models.metrics too: every pixel whose truth is ignore_index
(models.labels.IGNORE_INDEX = 255: an ignored class or padding) is out of the
(cluster, class) counts the matching maximises, of the matched confusion (so of IoU and
pixel accuracy) and of the ARI, whatever the prediction holds there. ignore_index=None
scores every pixel.
"""
from __future__ import annotations

import numpy as np

from models.clustering import NOISE
from models.labels import IGNORE_INDEX

UNMATCHED = -1  # class id of a pixel whose cluster matched no class (or that is noise)


def cluster_class_counts(pred: np.ndarray, truth: np.ndarray, n_clusters: int,
                         num_classes: int, *, ignore_index: int | None = IGNORE_INDEX
                         ) -> np.ndarray:
    """(n_clusters, num_classes) pixel counts of each (cluster, class) pair; noise and
    ignored pixels left out."""
    pred, truth = _scored(*_flat_pair(pred, truth), ignore_index)
    keep = pred != NOISE
    if keep.any() and (pred[keep].min() < 0 or pred[keep].max() >= n_clusters):
        raise ValueError(f"cluster ids must lie in [0, {n_clusters}) or be NOISE ({NOISE}), "
                         f"got range [{pred[keep].min()}, {pred[keep].max()}]")
    _check_classes(truth, num_classes)
    pairs = pred[keep].astype(np.int64) * num_classes + truth[keep]
    return np.bincount(pairs, minlength=n_clusters * num_classes).reshape(n_clusters,
                                                                          num_classes)


def match_clusters(counts: np.ndarray) -> np.ndarray:
    """(n_clusters, num_classes) counts -> (n_clusters,) class of each cluster, UNMATCHED
    for the clusters the one-to-one matching leaves out. Maximises the matched pixels."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(counts, maximize=True)
    lookup = np.full(counts.shape[0], UNMATCHED, dtype=np.int64)
    lookup[rows] = cols
    return lookup


def apply_matching(pred: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Cluster map -> class map (UNMATCHED for noise and unmatched clusters)."""
    out = np.full(pred.shape, UNMATCHED, dtype=np.int64)
    valid = pred != NOISE
    out[valid] = lookup[pred[valid]]
    return out


def matched_confusion(classes: np.ndarray, truth: np.ndarray, num_classes: int, *,
                      ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """(num_classes, num_classes + 1) counts [true class, predicted class]; the last column
    counts pixels that predict no class (UNMATCHED). Ignored pixels are left out."""
    classes, truth = _scored(*_flat_pair(classes, truth), ignore_index)
    _check_classes(truth, num_classes)
    predicted = np.where(classes == UNMATCHED, num_classes, classes)
    pairs = truth.astype(np.int64) * (num_classes + 1) + predicted
    return np.bincount(pairs, minlength=num_classes * (num_classes + 1)).reshape(
        num_classes, num_classes + 1)


def iou_scores(confusion: np.ndarray) -> dict[str, list[float] | float]:
    """Per-class IoU, mean IoU over present classes, and pixel accuracy from a confusion."""
    num_classes = confusion.shape[0]
    hits = np.diag(confusion[:, :num_classes]).astype(np.float64)
    truth_total = confusion.sum(1)
    pred_total = confusion[:, :num_classes].sum(0)
    union = truth_total + pred_total - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, hits / union, np.nan)
    present = union > 0
    return {"iou_per_class": iou.tolist(),
            "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
            "pixel_accuracy": float(hits.sum() / max(confusion.sum(), 1))}


def adjusted_rand(pred: np.ndarray, truth: np.ndarray, *,
                  ignore_index: int | None = IGNORE_INDEX) -> float:
    """Adjusted Rand index of one label map against its truth over the scored pixels (noise
    counts as one cluster); NaN when every pixel is ignored (scikit-learn would say 1.0)."""
    from sklearn.metrics import adjusted_rand_score

    pred, truth = _scored(*_flat_pair(pred, truth), ignore_index)
    if not truth.size:
        return float("nan")
    return float(adjusted_rand_score(truth, pred))


def silhouette(features: np.ndarray, labels: np.ndarray, sample_size: int,
               rng: np.random.Generator, valid: np.ndarray | None = None) -> float:
    """Silhouette coefficient (Rousseeuw 1987) on a seeded sample of non-noise rows (of the
    `valid` pixels only when given: padding and ignored pixels out); NaN when fewer than two
    clusters remain (it is undefined there)."""
    from sklearn.metrics import silhouette_score

    keep = labels.ravel() != NOISE
    if valid is not None:
        keep &= valid.ravel()
    keep = np.flatnonzero(keep)
    if len(keep) > sample_size:
        keep = np.sort(rng.choice(keep, size=sample_size, replace=False))
    sample = labels.ravel()[keep]
    if not 2 <= len(np.unique(sample)) <= len(sample) - 1:
        return float("nan")
    return float(silhouette_score(features[keep], sample))


def _flat_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != truth.shape:
        raise ValueError(f"prediction and truth must have the same shape, got {pred.shape} "
                         f"and {truth.shape}")
    return pred.ravel().astype(np.int64), truth.ravel().astype(np.int64)


def _scored(pred: np.ndarray, truth: np.ndarray, ignore_index: int | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The flat pair at the pixels whose truth is not ignore_index."""
    if ignore_index is None:
        return pred, truth
    keep = truth != ignore_index
    return pred[keep], truth[keep]


def _check_classes(truth: np.ndarray, num_classes: int) -> None:
    if truth.size and (truth.min() < 0 or truth.max() >= num_classes):
        raise ValueError(f"truth class ids must lie in [0, {num_classes}), got range "
                         f"[{truth.min()}, {truth.max()}]")
