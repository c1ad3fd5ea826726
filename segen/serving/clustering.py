"""Building, saving and running the K-means / DBSCAN segmenters: shared by their training
and evaluation stages, the registered pyfunc and `segen predict`.

numpy + scikit-learn only (no torch, Prefect or MLflow). A segmenter folder holds
segmenter.json (its config) and, in "global" mode, segmenter.npz (what it learnt):

- global: fitted once on `fit_pixels` pixels drawn across the training split, then
  applied unchanged to every image (what a registered model does);
- per_image: the config alone; each image gets its own fit on `fit_pixels` of its
  pixels (seeded the same for every image, so an image's labels never depend on the
  batch it came in).

Valid pixels: a preprocessed split pads every image to one canvas and marks ignored
pixels (an ignored class, padding) with IGNORE_INDEX in its masks. Fits never see those
pixels: fit_global and segment_each take an optional (N, H, W) bool `valid`
(`valid_pixels` builds it from the masks, or from sizes.npy when the data has no masks:
segen.engines.cluster_trainer.split_valid_pixels)
and draw their fit pixels among the valid ones only. Every pixel is still labelled (the
scores leave the invalid ones out). Without `valid` (a user's own images at their own
size, through `segen predict`) every pixel is valid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np

from models.clustering import (
    DBSCANSegmenter,
    KMeansSegmenter,
    pixel_features,
    sample_features,
)
from models.labels import IGNORE_INDEX
from segen.pipeline.graph import CLUSTERING_KINDS
from segen.serving.image_batch import as_image_batch
from segen.serving.model_folder import read_config, write_config

CONFIG = "segmenter.json"
ARRAYS = "segmenter.npz"
MODES = ("global", "per_image")
Segmenter = Union[KMeansSegmenter, DBSCANSegmenter]
# ONE_THREAD: work on one image is too small to share between OpenMP/BLAS threads: on
# 2 busy cores a per-image K-means fit measured 5-10x slower (and erratic) with 2
# threads than with 1, so images are segmented one thread at a time.


def segmenter_config(kind: str, section: Any, channels: int) -> dict[str, Any]:
    """The config a segmenter is rebuilt from (its params section plus the input channels)."""
    from dataclasses import asdict

    values = asdict(section)
    return {"kind": kind, "channels": channels, **values}


def build(config: dict[str, Any]) -> Segmenter:
    """An unfitted segmenter of the config's kind."""
    if config["kind"] == "kmeans":
        return KMeansSegmenter(n_clusters=config["n_clusters"], n_init=config["n_init"],
                               max_iter=config["max_iter"], seed=config["seed"])
    if config["kind"] == "dbscan":
        return DBSCANSegmenter(eps=config["eps"], min_samples=config["min_samples"])
    raise ValueError(f"unknown segmenter kind {config['kind']!r}; expected one of {CLUSTERING_KINDS}")


