"""Label-map scores streamed a batch at a time: what evaluate_kmeans / evaluate_dbscan and
the comparison stage take of every segmenter, with memory holding one batch, a few counts
and two numbers per image, whatever the size of the test split.

Scored pixels: those whose truth is not IGNORE_INDEX (an ignored class, padding) and that
lie in `valid` when given (sizes.npy's region, for data without masks). ARI, Hungarian
matching, matched IoU, pixel accuracy, silhouette and the noise fraction are taken over
them only.

Matching: "classes" (the labels are class ids already: a network's), "image" (one Hungarian
matching per image, done as the image arrives) or "split" (one matching over the whole
split: the (cluster, class) pixel counts are summed over the batches and matched at the
end, then the confusion follows from those counts, so streaming changes no score).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from models import cluster_metrics as cm
from models.clustering import NOISE, pixel_features
from models.labels import IGNORE_INDEX

MATCHINGS = ("classes", "image", "split")


class LabelMapScores:
    """Accumulates batches of (N, H, W) labels against (N, H, W) truth; `result()` gives
    (scores, per-image arrays, class maps of the first `keep` images)."""

    def __init__(self, num_classes: int, params: Any, matching: str, keep: int = 0):
        if matching not in MATCHINGS:
            raise ValueError(f"matching must be one of {MATCHINGS}, got {matching!r}")
        self.num_classes, self.params, self.matching, self.keep = (num_classes, params,
                                                                   matching, keep)
        self.ari: list[float] = []
        self.silhouette: list[float] = []
        self.confusion = np.zeros((num_classes, num_classes + 1), np.int64)
        self.counts = np.zeros((0, num_classes), np.int64)  # "split": (cluster, class)
        self.noise_by_class = np.zeros(num_classes, np.int64)  # "split": noise pixels' truth
        self.clusters: set[int] = set()  # every cluster id predicted anywhere ("split")
        self.noise = self.scored = 0
        self.kept: list[np.ndarray] = []  # labels ("split": clusters) of the first images

    def add(self, pred: np.ndarray, truth: np.ndarray, images: np.ndarray,
            valid: np.ndarray | None = None) -> None:
        """One batch: (N, H, W) int labels, (N, H, W) truth, (N, H, W, C) uint8 images and
        optionally (N, H, W) bool pixels to score."""
        if valid is not None:
            truth = np.where(valid, truth, IGNORE_INDEX)
        scored = truth != IGNORE_INDEX
        params = self.params
        for p, t, image, ok in zip(pred, truth, images, scored):
            # The seed takes the image's index in the split, so batching draws the same pixels.
            rng = np.random.default_rng([params.seed, len(self.ari)])
            self.ari.append(cm.adjusted_rand(p, t))
            self.silhouette.append(cm.silhouette(
                pixel_features(image, params.silhouette_colour, 0.0), p,
                params.silhouette_pixels, rng, ok))
        self.noise += int((pred[scored] == NOISE).sum())
        self.scored += int(scored.sum())
        if self.matching == "split":
            self._count_clusters(pred, truth)
            labels = pred
        else:
            labels = np.stack([self._classes(p, t) for p, t in zip(pred, truth)])
            self.confusion += sum(cm.matched_confusion(c, t, self.num_classes)
                                  for c, t in zip(labels, truth))
        self.kept += list(labels[:max(self.keep - len(self.kept), 0)])

    def result(self) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
        """(scores, {"ari", "silhouette"} per image (NaN: no scored pixel), the class maps
        of the first `keep` images (cm.UNMATCHED: noise or an unmatched cluster))."""
        confusion, kept = self.confusion, self.kept
        if self.matching == "split":
            lookup = cm.match_clusters(self.counts)
            confusion = self._split_confusion(lookup)
            kept = [cm.apply_matching(p, lookup) for p in kept]
        scores: dict[str, Any] = cm.iou_scores(confusion)
        ari, silhouette = np.array(self.ari), np.array(self.silhouette)
        defined, ari_defined = ~np.isnan(silhouette), ~np.isnan(ari)
        scores.update(ari=float(ari[ari_defined].mean()) if ari_defined.any() else None,
                      silhouette=float(silhouette[defined].mean()) if defined.any() else None,
                      silhouette_images=int(defined.sum()), matching=self.matching,
                      noise_fraction=self.noise / self.scored if self.scored else 0.0)
        classes = np.stack(kept) if kept else np.zeros((0, 0, 0), np.int64)
        return scores, {"ari": ari, "silhouette": silhouette}, classes

    def matching_table(self, class_names: list[str]) -> dict[str, str | None]:
        """"split": cluster id -> the class it was matched to (None: left unmatched)."""
        lookup = cm.match_clusters(self.counts)
        return {str(c): None if lookup[c] == cm.UNMATCHED else class_names[lookup[c]]
                for c in sorted(self.clusters)}

    def _classes(self, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
        if self.matching == "classes":
            return pred.astype(np.int64)
        n_clusters = max(int(pred.max()) + 1, 1)
        lookup = cm.match_clusters(cm.cluster_class_counts(pred, truth, n_clusters,
                                                           self.num_classes))
        return cm.apply_matching(pred, lookup)

    def _count_clusters(self, pred: np.ndarray, truth: np.ndarray) -> None:
        ids = np.unique(pred[pred != NOISE])
        self.clusters.update(int(c) for c in ids)
        n_clusters = max(int(ids.max()) + 1 if ids.size else 1, len(self.counts), 1)
        if n_clusters > len(self.counts):
            grown = np.zeros((n_clusters, self.num_classes), np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown
        self.counts += cm.cluster_class_counts(pred, truth, n_clusters, self.num_classes)
        noise_truth = truth[(pred == NOISE) & (truth != IGNORE_INDEX)].astype(np.int64)
        self.noise_by_class += np.bincount(noise_truth, minlength=self.num_classes)

    def _split_confusion(self, lookup: np.ndarray) -> np.ndarray:
        """The matched confusion of the whole split from its (cluster, class) counts: a
        matched cluster's pixels predict its class, the rest (unmatched clusters, noise)
        predict none (the last column)."""
        confusion = np.zeros((self.num_classes, self.num_classes + 1), np.int64)
        matched = lookup != cm.UNMATCHED
        confusion[:, lookup[matched]] += self.counts[matched].T  # one-to-one: no repeats
        confusion[:, self.num_classes] = (self.counts[~matched].sum(0)
                                          + self.noise_by_class)
        return confusion


def label_map_scores(pred: np.ndarray, truth: np.ndarray, images: np.ndarray,
                     num_classes: int, params: Any, matching: str,
                     valid: np.ndarray | None = None
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """LabelMapScores of a whole split in memory as one batch (for benchmarks and tests);
    the class maps returned are every image's."""
    scorer = LabelMapScores(num_classes, params, matching, keep=len(pred))
    scorer.add(pred, truth, images, valid)
    return scorer.result()
