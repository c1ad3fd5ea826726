"""train_kmeans / train_dbscan: one body, one task per kind (the stage graph in
segen.stages names each one's inputs), and the fit behind them. Importing this module
loads numpy only: scikit-learn is imported by models.clustering when a fit runs, so a
fully cached pipeline never imports it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import Task

from models.clustering import DBSCANSegmenter
from segen import clustering
from segen.project import Project
from segen.stages import CLUSTERING_KINDS
from segen.store import StageResult
from tasks.caching import StageOutput, family_stage_task


def dataset_meta(prepared: StageResult) -> dict[str, Any]:
    return json.loads((Path(prepared.path) / "dataset.json").read_text())


def load_arrays(prepared: StageResult, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 images and (N, H, W) uint8 masks of one split (numpy only: the
    torch twin is tasks.training.load_split)."""
    root = Path(prepared.path)
    index = json.loads((root / "split.json").read_text())[split]
    images = np.load(root / "images.npy", mmap_mode="r")[index]
    masks = np.load(root / "masks.npy", mmap_mode="r")[index]
    return np.ascontiguousarray(images), np.ascontiguousarray(masks)


def fit(preprocess: StageResult, kind: str, section: Any, out: Path) -> dict[str, Any]:
    """Fit (global mode) or only configure (per_image mode) a segmenter; save it to out."""
    meta = dataset_meta(preprocess)
    config = clustering.segmenter_config(kind, section, meta["channels"])
    start = time.perf_counter()
    fitted = None
    if config["mode"] == "global":
        images, _ = load_arrays(preprocess, "train")
        fitted = clustering.fit_global(config, images)
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


def train_clustering(name: str, *, project: Project, preprocess: StageResult, out: Path,
                     key: str, **section: Any) -> StageOutput:
    """Fit one segmenter on a train-split pixel sample (global mode); publishes it."""
    kind = name.removeprefix("train_")
    return StageOutput(fit(preprocess, kind, section[kind], out))


TRAIN_TASKS: dict[str, Task] = {
    f"train_{kind}": family_stage_task(f"train_{kind}", train_clustering)
    for kind in CLUSTERING_KINDS}