def features_of(config: dict[str, Any], image: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 -> (H*W, F) features in the segmenter's own feature space."""
    return pixel_features(image, config["colour"], config["position_weight"])


def valid_pixels(shape: tuple[int, ...], masks: np.ndarray | None = None,
                 sizes: np.ndarray | None = None) -> np.ndarray | None:
    """(N, H, W) bool of the pixels a fit may use: not IGNORE_INDEX in `masks` (when given)
    and inside each image's valid (h, w) top-left region of `sizes` (N, 2) (when given).
    None when neither is given (every pixel valid)."""
    count, height, width = shape[:3]
    valid = None if masks is None else np.asarray(masks) != IGNORE_INDEX
    if sizes is not None:
        sizes = np.asarray(sizes)
        inside = ((np.arange(height)[None, :, None] < sizes[:, 0, None, None])
                  & (np.arange(width)[None, None, :] < sizes[:, 1, None, None]))
        valid = inside if valid is None else valid & inside
    if valid is not None and valid.shape != (count, height, width):
        raise ValueError(f"valid pixels must be (N, H, W) = {(count, height, width)}, got "
                         f"{valid.shape}")
    return valid


def fit_global(config: dict[str, Any], images: np.ndarray, valid: np.ndarray | None = None
               ) -> Segmenter:
    """Fit once on fit_pixels pixels drawn (seeded) across all (N, H, W, C) images (among
    the `valid` (N, H, W) pixels only, when given)."""
    rng = np.random.default_rng(config["seed"])
    if valid is None:
        sample = sample_features(images, config["fit_pixels"], config["colour"],
                                 config["position_weight"], rng)
    else:
        sample = _sample_valid(images, valid, config, rng)
    return build(config).fit(sample)


def _sample_valid(images: np.ndarray, valid: np.ndarray, config: dict[str, Any],
                  rng: np.random.Generator) -> np.ndarray:
    """Features of fit_pixels pixels drawn without replacement, uniformly over the valid
    pixels of all images. The k-th draw names the k-th valid pixel in row-major order over
    the images, so with every pixel valid this draws exactly what sample_features does."""
    counts = valid.reshape(len(valid), -1).sum(1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    total = int(starts[-1])
    chosen = np.sort(rng.choice(total, size=min(config["fit_pixels"], total), replace=False))
    which = np.searchsorted(starts, chosen, side="right") - 1
    parts = [pixel_features(images[i], config["colour"], config["position_weight"],
                            np.flatnonzero(valid[i])[chosen[which == i] - starts[i]])
             for i in np.unique(which)]
    if not parts:
        raise ValueError("no valid pixel to fit on: every training pixel is padding or of "
                         "an ignored class")
    return np.concatenate(parts)


def segmenter_for(config: dict[str, Any], fitted: Segmenter | None,
                  features: np.ndarray, valid: np.ndarray | None = None) -> Segmenter:
    """The segmenter that labels one image: the global one, or one fitted on its pixels
    (its `valid` ones only, when an (H, W) bool is given)."""
    if config["mode"] == "global":
        if fitted is None:
            raise ValueError("a global-mode segmenter needs its fitted state (segmenter.npz)")
        return fitted
    rng = np.random.default_rng(config["seed"])
    # With every pixel valid, candidates == arange: the same draw as without `valid`.
    candidates = np.arange(len(features)) if valid is None else np.flatnonzero(valid)
    if not len(candidates):  # an image of padding or ignored pixels alone
        candidates = np.arange(len(features))
    rows = rng.choice(len(candidates), size=min(config["fit_pixels"], len(candidates)),
                      replace=False)
    return build(config).fit(features[candidates[np.sort(rows)]])


def segment(config: dict[str, Any], fitted: Segmenter | None, images: Any) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, H, W) int32 cluster ids (NOISE = -1 for DBSCAN noise)."""
    images = as_image_batch(images, config["channels"])
    out = np.empty(images.shape[:3], dtype=np.int32)
    for i, (_, _, labels) in enumerate(segment_each(config, fitted, images)):
        out[i] = labels
    return out


def segment_each(config: dict[str, Any], fitted: Segmenter | None, images: np.ndarray,
                 valid: np.ndarray | None = None
                 ) -> Iterator[tuple[np.ndarray, Segmenter, np.ndarray]]:
    """Per image: its (H*W, F) features, the segmenter that labelled it, its (H, W) labels
    (a per_image fit draws from the image's `valid` pixels only, when given)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # see ONE_THREAD
        for i, image in enumerate(images):
            features = features_of(config, image)
            segmenter = segmenter_for(config, fitted, features,
                                      None if valid is None else valid[i].ravel())
            yield features, segmenter, segmenter.predict(features).reshape(image.shape[:2])


def save(config: dict[str, Any], fitted: Segmenter | None, out_dir: Path) -> None:
    write_config(out_dir / CONFIG, config)
    if fitted is None:
        return
    if isinstance(fitted, KMeansSegmenter):
        arrays = {"centres": fitted.centres, "inertia": np.float64(fitted.inertia)}
    else:
        arrays = {"core": fitted.core, "core_labels": fitted.core_labels}
    np.savez(out_dir / ARRAYS, **arrays)  # same arrays, same bytes: a stable digest


def load(model_dir: Path) -> tuple[dict[str, Any], Segmenter | None]:
    """(config, fitted segmenter or None in per_image mode) from a saved folder."""
    model_dir = Path(model_dir)
    config = read_config(model_dir / CONFIG)
    if config["mode"] != "global":
        return config, None
    segmenter = build(config)
    with np.load(model_dir / ARRAYS) as arrays:
        if isinstance(segmenter, KMeansSegmenter):
            segmenter.centres, segmenter.inertia = arrays["centres"], float(arrays["inertia"])
        else:
            segmenter.core, segmenter.core_labels = arrays["core"], arrays["core_labels"]
    return config, segmenter
