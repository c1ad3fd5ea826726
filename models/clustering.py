"""Unsupervised pixel segmenters: K-means and DBSCAN on per-pixel features (scikit-learn).

Pure: arrays in, arrays out; no I/O. `pixel_features` turns images into (P, F) rows of
colour (RGB or CIE Lab) plus an optional (y, x) position scaled by a weight; a
segmenter is fitted on such rows and then labels any other rows with cluster ids.

DBSCAN (Ester et al. 1996) finds its neighbourhoods with a radius query whose result
holds every neighbour of every point: on the pixels of one flat-coloured 512x512 image
that is ~n^2 indices (hundreds of GB). So it is fitted on a pixel sample of bounded
size (memory ~16 bytes x fit_pixels^2 at worst, when every sampled pixel is within eps
of every other), and every pixel is then given the cluster of its nearest core sample
when that core lies within eps (how DBSCAN labels border points), else NOISE.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NOISE = -1  # DBSCAN: a pixel farther than eps from every core sample
COLOUR_SPACES = ("rgb", "lab")
_CHUNK = 1 << 16  # rows per nearest-neighbour query: bounds the temporary arrays

# sRGB (D65) -> CIE XYZ, and the D65 reference white (IEC 61966-2-1, CIE 15).
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in [0, 1] -> (..., 3) CIE L*a*b* (L in [0, 100], a/b about +-100)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    t = (linear @ _RGB_TO_XYZ.T) / _WHITE_D65
    delta = 6.0 / 29.0
    f = np.where(t > delta ** 3, np.cbrt(t), t / (3 * delta ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_features(pixels: np.ndarray, colour: str) -> np.ndarray:
    """(P, C) uint8 pixels, C in {1, 3} -> (P, C) float32 in about [0, 1] (Lab: / 100).

    A greyscale pixel's Lab is (L, 0, 0), so only its lightness is kept.
    """
    if colour not in COLOUR_SPACES:
        raise ValueError(f"colour must be one of {COLOUR_SPACES}, got {colour!r}")
    if pixels.ndim != 2 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"expected (P, 1) or (P, 3) pixels, got shape {pixels.shape}")
    x = pixels.astype(np.float64) / 255.0
    if colour == "lab":
        rgb = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x
        x = rgb_to_lab(rgb)[:, : pixels.shape[1]] / 100.0
    return x.astype(np.float32)


def position_features(flat_index: np.ndarray, height: int, width: int, weight: float
                      ) -> np.ndarray:
    """(P,) row-major pixel indices -> (P, 2) float32 (y, x) in [0, 1] times weight."""
    rows, cols = np.divmod(flat_index, width)
    scale = np.array([max(height - 1, 1), max(width - 1, 1)], dtype=np.float64)
    return (np.stack([rows, cols], axis=1) / scale * weight).astype(np.float32)


def pixel_features(image: np.ndarray, colour: str, position_weight: float,
                   flat_index: np.ndarray | None = None) -> np.ndarray:
    """(H, W, C) uint8 -> (P, F) float32 features of all pixels, or of `flat_index` only."""
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected one (H, W, C) uint8 image, got {image.dtype} {image.shape}")
    height, width, channels = image.shape
    pixels = image.reshape(-1, channels)
    index = np.arange(height * width) if flat_index is None else flat_index
    features = colour_features(pixels[index], colour)
    if position_weight > 0:
        features = np.hstack([features, position_features(index, height, width,
                                                          position_weight)])
    return features


def sample_features(images: np.ndarray, n: int, colour: str, position_weight: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Features of n pixels drawn without replacement, uniformly over all pixels of all
    (N, H, W, C) images (every pixel when there are fewer than n)."""
    count, height, width, _ = images.shape
    per_image = height * width
    chosen = np.sort(rng.choice(count * per_image, size=min(n, count * per_image),
                                replace=False))
    which, flat = np.divmod(chosen, per_image)
    parts = [pixel_features(images[i], colour, position_weight, flat[which == i])
             for i in np.unique(which)]
    return np.concatenate(parts)


@dataclass
class KMeansSegmenter:
    """K-means with k-means++ seeding (Arthur & Vassilvitskii 2007); labels = nearest centre."""
    n_clusters: int
    n_init: int
    max_iter: int
    seed: int
    centres: np.ndarray | None = field(default=None, repr=False)  # (k, F)
    inertia: float | None = None  # sum of squared distances on the rows it was fitted on

    def fit(self, features: np.ndarray) -> "KMeansSegmenter":
        from sklearn.cluster import KMeans

        if len(features) < self.n_clusters:
            raise ValueError(f"K-means needs at least n_clusters={self.n_clusters} pixels to "
                             f"fit, got {len(features)}")
        model = KMeans(n_clusters=self.n_clusters, init="k-means++", n_init=self.n_init,
                       max_iter=self.max_iter, random_state=self.seed).fit(features)
        self.centres = model.cluster_centers_.astype(np.float32)
        self.inertia = float(model.inertia_)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(P, F) -> (P,) int32 index of the nearest centre."""
        from sklearn.metrics import pairwise_distances_argmin

        return pairwise_distances_argmin(features, self._fitted()).astype(np.int32)

    def inertia_of(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Sum of squared distances of rows to their assigned centres (the K-means objective)."""
        return float(((features - self._fitted()[labels]) ** 2).sum())

    def _fitted(self) -> np.ndarray:
        if self.centres is None:
            raise RuntimeError("KMeansSegmenter is not fitted: call fit() first")
        return self.centres


@dataclass
class DBSCANSegmenter:
    """DBSCAN (Ester et al. 1996) fitted on a sample; new rows take the cluster of the
    nearest core sample within eps, else NOISE."""
    eps: float
    min_samples: int
    core: np.ndarray | None = field(default=None, repr=False)  # (M, F) core samples
    core_labels: np.ndarray | None = field(default=None, repr=False)  # (M,) their clusters

    @property
    def n_clusters(self) -> int:
        labels = self._fitted()[1]
        return int(labels.max()) + 1 if len(labels) else 0

    def fit(self, features: np.ndarray) -> "DBSCANSegmenter":
        from sklearn.cluster import DBSCAN

        # Identical rows are one point weighted by its count: the same clustering (a core
        # point needs min_samples of weight within eps), but flat or greyscale images
        # collapse to a few points, so their neighbourhoods stay small.
        unique, counts = np.unique(features, axis=0, return_counts=True)
        model = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit(
            unique, sample_weight=counts)
        core = model.core_sample_indices_
        self.core = unique[core].astype(np.float32)
        self.core_labels = model.labels_[core].astype(np.int32)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(P, F) -> (P,) int32 cluster ids, NOISE where no core sample is within eps."""
        from sklearn.neighbors import NearestNeighbors

        core, core_labels = self._fitted()
        labels = np.full(len(features), NOISE, dtype=np.int32)
        if len(core) == 0:
            return labels
        index = NearestNeighbors(n_neighbors=1).fit(core)
        for start in range(0, len(features), _CHUNK):
            distance, nearest = index.kneighbors(features[start:start + _CHUNK])
            within = distance[:, 0] <= self.eps
            labels[start:start + _CHUNK][within] = core_labels[nearest[within, 0]]
        return labels

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.core is None or self.core_labels is None:
            raise RuntimeError("DBSCANSegmenter is not fitted: call fit() first")
        return self.core, self.core_labels
