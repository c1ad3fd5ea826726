"""Decoding, resizing and splitting for the preprocess stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from segen.config import PreprocessParams


def split_indices(n: int, params: PreprocessParams) -> dict[str, list[int]]:
    """Deterministic train/val/test split by seed (at least one image in val and test)."""
    order = np.random.default_rng(params.seed).permutation(n)
    n_test = max(1, round(n * params.test_fraction))
    n_val = max(1, round(n * params.val_fraction))
    return {"test": sorted(order[:n_test].tolist()),
            "val": sorted(order[n_test:n_test + n_val].tolist()),
            "train": sorted(order[n_test + n_val:].tolist())}


def load_pair(data_dir: Path, image: str, mask: str | None, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, C) uint8 image and (size, size) uint8 mask (all 0 when mask is None)."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    img = torch.from_numpy(np.array(Image.open(data_dir / image)))  # a writable copy
    img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)  # (C, H, W)
    msk = (torch.from_numpy(np.array(Image.open(data_dir / mask)))[None] if mask is not None
           else torch.zeros((1, *img.shape[-2:]), dtype=torch.uint8))  # (1, H, W)
    if img.shape[-2:] != (size, size):
        img = TF.resize(img, [size, size], antialias=True)
        msk = TF.resize(msk, [size, size], interpolation=InterpolationMode.NEAREST_EXACT)
    return img.permute(1, 2, 0).numpy(), msk[0].numpy()
