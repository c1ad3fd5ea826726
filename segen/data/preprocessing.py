"""Decoding, resizing, padding and splitting for the preprocess stage.

Geometry: every image is resized to preprocess.image_size ([height, width]), or so that its
longer side is preprocess.long_side (the aspect ratio kept), then padded at the bottom and
right to one canvas whose sides are multiples of pad_multiple. Masks are resized by nearest
neighbour; the padding, and the pixels of ignored classes, get IGNORE_INDEX.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.labels import IGNORE_INDEX
from segen.config import PreprocessParams, height_width

SPLITS = ("train", "val", "test")


class PreprocessError(ValueError):
    """The dataset cannot be preprocessed as params.yaml asks (a clear message, no trace)."""


@dataclass(frozen=True)
class Geometry:
    """How one dataset maps onto the canvas (recorded in dataset.json and model configs)."""
    image_size: tuple[int, int] | None
    long_side: int | None
    pad_multiple: int

    @classmethod
    def of(cls, params: PreprocessParams) -> "Geometry":
        size = None if params.image_size is None else height_width(params.image_size)
        return cls(size, params.long_side, params.pad_multiple)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) an image of (height, width) is resized to."""
        if self.image_size is not None:
            return self.image_size
        scale = self.long_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def canvas(self, sizes: np.ndarray) -> tuple[int, int]:
        """The padded (H, W) that holds every resized (h, w) of sizes (N, 2)."""
        m = self.pad_multiple
        return tuple(int(math.ceil(side / m) * m) for side in sizes.max(0))  # type: ignore[return-value]

    def as_dict(self) -> dict:
        return {"image_size": list(self.image_size) if self.image_size else None,
                "long_side": self.long_side, "pad_multiple": self.pad_multiple}


def split_indices(n: int, params: PreprocessParams, given: list[str] | None = None
                  ) -> dict[str, list[int]]:
    """The manifest's own split where it gives one (train/val/test), and a deterministic
    seeded split of the other rows (at least one image in val and test when none is given);
    of the train rows, preprocess.labelled_fraction stay "train", the rest are "unlabelled".

    The seeded fractions apply to the whole dataset, so a given test split is not topped up
    by random rows."""
    given = given or [""] * n
    fixed = {name: [i for i, s in enumerate(given) if s == name] for name in SPLITS}
    free = np.array([i for i, s in enumerate(given) if not s], dtype=np.int64)
    order = free[np.random.default_rng(params.seed).permutation(len(free))]
    wanted = {"test": params.test_fraction, "val": params.val_fraction}
    start, out = 0, {}
    for name in ("test", "val"):
        take = max(0, round(n * wanted[name]) - len(fixed[name]))
        if not fixed[name]:
            take = max(1, take)
        take = min(take, max(0, len(order) - start - 1))  # leave at least one to train on
        out[name] = sorted(fixed[name] + order[start:start + take].tolist())
        start += take
    train = sorted(fixed["train"] + order[start:].tolist())
    labelled, unlabelled = _labelled_subset(train, params.labelled_fraction, params.seed)
    return {"test": out["test"], "val": out["val"], "train": labelled, "unlabelled": unlabelled}


def _labelled_subset(train: list[int], fraction: float, seed: int
                     ) -> tuple[list[int], list[int]]:
    """(the train rows kept, the rest): a seeded round(fraction * n) of them, at least one.
    Its own stream of the seed, so the val and test splits do not depend on the fraction."""
    if fraction >= 1:
        return train, []
    keep = max(1, round(fraction * len(train)))
    chosen = np.random.default_rng([seed, 1]).permutation(len(train))[:keep]
    kept = set(chosen.tolist())
    return ([row for i, row in enumerate(train) if i in kept],
            [row for i, row in enumerate(train) if i not in kept])


def check_given_splits(values: list[str]) -> list[str]:
    """Normalise a manifest's split column ('' where empty); refuse unknown values."""
    cleaned = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
               for v in values]
    bad = [(i, v) for i, v in enumerate(cleaned) if v and v not in SPLITS]
    if bad:
        rows = ", ".join(f"row {i + 2}: {v!r}" for i, v in bad[:5])
        raise PreprocessError(f"manifest.csv split column: expected train, val, test or empty, "
                              f"got {rows}{' ...' if len(bad) > 5 else ''}. Fix those rows.")
    return cleaned


def ignore_lookup(classes: list[str], ignore: list[str]) -> tuple[np.ndarray, list[int]]:
    """A 256-entry uint8 table mapping a mask value to itself, or IGNORE_INDEX for ignored
    classes and values beyond the classes; and the ignored ids."""
    unknown = sorted(set(ignore) - set(classes))
    if unknown:
        raise PreprocessError(f"classes.json: ignore names {unknown}, which are not classes "
                              f"{classes}. Name classes from the list, or drop them.")
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[:len(classes)] = np.arange(len(classes), dtype=np.uint8)
    ids = [classes.index(name) for name in ignore]
    table[ids] = IGNORE_INDEX
    return table, ids


def read_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels."""
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def decode_pair(data_dir: Path, image: str, mask: str | None, size: tuple[int, int],
                table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, C) uint8 image and (h, w) uint8 mask (ignored ids -> IGNORE_INDEX; all 0 when
    mask is None), resized to size = (h, w)."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    img = torch.from_numpy(np.array(Image.open(data_dir / image)))  # a writable copy
    img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)  # (C, H, W)
    msk = (torch.from_numpy(table[np.array(Image.open(data_dir / mask))])[None]
           if mask is not None else torch.zeros((1, *img.shape[-2:]), dtype=torch.uint8))
    if tuple(img.shape[-2:]) != size:
        img = TF.resize(img, list(size), antialias=True)
        msk = TF.resize(msk, list(size), interpolation=InterpolationMode.NEAREST_EXACT)
    return img.permute(1, 2, 0).numpy(), msk[0].numpy()


def class_weights(pixels: np.ndarray, images_with: np.ndarray, method: str,
                  ignore_ids: list[int]) -> list[float] | None:
    """CE weights per class from the train split (ignored classes: 0).

    pixels[c]: class c's pixel count; images_with[c]: the pixels of the images where c is
    present. median_frequency (Eigen & Fergus 2015, as SegNet used): freq_c = pixels[c] /
    images_with[c], w_c = median(freq) / freq_c. inverse_frequency: w_c = total / (K pixels[c]).
    Classes absent from the train split get weight 0 (nothing to weigh)."""
    if method == "none":
        return None
    scored = np.array([c not in ignore_ids and pixels[c] > 0 for c in range(len(pixels))])
    weights = np.zeros(len(pixels))
    if method == "median_frequency":
        freq = pixels[scored] / images_with[scored]
        weights[scored] = np.median(freq) / freq
    else:
        weights[scored] = pixels[scored].sum() / (scored.sum() * pixels[scored])
    return weights.round(6).tolist()
