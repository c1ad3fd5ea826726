"""The one reader of the preprocess stage's arrays (images.npy, masks.npy, split.json, dataset.json)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from segen.pipeline.store import StageResult


def dataset_meta(prepared: StageResult) -> dict[str, Any]:
    return json.loads((Path(prepared.path) / "dataset.json").read_text())


def load_arrays(prepared: StageResult, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 images and (N, H, W) uint8 masks of one split (numpy only: the
    torch twin is segen.engines.training.load_split)."""
    root = Path(prepared.path)
    index = json.loads((root / "split.json").read_text())[split]
    images = np.load(root / "images.npy", mmap_mode="r")[index]
    masks = np.load(root / "masks.npy", mmap_mode="r")[index]
    return np.ascontiguousarray(images), np.ascontiguousarray(masks)
