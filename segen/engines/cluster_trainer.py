"""Fitting the clustering segmenters behind train_kmeans / train_dbscan (imported only when one runs)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from models.clustering import DBSCANSegmenter
from segen.data import arrays
from segen.data.arrays import dataset_meta, load_arrays, open_split
from segen.pipeline.store import StageResult
from segen.serving import clustering


def fit(preprocess: StageResult, kind: str, section: Any, out: Path) -> dict[str, Any]:
    """Fit (global mode) or only configure (per_image mode) a segmenter; save it to out."""
    meta = dataset_meta(preprocess)
    config = clustering.segmenter_config(kind, section, meta["channels"])
    check_finite_features(kind, config, preprocess)
    start = time.perf_counter()
    fitted = None
    if config["mode"] == "global":
        images, masks = load_arrays(preprocess, "train")
        # Padding and ignored pixels stay out of the fit (see serving.clustering).
        valid = split_valid_pixels(preprocess, "train", masks)
        fitted = clustering.fit_global(config, images, valid)
    seconds = time.perf_counter() - start
    clustering.save(config, fitted, out)
    info: dict[str, Any] = {"kind": kind, "mode": config["mode"], "fit_seconds": seconds,
                            "data_version": meta["data_version"]}
    if isinstance(fitted, DBSCANSegmenter):
        info.update(n_clusters=fitted.n_clusters, core_samples=len(fitted.core))
        if fitted.n_clusters == 0:
            raise ValueError(
                f"DBSCAN found no cluster in {config['fit_pixels']} training pixels (every "
                f"pixel is noise at eps={config['eps']}, min_samples={config['min_samples']}). "
                "Raise dbscan.eps or lower dbscan.min_samples in params.yaml.")
    elif fitted is not None:
        info.update(n_clusters=config["n_clusters"], train_inertia=fitted.inertia)
    return info


def check_finite_features(kind: str, config: dict[str, Any], preprocess: StageResult) -> None:
    """Fail with the reason when the pixel features hold NaN/inf (e.g. a position_weight
    so large that float32 overflows, times 0 at the corner: NaN): every distance would be
    meaningless, and scikit-learn rejects them deep in the fit with no hint of the cause.
    Features are one map of (uint8 colour, position) for every image, so the first
    training image shows it (per_image mode too, which fits only at evaluation)."""
    images, _, rows = open_split(preprocess, "train")
    if not rows:
        return
    features = clustering.features_of(config, np.asarray(images[rows[0]]))
    nan, inf = int(np.isnan(features).sum()), int(np.isinf(features).sum())
    if nan or inf:
        raise ValueError(
            f"train_{kind}: the pixel features are not finite ({nan} NaN and {inf} inf of "
            f"{features.size} values on the first training image, with {kind}.colour = "
            f"{config['colour']!r} and {kind}.position_weight = {config['position_weight']}). "
            f"Set a finite, moderate {kind}.position_weight in params.yaml (0: colour only).")


def split_valid_pixels(prepared: StageResult, split: str, masks: np.ndarray,
                       positions: np.ndarray | None = None) -> np.ndarray | None:
    """The (N, H, W) bool valid pixels of one split of a preprocess result, its masks given
    (of the whole split, or of the rows at `positions` in it: one batch): masks !=
    IGNORE_INDEX when the data has masks, else the valid (h, w) of sizes.npy."""
    if dataset_meta(prepared)["has_masks"]:
        return clustering.valid_pixels(masks.shape, masks=masks)
    # arrays.load_sizes, looked up when called: sizes.npy is written by preprocess.
    sizes = arrays.load_sizes(prepared, split)
    return clustering.valid_pixels(masks.shape,
                                   sizes=sizes if positions is None else sizes[positions])
