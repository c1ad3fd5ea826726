"""The one reader of what the preprocess stage stores in its folder (and synthesize_pairs in
the same layout): images.npy (N, H, W, C) uint8, masks.npy (N, H, W) uint8, labels.npy (N,)
int64, split.json ({split: row indices}), dataset.json (classes, channels, stats) and
manifest.csv (every manifest column, in the arrays' order).

The .npy files are memory-mapped, so a split costs the memory of its own rows only.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from segen.pipeline.store import StageResult

IMAGES, MASKS, LABELS = "images.npy", "masks.npy", "labels.npy"
SPLIT, META, MANIFEST = "split.json", "dataset.json", "manifest.csv"


def dataset_meta(prepared: StageResult) -> dict[str, Any]:
    return json.loads((Path(prepared.path) / META).read_text())


def split_index(prepared: StageResult, split: str) -> list[int]:
    """The rows of one split ("train", "val" or "test")."""
    return json.loads((Path(prepared.path) / SPLIT).read_text())[split]


def load_arrays(prepared: StageResult, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 images and (N, H, W) uint8 masks of one split (None: every row, as
    a synthesize_pairs result holds no split), in memory."""
    return _read(prepared, IMAGES, split), _read(prepared, MASKS, split)


def load_images(prepared: StageResult, split: str) -> np.ndarray:
    """(N, H, W, C) uint8 images of one split (the masks left on disk)."""
    return _read(prepared, IMAGES, split)


def load_labels(prepared: StageResult, split: str) -> np.ndarray:
    """(N,) int64 image-level class ids of one split."""
    return _read(prepared, LABELS, split)


def manifest_rows(prepared: StageResult) -> list[dict[str, str]] | None:
    """The manifest's rows in the arrays' order; None when the folder holds no manifest.csv."""
    path = Path(prepared.path) / MANIFEST
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _read(prepared: StageResult, name: str, split: str | None) -> np.ndarray:
    array = np.load(Path(prepared.path) / name, mmap_mode="r")
    rows = np.arange(len(array)) if split is None else split_index(prepared, split)
    return np.ascontiguousarray(array[rows])  # fancy indexing copies: in memory, writable
