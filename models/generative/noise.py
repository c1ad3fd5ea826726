"""Every random draw a generator's training step makes, per row of its batch.

Ranks that train on slices of one global batch (segen's generator training across
processes) draw within `batch_shard(offset, total)`: each draw is then one draw for all
`total` rows of the global batch, from the same seeded generator on every rank, of which a
rank keeps its rows [offset, offset + n). So the noise of the global batch is the noise one
process would draw for it, and every rank's generator stays in step with the others.
Outside a shard (one process, sampling) a draw is just the n rows asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

_SHARD: ContextVar[tuple[int, int] | None] = ContextVar("batch_shard", default=None)


@contextmanager
def batch_shard(offset: int, total: int) -> Iterator[None]:
    """Draws inside the block are rows [offset, offset + n) of a draw of `total` rows."""
    token = _SHARD.set((offset, total))
    try:
        yield
    finally:
        _SHARD.reset(token)


def per_row(n: int, *shape: int, normal: bool, device: torch.device,
            dtype: torch.dtype | None = None,
            generator: torch.Generator | None = None) -> Tensor:
    """(n, *shape) standard normal (or uniform [0, 1)) values, one row per batch row."""
    shard = _SHARD.get()
    if shard is not None and shard[0] + n > shard[1]:
        raise ValueError(f"{n} rows from offset {shard[0]} overrun the batch of {shard[1]}")
    rows = n if shard is None else shard[1]
    draw = torch.randn if normal else torch.rand
    values = draw(rows, *shape, device=device, dtype=dtype, generator=generator)
    return values if shard is None else values[shard[0]:shard[0] + n]
