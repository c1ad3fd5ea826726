"""The preprocess stage's work, streamed: whatever the number of images, memory holds one
chunk of decoded pairs, the per-channel running sums and the class counts.

Pairs are decoded in parallel worker processes (in order) and written chunk by chunk into
memory-mapped .npy files (np.lib.format.open_memmap), the layout segen.data.arrays reads.
"""
from __future__ import annotations

import concurrent.futures
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from models.labels import IGNORE_INDEX
from segen.config import PreprocessParams
from segen.data.arrays import (
    IMAGES,
    LABELS,
    MANIFEST,
    MASKS,
    META,
    SIZES,
    SPLIT,
    NpyRowWriter,
)
from segen.data.preprocessing import (
    Geometry,
    check_given_splits,
    class_weights,
    decode_pair,
    ignore_lookup,
    read_size,
    split_indices,
)

CHUNK = 32  # pairs in flight per worker (what memory holds at once)
# A spawned worker costs ~2 s importing torch and torchvision: below this many images,
# decoding in the stage's own process is faster.
PARALLEL_FROM = 1000


@dataclass
class _TrainStats:
    """Running sums over the valid pixels of the train split (float64: exact to 2**53)."""
    channels: int
    n_classes: int
    total: np.ndarray = field(init=False)
    squares: np.ndarray = field(init=False)
    pixels: int = 0
    class_pixels: np.ndarray = field(init=False)
    images_with: np.ndarray = field(init=False)  # pixels of the images where a class is present

    def __post_init__(self) -> None:
        self.total, self.squares = np.zeros(self.channels), np.zeros(self.channels)
        self.class_pixels = np.zeros(self.n_classes, dtype=np.int64)
        self.images_with = np.zeros(self.n_classes, dtype=np.int64)

    def add(self, image: np.ndarray, mask: np.ndarray) -> None:
        values = image.reshape(-1, self.channels).astype(np.float64) / 255.0
        self.total += values.sum(0)
        self.squares += (values ** 2).sum(0)
        self.pixels += len(values)
        counts = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=self.n_classes)
        counts = counts[:self.n_classes]
        self.class_pixels += counts
        self.images_with += np.where(counts > 0, (mask != IGNORE_INDEX).sum(), 0)

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.total / max(self.pixels, 1)
        var = np.maximum(self.squares / max(self.pixels, 1) - mean ** 2, 0.0)
        return mean.tolist(), np.sqrt(var).clip(1e-3).tolist()


def prepare(data_dir: Path, out: Path, params: PreprocessParams, workers: int,
            data_version: str) -> dict[str, Any]:
    """Write images/masks/sizes/labels/split/manifest/dataset.json to out; the stage info."""
    import pandas as pd

    manifest = pd.read_csv(data_dir / "manifest.csv", dtype={"id": str, "split": str},
                           keep_default_na=False)
    described = json.loads((data_dir / "classes.json").read_text())
    classes, has_masks = described["classes"], described.get("masks", True) is not False
    table, ignore_ids = ignore_lookup(classes, described.get("ignore", []))
    geometry = Geometry.of(params)
    rows = list(manifest.itertuples())
    sizes = np.array([geometry.resized(*read_size(data_dir / r.image)) for r in rows],
                     dtype=np.int32).reshape(-1, 2)
    height, width = geometry.canvas(sizes)
    given = check_given_splits(manifest["split"].tolist()) if "split" in manifest else None
    split = split_indices(len(rows), params, given)
    channels = _channels(data_dir / rows[0].image)

    # padding: 0 in the images, IGNORE_INDEX in the masks; written through the file, so
    # memory holds one row at a time (a memory map's pages would count until the end)
    images = NpyRowWriter(out / IMAGES, np.uint8, (len(rows), height, width, channels), 0)
    masks = NpyRowWriter(out / MASKS, np.uint8, (len(rows), height, width), IGNORE_INDEX)
    stats, train = _TrainStats(channels, len(classes)), set(split["train"])
    decode = functools.partial(_decode, data_dir, table, has_masks)
    jobs = ((r.image, r.mask if has_masks else None, tuple(size)) for r, size in zip(rows, sizes))
    workers = workers if len(rows) >= PARALLEL_FROM else 1
    for i, (image, mask) in enumerate(_in_order(decode, jobs, workers)):
        images.write(image)
        masks.write(mask)
        if i in train:
            stats.add(image, mask)
    images.close(), masks.close()

    np.save(out / SIZES, sizes)
    np.save(out / LABELS, manifest["label"].to_numpy(np.int64))
    (out / SPLIT).write_text(json.dumps(split))
    # every manifest column, in the arrays' order: train_cyclegan splits its two domains by
    # the column generative.cyclegan_domain_column names (so no params section here)
    manifest.to_csv(out / MANIFEST, index=False, lineterminator="\n")
    mean, std = stats.mean_std()
    weights = class_weights(stats.class_pixels, stats.images_with, params.class_weights,
                            ignore_ids) if has_masks else None
    meta = {"classes": classes, "label_names": classes, "has_masks": has_masks,
            "channels": channels, "height": height, "width": width,
            "ignore_index": IGNORE_INDEX, "ignore_ids": ignore_ids,
            "class_weights": weights, "class_pixels": stats.class_pixels.tolist(),
            "geometry": geometry.as_dict(), "ids": manifest["id"].astype(str).tolist(),
            "mean": mean, "std": std, "data_version": data_version}
    (out / META).write_text(json.dumps(meta, indent=1))
    return {**{k: len(v) for k, v in split.items()}, "has_masks": has_masks,
            "height": height, "width": width, "given_split": given is not None,
            "class_weights": weights}


def _decode(data_dir: Path, table: np.ndarray, has_masks: bool,
            job: tuple[str, str | None, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    image, mask, size = job
    return decode_pair(data_dir, image, mask, size, table)


def _in_order(decode: Any, jobs: Iterator[Any], workers: int) -> Iterator[Any]:
    """decode(job) for every job, in order; in `workers` processes when more than one.

    At most CHUNK * workers pairs are in flight, so memory stays flat for any N."""
    if workers <= 1:
        yield from map(decode, jobs)
        return
    import multiprocessing

    # spawn: a fork of a process holding torch threads and a Prefect server can deadlock
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: list[concurrent.futures.Future] = []
        for job in jobs:
            pending.append(pool.submit(decode, job))
            if len(pending) >= CHUNK * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _channels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return len(image.getbands())
