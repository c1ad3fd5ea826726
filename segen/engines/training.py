"""Helpers shared by the training and evaluation stages: preprocessed splits as tensors,
batching and augmentation (the epoch loop and its checkpoints: segen.engines.loop)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from segen.data.arrays import load_arrays
from segen.pipeline.store import StageResult


def load_split(prepared: StageResult, split: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W, C) uint8 images and (N, H, W) int64 masks of one split (None: every row),
    in memory: segen.data.arrays.load_arrays as the tensors the U-Net trains on."""
    images, masks = load_arrays(prepared, split)
    return torch.from_numpy(images), torch.from_numpy(masks.astype(np.int64))


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Shuffled (generator given) or ordered index batches covering all n items."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)
