"""Helpers shared by the training and evaluation stages: preprocessed splits as tensors,
batching and augmentation (the epoch loop and its checkpoints: segen.engines.loop)."""
from __future__ import annotations

from contextlib import contextmanager
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


@contextmanager
def standing_batch_norm(model: torch.nn.Module) -> Iterator[None]:
    """Inside: model in train mode with every batch-norm layer's running statistics reset
    to a cumulative average (momentum None), so the forward passes the block makes under the
    final weights set them exactly; after it, the momenta are restored and model is in eval
    mode. Without it, eval-mode outputs lag behind the last updates (or, for averaged weights,
    use statistics no single set of weights produced)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    try:
        with torch.no_grad():
            yield
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
