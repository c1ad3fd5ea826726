"""Sliding-window inference: a network predicts a large image tile by tile, the tiles
overlapping and their logits blended with a Gaussian weight, as nnU-Net predicts (Isensee et
al. 2021): memory is bounded by the tile, and the network sees inputs the size it trained on.

torch and MONAI only (no Prefect, no MLflow) so a registered model loads without the pipeline.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

SIGMA_SCALE = 0.125  # the Gaussian's sigma as a fraction of the tile side: nnU-Net's 1/8


def tile_of(config: dict[str, Any]) -> tuple[int, int] | None:
    """A model config's tile (height, width); None: whole images (tile_size null, or a model
    folder written before tiling)."""
    tile = config.get("tile_size")
    return None if tile is None else (tile[0], tile[1])


def pad_to(x: torch.Tensor, height: int, width: int, fill: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) at the top left of a (B, C, height, width) canvas of fill, (C,) a value
    per channel."""
    if x.shape[-2:] == (height, width):
        return x
    canvas = fill.view(1, -1, 1, 1).expand(len(x), -1, height, width).clone()
    canvas[..., :x.shape[-2], :x.shape[-1]] = x
    return canvas


def tiled_logits(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 tile: tuple[int, int], overlap: float, fill: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) network inputs -> (B, K, H, W) logits, predicted in tiles of tile whose
    neighbours share overlap of them, len(x) tiles per call of predict (which must return a
    new tensor, not a view of its input: MONAI weights it in place).

    The canvas is first padded at the bottom and right to at least the tile with fill, the
    value the training images' padding standardises to: MONAI would pad a smaller image on
    both sides with one constant for every channel. The logits, not softmax probabilities,
    are averaged, as nnU-Net v2 does: the argmax (and the resize back to the image size)
    works on logits as whole-image prediction does, so a pointwise network gives the same."""
    # imported here: MONAI takes seconds to import, paid only by models that tile
    from monai.inferers import sliding_window_inference

    height, width = x.shape[-2:]
    canvas = pad_to(x, max(height, tile[0]), max(width, tile[1]), fill)
    logits = sliding_window_inference(canvas, tile, len(x), predict, overlap=overlap,
                                      mode="gaussian", sigma_scale=SIGMA_SCALE)
    return logits[..., :height, :width]
