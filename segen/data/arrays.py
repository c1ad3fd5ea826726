"""The one reader of what the preprocess stage stores in its folder (and synthesize_pairs in
the same layout): images.npy (N, H, W, C) uint8 on one canvas (each image top-left, padding
0), masks.npy (N, H, W) uint8 (IGNORE_INDEX = 255: ignored classes and padding), sizes.npy
(N, 2) int32 (each image's valid (h, w)), labels.npy (N,) int64, split.json ({split: row
indices}), dataset.json (classes, ignore_ids, channels, height, width, geometry, stats,
class weights) and manifest.csv (every manifest column, in the arrays' order).

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
SIZES = "sizes.npy"


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


def load_sizes(prepared: StageResult, split: str | None) -> np.ndarray:
    """(N, 2) int32 valid (h, w) of one split's images inside the canvas; a folder written
    without sizes.npy (synthesize_pairs) holds whole-canvas images."""
    path = Path(prepared.path) / SIZES
    if path.is_file():
        return _read(prepared, SIZES, split)
    images = np.load(Path(prepared.path) / IMAGES, mmap_mode="r")
    rows = len(images) if split is None else len(split_index(prepared, split))
    return np.tile(np.array(images.shape[1:3], dtype=np.int32), (rows, 1))


def open_split(prepared: StageResult, split: str | None
               ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The memory-mapped images and masks (every row, read-only, nothing copied) and the rows
    of one split: for readers that stream a batch at a time."""
    folder = Path(prepared.path)
    images = np.load(folder / IMAGES, mmap_mode="r")
    masks = np.load(folder / MASKS, mmap_mode="r")
    rows = list(range(len(images))) if split is None else split_index(prepared, split)
    return images, masks, rows


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
