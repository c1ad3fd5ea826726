"""The one grid writer: tiles in [0, 1] laid out with torchvision's make_grid on a white
ground and written as a PNG atomically (a kill never leaves half a grid.png)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from segen.disk import replace_atomic
from segen.serving.images import to_zero_one
from segen.serving.palette import colourise

PADDING = 2  # px of white between tiles


def rows_of(*columns: torch.Tensor) -> torch.Tensor:
    """Columns (N, C_k, H, W) in [0, 1] -> (N * K, 3, H, W) tiles, the i-th of each column
    side by side (greyscale shown as RGB, alpha dropped); lay them out K per row."""
    return torch.stack([_rgb(c) for c in columns], dim=1).flatten(0, 1)  # (N, K, 3, H, W)


def label_tiles(labels: Any) -> torch.Tensor:
    """(N, H, W) class or cluster ids -> (N, 3, H, W) tiles in [0, 1], in the one palette."""
    return to_zero_one(colourise(np.asarray(labels)))


def tile_grid(tiles: torch.Tensor, per_row: int) -> torch.Tensor:
    """(N, C, H, W) tiles in [0, 1] -> one (3, H', W') image, per_row tiles to a row."""
    return make_grid(tiles, nrow=per_row, padding=PADDING, pad_value=1.0)


def save_grid(tiles: torch.Tensor, path: Path, per_row: int) -> None:
    """tile_grid(tiles, per_row) as a PNG at path: written beside it, then renamed."""
    grid = tile_grid(tiles.detach().float().cpu(), per_row)
    replace_atomic(path, lambda tmp: save_image(grid, tmp, format="png"))


def save_prediction_grid(images: Any, truth: Any, pred: Any, path: Path) -> None:
    """Rows of image | truth | prediction (every segmenter's evaluation grid): (N, H, W, C)
    uint8 images, (N, H, W) class ids (ids below 0, e.g. unmatched clusters, in grey)."""
    save_grid(rows_of(to_zero_one(images), label_tiles(truth), label_tiles(pred)), path, 3)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
