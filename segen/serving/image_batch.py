"""The one coercion of what a caller hands a segen model as images (numpy only: the
clustering pyfunc runs without torch)."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_image_batch(images: Any, channels: int) -> np.ndarray:
    """One (H, W[, C]) image, a list of them or an (N, H, W[, C]) array -> (N, H, W, C)
    uint8, or a ValueError saying what was expected and how to convert the images."""
    batch = np.stack(images) if isinstance(images, (list, tuple)) else np.asarray(images)
    if batch.ndim == 2:
        batch = batch[None, ..., None]  # one greyscale image
    elif batch.ndim == 3:  # one (H, W, C) image, or (N, H, W) greyscale images
        one = batch.shape[-1] == channels or (channels != 1 and batch.shape[-1] in (1, 3, 4))
        batch = batch[None] if one else batch[..., None]
    if batch.ndim != 4 or batch.shape[-1] != channels:
        raise ValueError(f"expected images of shape (N, H, W, {channels}) (or one (H, W, "
                         f"{channels}) image), got {batch.shape}; the model takes "
                         f"{channels}-channel images: convert them to "
                         f"{'greyscale' if channels == 1 else 'RGB'} first.")
    if batch.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels in [0, 255], got {batch.dtype}")
    return batch
