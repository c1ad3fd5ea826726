"""Building, saving and running the K-means / DBSCAN segmenters: shared by their training
and evaluation stages, the registered pyfunc and `segen predict`.

numpy + scikit-learn only (no torch, Prefect or MLflow). A segmenter folder holds
segmenter.json (its config) and, in "global" mode, segmenter.npz (what it learnt):

- global: fitted once on `fit_pixels` pixels drawn across the training split, then
  applied unchanged to every image (what a registered model does);
- per_image: the config alone; each image gets its own fit on `fit_pixels` of its
  pixels (seeded the same for every image, so an image's labels never depend on the
  batch it came in).
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


def fit_global(config: dict[str, Any], images: np.ndarray) -> Segmenter:
    """Fit once on fit_pixels pixels drawn (seeded) across all (N, H, W, C) images."""
    rng = np.random.default_rng(config["seed"])
    sample = sample_features(images, config["fit_pixels"], config["colour"],
                             config["position_weight"], rng)
    return build(config).fit(sample)


def segmenter_for(config: dict[str, Any], fitted: Segmenter | None,
                  features: np.ndarray) -> Segmenter:
    """The segmenter that labels one image: the global one, or one fitted on its pixels."""
    if config["mode"] == "global":
        if fitted is None:
            raise ValueError("a global-mode segmenter needs its fitted state (segmenter.npz)")
        return fitted
    rng = np.random.default_rng(config["seed"])
    rows = rng.choice(len(features), size=min(config["fit_pixels"], len(features)),
                      replace=False)
    return build(config).fit(features[np.sort(rows)])


def segment(config: dict[str, Any], fitted: Segmenter | None, images: Any) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, H, W) int32 cluster ids (NOISE = -1 for DBSCAN noise)."""
    images = as_image_batch(images, config["channels"])
    out = np.empty(images.shape[:3], dtype=np.int32)
    for i, (_, _, labels) in enumerate(segment_each(config, fitted, images)):
        out[i] = labels
    return out


def segment_each(config: dict[str, Any], fitted: Segmenter | None, images: np.ndarray
                 ) -> Iterator[tuple[np.ndarray, Segmenter, np.ndarray]]:
    """Per image: its (H*W, F) features, the segmenter that labelled it, its (H, W) labels."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # see ONE_THREAD
        for image in images:
            features = features_of(config, image)
            segmenter = segmenter_for(config, fitted, features)
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
