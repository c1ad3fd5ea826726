"""The one reader of what the preprocess stage stores in its folder (and synthesize_pairs in
the same layout): images.npy (N, H, W, C) uint8 on one canvas (each image top-left, padding
0), masks.npy (N, H, W) uint8 (IGNORE_INDEX = 255: ignored classes and padding), sizes.npy
(N, 2) int32 (each image's valid (h, w)), labels.npy (N,) int64, split.json ({split: row
indices}), dataset.json (classes, ignore_ids, channels, height, width, geometry, stats,
class weights) and manifest.csv (every manifest column, in the arrays' order).

Rows are written (NpyRowWriter) and read for training (NpyRows) through the file, one row
at a time, not through a memory map: pages of a map count in the process's resident memory
until it ends, which would make a pass over the dataset cost its size in RSS.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterator

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


class NpyRowWriter:
    """An .npy file of shape (n, *row) written row after row, in order, through the file:
    memory holds one row, whatever n. Each row is a canvas of `fill` with the given array
    at its top-left."""

    def __init__(self, path: Path, dtype: Any, shape: tuple[int, ...], fill: int):
        np.lib.format.open_memmap(path, "w+", dtype, shape).flush()  # header, sparse data
        self.dtype, self.row_shape, self.fill = np.dtype(dtype), shape[1:], fill
        self.handle = open(path, "r+b")
        self.handle.seek(path.stat().st_size - int(np.prod(shape)) * self.dtype.itemsize)

    def write(self, array: np.ndarray) -> None:
        canvas = np.full(self.row_shape, self.fill, self.dtype)
        canvas[:array.shape[0], :array.shape[1]] = array
        self.handle.write(canvas.tobytes())

    def close(self) -> None:
        self.handle.close()


class NpyRows:
    """Rows of an .npy file read with pread (no map; the file opened once per process, so
    it survives DataLoader workers' fork or spawn)."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(handle)
            self.offset = handle.tell()
        self.shape, self.dtype = shape, dtype
        self.row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        self._fd: tuple[int, int] | None = None  # (pid, fd)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, row: int) -> np.ndarray:
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.path, os.O_RDONLY))
        data = os.pread(self._fd[1], self.row_bytes, self.offset + row * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:]).copy()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}


def read_rows(prepared: StageResult) -> tuple[NpyRows, NpyRows]:
    """Row readers of the images and masks of a preprocess folder."""
    folder = Path(prepared.path)
    return NpyRows(folder / IMAGES), NpyRows(folder / MASKS)


def split_batches(prepared: StageResult, split: str | None, batch_size: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(positions in the split, images, masks) of one split, batch_size rows at a time,
    read through the file (memory holds one batch, whatever the split's size)."""
    images, masks = read_rows(prepared)
    _, _, rows = open_split(prepared, split)
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        yield (np.arange(start, start + len(batch)), np.stack([images[r] for r in batch]),
               np.stack([masks[r] for r in batch]))
