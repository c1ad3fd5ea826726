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


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree turns applied jointly to a batch (B,C,H,W) and (B,H,W).

    Done with tensor ops on the whole batch on the training device: torchvision's v2
    transforms draw one set of random parameters per call as well, but would add a
    per-call dispatch cost we do not need for these lossless transforms.
    """
    flip_h, flip_v, turns = torch.randint(0, 4, (3,), generator=generator).tolist()
    if flip_h % 2:
        x, y = x.flip(-1), y.flip(-1)
    if flip_v % 2:
        x, y = x.flip(-2), y.flip(-2)
    if x.shape[-1] == x.shape[-2] and turns:
        x, y = x.rot90(turns, (-2, -1)), y.rot90(turns, (-2, -1))
    return x, y


def random_crop(x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One random size x size window for the whole batch."""
    h, w = x.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return x[..., top:top + size, left:left + size], y[..., top:top + size, left:left + size]
